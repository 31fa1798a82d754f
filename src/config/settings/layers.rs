//! The two layers under the flags: `TICKRELAY_*` environment variables and a TOML
//! `--config` file, each value checked by clap on its own and kept with its origin (the
//! variable, or the file and line) so an error names where the bad value came from.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

pub(super) fn env_values(
    flags: &Flags,
    env: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, (Value, Origin)>, SettingsError> {
    let mut layer = BTreeMap::new();
    for (var, text) in env {
        let Some(name) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let long = name.to_ascii_lowercase().replace('_', "-");
        let error = |message: String| SettingsError::Env {
            var: var.clone(),
            message,
        };
        let flag = flags
            .find(&long)
            .filter(|_| !["help", "version", "print-config"].contains(&long.as_str()))
            .ok_or_else(|| {
                let hint = did_you_mean(&long, flags.settings());
                error(format!("unknown setting `{long}`{hint} (see --help)"))
            })?;
        let value = match flag.kind {
            Kind::Switch => Value::Switch(
                parse_switch(text)
                    .ok_or_else(|| error(format!("`{text}` is not a boolean (true/false, 1/0)")))?,
            ),
            Kind::One => Value::Texts(vec![text.clone()]),
            // A list in one variable: comma-separated.
            Kind::Many => Value::Texts(text.split(',').map(str::to_owned).collect()),
        };
        check(flag, &value).map_err(error)?;
        layer.insert(long, (value, Origin::Env(var.clone())));
    }
    if !layer.contains_key("log")
        && let Some(filter) = env.get("RUST_LOG")
    {
        layer.insert(
            "log".into(),
            (
                Value::Texts(vec![filter.clone()]),
                Origin::Env("RUST_LOG".into()),
            ),
        );
    }
    Ok(layer)
}

pub(super) fn file_values(
    flags: &Flags,
    file: &Path,
) -> Result<BTreeMap<String, (Value, Origin)>, SettingsError> {
    let text = std::fs::read_to_string(file).map_err(|source| SettingsError::Read {
        file: file.to_owned(),
        source,
    })?;
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let error = |offset: usize, key: Option<&str>, message: String| SettingsError::File {
        file: file.to_owned(),
        line: line_of(offset),
        key: key.map(str::to_owned),
        message,
    };
    let table = toml::de::DeTable::parse(&text).map_err(|e| {
        let offset = e.span().map_or(0, |span| span.start);
        error(offset, None, e.message().trim().to_owned())
    })?;
    let mut layer = BTreeMap::new();
    for (key, value) in table.get_ref() {
        let at = key.span().start;
        let long = key.get_ref().replace('_', "-");
        let name = key.get_ref().as_ref();
        let flag = flags
            .find(&long)
            .filter(|_| !NOT_SETTINGS.contains(&long.as_str()))
            .ok_or_else(|| {
                error(
                    at,
                    Some(name),
                    format!(
                        "unknown key `{name}`{} (the keys are the flags of --help without `--`)",
                        did_you_mean(&long, flags.settings())
                    ),
                )
            })?;
        let bad = |message: String| error(at, Some(name), format!("{name}: {message}"));
        let value = match (flag.kind, value.get_ref()) {
            (Kind::Switch, toml::de::DeValue::Boolean(b)) => Value::Switch(*b),
            (Kind::Switch, _) => return Err(bad("expected true or false".into())),
            (Kind::Many, toml::de::DeValue::Array(items)) => Value::Texts(
                items
                    .iter()
                    .map(|item| scalar(item.get_ref()))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("expected an array of strings or numbers".into()))?,
            ),
            (_, other) => Value::Texts(vec![
                scalar(other).ok_or_else(|| bad("expected a string or a number".into()))?,
            ]),
        };
        check(flag, &value).map_err(bad)?;
        layer.insert(long, (value, Origin::File(file.to_owned(), line_of(at))));
    }
    Ok(layer)
}

/// A TOML scalar as the text clap would get on the command line.
fn scalar(value: &toml::de::DeValue<'_>) -> Option<String> {
    use toml::de::DeValue;
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) if i.radix() == 10 => Some(i.as_str().replace('_', "")),
        DeValue::Integer(i) => u64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
            .ok()
            .map(|n| n.to_string()),
        DeValue::Float(f) => Some(f.as_str().replace('_', "")),
        DeValue::Boolean(b) => Some(b.to_string()),
        DeValue::Datetime(_) | DeValue::Array(_) | DeValue::Table(_) => None,
    }
}

fn parse_switch(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}
