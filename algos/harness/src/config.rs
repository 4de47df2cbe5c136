//! Configs are TOML files deserialised into an experiment's config struct (unknown keys are errors:
//! the structs deny them), after applying command-line overrides `key.path=value`. A value is read as
//! TOML (`3`, `1e-3`, `true`, `[256, 256]`, `"adamw"`) and, failing that, as a bare string (`adamw`).

use dynlab_runtime::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// Reads `path`, applies `overrides` and returns the config and its resolved TOML text.
pub fn load_config<T: DeserializeOwned + Serialize>(
    path: impl AsRef<Path>,
    overrides: &[String],
) -> Result<(T, String)> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("load_config", path, e))?;
    parse_config(&text, &path.display().to_string(), overrides)
}

/// Parses config text (named `source` in errors), applies `overrides`, and returns the config and
/// its resolved TOML text.
pub fn parse_config<T: DeserializeOwned + Serialize>(
    text: &str,
    source: &str,
    overrides: &[String],
) -> Result<(T, String)> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| Error::config(source, e.to_string()))?;
    for o in overrides {
        apply_override(&mut table, o)?;
    }
    let config: T = table
        .try_into()
        .map_err(|e: toml::de::Error| Error::config(source, e.message().to_string()))?;
    let resolved =
        toml::to_string_pretty(&config).map_err(|e| Error::config(source, e.to_string()))?;
    Ok((config, resolved))
}

/// A command-line value: TOML (`3`, `1e-3`, `true`, `[256, 256]`, `"adamw"`) or, failing that,
/// the bare text (`adamw`).
pub fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn apply_override(table: &mut toml::Table, item: &str) -> Result<()> {
    let source = format!("--set {item}");
    let (key, raw) = item
        .split_once('=')
        .ok_or_else(|| Error::config(&source, "expected key=value, e.g. optim.lr=3e-4"))?;
    let value = parse_value(raw);
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::config(&source, format!("`{key}` is not a key path")));
    }
    let (last, parents) = parts.split_last().expect("split gives one part");
    let mut node = table;
    for part in parents {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| Error::config(&source, format!("`{part}` is a value, not a section")))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}
