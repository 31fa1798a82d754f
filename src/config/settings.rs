//! Where a [`Config`] comes from: the command line, `TICKRELAY_*` environment variables and
//! a `--config FILE` (TOML), merged as **flag > env > file > default**.
//!
//! Generic over every flag: the keys of a file are the long flags without `--`
//! (`max-connections = 500`, or `max_connections`), an environment variable is
//! `TICKRELAY_` + the flag in upper snake case (`TICKRELAY_MAX_CONNECTIONS=500`), and
//! `RUST_LOG` stands for `--log` when `TICKRELAY_LOG` is unset. Each file and environment
//! value is checked by clap on its own first, so a bad one is reported naming the key, the
//! file and the line (or the variable); then every layer is turned into one argument list
//! (file values, then env values, then the real flags) and clap parses that, so a flag
//! added to [`Config`] is covered with no code here. A boolean flag is set by `true` and
//! left at its default by `false`, so an env `false` undoes a file `true`.
//!
//! The loader takes the arguments and the environment as values: tests inject both, and
//! SIGHUP calls it again with the same arguments.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, parser::ValueSource};

use crate::config::Config;
use layers::{env_values, file_values};

mod layers;

/// The command line of the binary: every [`Config`] flag plus the two that say where the
/// configuration comes from.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "tickrelay",
    version,
    about = "Market-data edge relay: ticks in, WebSocket fan-out",
    after_help = "Every flag may also come from a TOML file (--config; keys are the flag \
                  names without --) or an environment variable TICKRELAY_<FLAG> \
                  (e.g. TICKRELAY_MAX_CONNECTIONS); precedence: flag > env > file > default."
)]
pub struct Cli {
    /// The relay's settings.
    #[command(flatten)]
    pub config: Config,

    /// Read settings from this TOML file (keys are the long flags without `--`).
    #[arg(long = "config", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Print the effective configuration as TOML (with where each value came from) and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// A loaded configuration and where each of its values came from.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The parsed command line (the config, `--config`, `--print-config`).
    pub cli: Cli,
    /// Each setting's key, its value(s) as text, and its origin, in flag order.
    values: Vec<(String, Vec<String>, bool, Origin)>,
}

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Nobody set it.
    Default,
    /// `--config FILE`, at this line.
    File(PathBuf, usize),
    /// This environment variable.
    Env(String),
    /// The command line.
    Flag,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("--config {}: {source}", .file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key or value in the config file is wrong.
    #[error("{}:{line}: {message}", .file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The key at fault, when there is one.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// An environment variable is unknown or has a bad value.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// The command line is wrong (or asks for `--help` / `--version`).
    #[error("{}", one_line(.0))]
    Args(clap::Error),
}

impl SettingsError {
    /// Whether this is `--help` or `--version`: print it and exit 0.
    pub fn is_display(&self) -> bool {
        matches!(self, Self::Args(e) if matches!(e.kind(),
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion))
    }
}

impl Settings {
    /// Loads the configuration from `args` (with the program name first), `env` (the
    /// process environment, or a test's map) and the file `--config` (or
    /// `TICKRELAY_CONFIG`) names.
    pub fn load<A, E, K, V>(args: A, env: E) -> Result<Self, SettingsError>
    where
        A: IntoIterator,
        A::Item: Into<OsString>,
        E: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let env: BTreeMap<String, String> =
            env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let flags = Flags::of(&Cli::command());
        let command_line = command()
            .try_get_matches_from(&args)
            .map_err(SettingsError::Args)?;

        let mut layers: BTreeMap<String, (Value, Origin)> = BTreeMap::new();
        let env_layer = env_values(&flags, &env)?;
        let file = match command_line.get_one::<PathBuf>("config_file") {
            Some(file) => Some(file.clone()),
            None => env_layer
                .get("config")
                .and_then(|(v, _)| v.single().map(PathBuf::from)),
        };
        if let Some(file) = &file {
            layers.extend(file_values(&flags, file)?);
        }
        layers.extend(env_layer.into_iter().filter(|(key, _)| key != "config"));

        let mut argv: Vec<OsString> =
            vec![args.first().cloned().unwrap_or_else(|| "tickrelay".into())];
        for (key, (value, _)) in &layers {
            argv.extend(value.to_args(key));
        }
        argv.extend(args.iter().skip(1).cloned());
        let matches = command()
            .try_get_matches_from(argv)
            .map_err(SettingsError::Args)?;
        let cli = Cli::from_arg_matches(&matches).map_err(SettingsError::Args)?;

        let values = flags
            .0
            .iter()
            .filter(|flag| !NOT_SETTINGS.contains(&flag.long.as_str()))
            .map(|flag| {
                let raw: Vec<String> = matches
                    .get_raw(&flag.id)
                    .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
                    .unwrap_or_default();
                let origin =
                    if command_line.value_source(&flag.id) == Some(ValueSource::CommandLine) {
                        Origin::Flag
                    } else {
                        layers
                            .get(&flag.long)
                            .map_or(Origin::Default, |(_, origin)| origin.clone())
                    };
                (flag.long.clone(), raw, flag.kind == Kind::Switch, origin)
            })
            .collect();
        Ok(Self { cli, values })
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.cli.config
    }

    /// Every setting and its value as text (`--print-config` without the comments), for
    /// telling what a reload changed.
    pub fn values(&self) -> BTreeMap<&str, &[String]> {
        self.values
            .iter()
            .map(|(key, values, _, _)| (key.as_str(), values.as_slice()))
            .collect()
    }

    /// Takes `key`'s value (and origin) from `other`: after a reload applied that setting.
    pub fn adopt(&mut self, other: &Self, key: &str) {
        let theirs = other.values.iter().find(|(k, ..)| k == key);
        let ours = self.values.iter_mut().find(|(k, ..)| k == key);
        if let (Some(theirs), Some(ours)) = (theirs, ours) {
            *ours = theirs.clone();
        }
    }

    /// The effective configuration as a TOML file that loads back to the same settings,
    /// each line commented with where its value came from.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# tickrelay effective configuration (--print-config)\n");
        for (key, values, switch, origin) in &self.values {
            let mut origin = match origin {
                Origin::Default => "default".to_owned(),
                Origin::File(file, line) => format!("{}:{line}", file.display()),
                Origin::Env(var) => format!("env {var}"),
                Origin::Flag => "flag".to_owned(),
            };
            // `shards = 0` is "one per usable CPU, less one": show the count this box runs.
            let resolved;
            let values = if key == "shards" && values.as_slice() == ["0"] {
                resolved = vec![self.config().shard_count().to_string()];
                origin.push_str(" (0: one per usable CPU, less one)");
                &resolved
            } else {
                values
            };
            let value = match values.as_slice() {
                [] => {
                    out.push_str(&format!("# {key} is unset\n"));
                    continue;
                }
                [one] if *switch => one.clone(),
                [one] => toml_scalar(one),
                many => format!(
                    "[{}]",
                    many.iter()
                        .map(|v| toml_scalar(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            out.push_str(&format!("{key} = {value}  # {origin}\n"));
        }
        out
    }
}

/// Flags that say where the settings come from, not what they are.
const NOT_SETTINGS: &[&str] = &["help", "version", "config", "print-config"];

fn command() -> clap::Command {
    // Layers repeat a flag (file, then env, then the command line): the last one wins.
    Cli::command().args_override_self(true)
}

/// What kind of value a flag takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A boolean switch (`--demo`).
    Switch,
    /// One value (`--listen ADDR`).
    One,
    /// Repeatable (`--allowed-origin A --allowed-origin B`).
    Many,
}

#[derive(Debug)]
struct Flag {
    id: String,
    long: String,
    kind: Kind,
}

#[derive(Debug)]
struct Flags(Vec<Flag>);

impl Flags {
    fn of(command: &clap::Command) -> Self {
        Self(
            command
                .get_arguments()
                .filter_map(|arg| {
                    let long = arg.get_long()?.to_owned();
                    let kind = match arg.get_action() {
                        ArgAction::SetTrue => Kind::Switch,
                        ArgAction::Append => Kind::Many,
                        _ => Kind::One,
                    };
                    Some(Flag {
                        id: arg.get_id().to_string(),
                        long,
                        kind,
                    })
                })
                .collect(),
        )
    }

    fn find(&self, long: &str) -> Option<&Flag> {
        self.0.iter().find(|flag| flag.long == long)
    }

    /// The keys a file or the environment may set.
    fn settings(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .map(|flag| flag.long.as_str())
            .filter(|long| !NOT_SETTINGS.contains(long))
    }
}

/// A setting's value from a file or the environment, before clap parses it.
#[derive(Clone, Debug)]
enum Value {
    Switch(bool),
    Texts(Vec<String>),
}

impl Value {
    fn to_args(&self, key: &str) -> Vec<OsString> {
        match self {
            Self::Switch(true) => vec![format!("--{key}").into()],
            Self::Switch(false) => Vec::new(),
            Self::Texts(values) => values
                .iter()
                .map(|v| format!("--{key}={v}").into())
                .collect(),
        }
    }

    fn single(&self) -> Option<&str> {
        match self {
            Self::Texts(values) => values.first().map(String::as_str),
            Self::Switch(_) => None,
        }
    }
}

/// Checks one value of `flag` with clap alone; the message says what is wrong.
fn check(flag: &Flag, value: &Value) -> Result<(), String> {
    let mut argv: Vec<OsString> = vec!["tickrelay".into()];
    argv.extend(value.to_args(&flag.long));
    command().try_get_matches_from(argv).map(drop).map_err(|e| {
        match std::error::Error::source(&e) {
            // The value parser's own words ("invalid digit found in string").
            Some(source) => source.to_string(),
            None => one_line(&e),
        }
    })
}

/// A value for `--print-config`: a bare integer when it is one, else a TOML string.
fn toml_scalar(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.len() < 19 {
        text.to_owned()
    } else {
        toml::Value::String(text.to_owned()).to_string()
    }
}

/// clap's message on one line, without its `error: ` prefix and usage footer but with its
/// hints: `[possible values: ...]`, `tip: a similar argument exists: '--listen'`.
fn one_line(e: &clap::Error) -> String {
    let rendered = e.to_string();
    let mut line = String::new();
    for text in rendered.lines().map(str::trim) {
        if text.starts_with("Usage:") || text.starts_with("For more information") {
            break;
        }
        let text = text.strip_prefix("error: ").unwrap_or(text);
        if text.is_empty() {
            continue;
        }
        if !line.is_empty() {
            line.push_str(if text.starts_with('[') { " " } else { "; " });
        }
        line.push_str(text);
    }
    line
}

/// ` (did you mean `max-connections`?)` when a known key is near `typed`, else nothing.
fn did_you_mean<'a>(typed: &str, known: impl Iterator<Item = &'a str>) -> String {
    known
        .map(|key| (strsim::jaro_winkler(typed, key), key))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or_else(String::new, |(_, key)| format!(" (did you mean `{key}`?)"))
}

/// Prefix of every environment variable the relay reads.
const ENV_PREFIX: &str = "TICKRELAY_";

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let argv = std::iter::once("tickrelay").chain(args.iter().copied());
        Settings::load(argv, env.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn defaults_load_with_nothing_set() {
        let settings = load(&[], &[]).unwrap();
        assert_eq!(settings.config().max_connections, 19_000);
        assert!(
            settings
                .to_toml()
                .contains("max-connections = 19000  # default")
        );
    }

    #[test]
    fn env_overrides_default_and_flag_overrides_env() {
        let env = [("TICKRELAY_MAX_CONNECTIONS", "10"), ("TICKRELAY_DEMO", "1")];
        let s = load(&[], &env).unwrap();
        assert_eq!(s.config().max_connections, 10);
        assert!(s.config().demo);
        let s = load(&["--max-connections", "20"], &env).unwrap();
        assert_eq!(s.config().max_connections, 20);
        assert!(s.to_toml().contains("max-connections = 20  # flag"));
    }

    #[test]
    fn rust_log_stands_for_log_unless_tickrelay_log_is_set() {
        let s = load(&[], &[("RUST_LOG", "debug")]).unwrap();
        assert_eq!(s.config().log, "debug");
        let s = load(&[], &[("RUST_LOG", "debug"), ("TICKRELAY_LOG", "warn")]).unwrap();
        assert_eq!(s.config().log, "warn");
        let s = load(&["--log", "error"], &[("RUST_LOG", "debug")]).unwrap();
        assert_eq!(s.config().log, "error");
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let e = load(&[], &[("TICKRELAY_MAX_CONNECTIONS", "lots")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("environment variable TICKRELAY_MAX_CONNECTIONS"),
            "{e}"
        );
        let e = load(&[], &[("TICKRELAY_NOPE", "1")]).unwrap_err();
        assert!(e.to_string().contains("unknown setting `nope`"), "{e}");
    }

    #[test]
    fn bad_flags_are_one_line() {
        let e = load(&["--listen", "nowhere"], &[]).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains('\n') && text.contains("--listen"), "{text}");
    }
}
