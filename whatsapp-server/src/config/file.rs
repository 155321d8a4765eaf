//! The `--config` TOML file: its keys become flags under the ones given on the command line
//! and in the environment.

use std::path::Path;

use clap::parser::ValueSource;

/// The flags (`--name=value`) that the configuration file adds: one per key whose setting
/// was given neither on the command line nor in the environment.
pub(super) fn file_arguments(
    command: &clap::Command,
    matches: &clap::ArgMatches,
    path: &Path,
) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("CONFIG_FILE: cannot read {}: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("CONFIG_FILE: {} is not valid TOML: {e}", path.display()))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let id = key.to_ascii_lowercase().replace('-', "_");
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_id().as_str() == id && id != "config")
        else {
            return Err(format!(
                "CONFIG_FILE: unknown setting `{key}` in {}",
                path.display()
            ));
        };
        if matches!(
            matches.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let long = arg.get_long().unwrap_or(&id);
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Array(items) if id == "keepalive_texts" || id == "chromium_args" => {
                let items = items
                    .into_iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s),
                        _ => Err(format!("CONFIG_FILE: `{key}` must hold strings")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if id == "keepalive_texts" {
                    items.join("|")
                } else {
                    items
                        .iter()
                        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            }
            _ => {
                return Err(format!(
                    "CONFIG_FILE: `{key}` must be a string, number or boolean"
                ));
            }
        };
        out.push(format!("--{long}={value}"));
    }
    Ok(out)
}
