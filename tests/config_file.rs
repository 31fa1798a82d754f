//! `--config FILE`, `TICKRELAY_*` variables and flags, through the real binary:
//! precedence flag > env > file > default, errors naming key, file and line, and
//! `--print-config`.

mod ops_common;

use ops_common::{run, temp_path};

fn write(name: &str, text: &str) -> String {
    let path = temp_path(name);
    std::fs::write(&path, text).expect("write the config file");
    path.display().to_string()
}

/// The value `--print-config` gives `key`, with its origin comment.
fn printed<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("--print-config has no `{key}`:\n{out}"))
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let file = write(
        "precedence.toml",
        "# four settings, each overridden one layer more\n\
         max-connections = 100\n\
         max_control_rate = 7\n\
         replay-depth = 16\n\
         demo = true\n",
    );
    let env = [
        ("TICKRELAY_MAX_CONTROL_RATE", "8"),
        ("TICKRELAY_REPLAY_DEPTH", "32"),
        ("TICKRELAY_DEMO", "false"),
    ];
    let (code, out, err) = run(
        &["--config", &file, "--print-config", "--replay-depth", "64"],
        &env,
    );
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(
        printed(&out, "max-connections"),
        format!("max-connections = 100  # {file}:2")
    );
    assert_eq!(
        printed(&out, "max-control-rate"),
        "max-control-rate = 8  # env TICKRELAY_MAX_CONTROL_RATE"
    );
    assert_eq!(printed(&out, "replay-depth"), "replay-depth = 64  # flag");
    assert_eq!(printed(&out, "demo"), "demo = false  # env TICKRELAY_DEMO");
    assert_eq!(
        printed(&out, "replay-budget"),
        "replay-budget = 1000000  # default"
    );
}

#[test]
fn print_config_output_loads_back_to_the_same_settings() {
    let (code, first, err) = run(&["--print-config", "--max-connections", "5"], &[]);
    assert_eq!(code, Some(0), "stderr: {err}");
    let file = write("roundtrip.toml", &first);
    let (code, second, err) = run(&["--config", &file, "--print-config"], &[]);
    assert_eq!(code, Some(0), "stderr: {err}");
    let values = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split("  #").next().unwrap_or(l).to_owned())
            .collect()
    };
    assert_eq!(values(&first), values(&second));
}

#[test]
fn unknown_key_names_the_key_the_file_and_the_line() {
    let file = write(
        "unknown.toml",
        "listen = \"127.0.0.1:0\"\n\nmax-conections = 5\n",
    );
    let (code, out, err) = run(&["--config", &file], &[]);
    assert_eq!(code, Some(2));
    assert!(out.is_empty(), "nothing on stdout: {out}");
    assert_eq!(
        err.trim_end(),
        format!(
            "tickrelay: {file}:3: unknown key `max-conections` (did you mean `max-connections`?) (the keys are the flags of --help without `--`)"
        )
    );
}

#[test]
fn bad_value_names_the_key_the_file_and_the_line() {
    let file = write("bad-value.toml", "shards = 1\nping-interval = \"soon\"\n");
    let (code, _, err) = run(&["--config", &file], &[]);
    assert_eq!(code, Some(2));
    let line = err.trim_end();
    assert!(
        line.starts_with(&format!("tickrelay: {file}:2: ping-interval: ")) && line.contains("soon"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{err}");

    let file = write("bad-type.toml", "demo = \"yes\"\n");
    let (code, _, err) = run(&["--config", &file], &[]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim_end(),
        format!("tickrelay: {file}:1: demo: expected true or false")
    );
}

#[test]
fn toml_syntax_errors_give_the_line() {
    let file = write("syntax.toml", "shards = 1\nlisten = \n");
    let (code, _, err) = run(&["--config", &file], &[]);
    assert_eq!(code, Some(2));
    assert!(err.starts_with(&format!("tickrelay: {file}:2: ")), "{err}");
}

#[test]
fn bad_env_value_names_the_variable() {
    let (code, _, err) = run(&[], &[("TICKRELAY_MAX_CONNECTIONS", "many")]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim_end(),
        "tickrelay: environment variable TICKRELAY_MAX_CONNECTIONS: invalid digit found in string"
    );
}

#[test]
fn rust_log_sets_the_filter_and_tickrelay_log_or_the_flag_beat_it() {
    let (_, out, _) = run(&["--print-config"], &[("RUST_LOG", "tickrelay=debug")]);
    assert_eq!(
        printed(&out, "log"),
        "log = \"tickrelay=debug\"  # env RUST_LOG"
    );
    let (_, out, _) = run(
        &["--print-config", "--log", "warn"],
        &[("RUST_LOG", "debug"), ("TICKRELAY_LOG", "error")],
    );
    assert_eq!(printed(&out, "log"), "log = \"warn\"  # flag");
}

#[test]
fn config_file_can_come_from_the_environment() {
    let file = write("from-env.toml", "max-symbols = 77\n");
    let (code, out, err) = run(&["--print-config"], &[("TICKRELAY_CONFIG", &file)]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        printed(&out, "max-symbols"),
        format!("max-symbols = 77  # {file}:1")
    );
}

#[test]
fn print_config_shows_the_shard_count_the_default_resolves_to() {
    let (code, out, err) = run(&["--print-config"], &[]);
    assert_eq!(code, Some(0), "stderr: {err}");
    let line = printed(&out, "shards");
    let count: usize = line["shards = ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(count, cpus.saturating_sub(1).max(1), "{line}");
    assert!(
        line.ends_with("# default (0: one per usable CPU, less one)"),
        "{line}"
    );
    let (_, out, _) = run(&["--print-config", "--shards", "3"], &[]);
    assert_eq!(printed(&out, "shards"), "shards = 3  # flag");
}
