//! Configuration: built-in defaults → TOML file → `USPWATCH__SECTION__KEY` environment →
//! command-line flags. Each crate owns its section's struct; this module only layers and
//! validates them, reporting every problem at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The whole configuration of a uspwatch gateway.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// The embedded MQTT broker and its USP plugin.
    pub broker: uspwatch_broker::BrokerConfig,
    /// The USP controller endpoint, event sinks (embedded log, Kafka) and inventory.
    pub pipeline: uspwatch_pipeline::PipelineConfig,
    /// The rule engine.
    pub rules: uspwatch_rules::RulesConfig,
    /// HTTP API, health and metrics.
    pub http: HttpConfig,
    /// Commands from remediation jobs over Kafka.
    pub command_requests: crate::command_requests::CommandRequestsConfig,
    /// Logging.
    pub log: LogConfig,
}

/// The HTTP server.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address (default `0.0.0.0:8080`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Bearer tokens accepted by `/api/v1` (health and metrics need none). Empty = the API is
    /// open, which `check-config` warns about.
    pub tokens: Vec<String>,
    /// Longest time `POST /api/v1/devices/{eid}/commands` waits for the device.
    #[serde(with = "humantime_serde")]
    pub command_timeout: std::time::Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            tokens: Vec::new(),
            command_timeout: std::time::Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `uspwatch=debug,info` (`RUST_LOG` overrides it).
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            // The embedded router's own logs are tuned in `telemetry` unless a filter names
            // rumqttd.
            filter: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

/// Every problem found while loading a configuration.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} configuration problem(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

const ENV_PREFIX: &str = "USPWATCH__";

/// Loads the configuration from an optional file and the process environment.
pub fn load(file: Option<&Path>) -> Result<AppConfig, ConfigErrors> {
    let text = match file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| ConfigErrors(vec![format!("{}: {e}", p.display())]))?,
        ),
        None => None,
    };
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    load_from(text.as_deref(), &env)
}

/// Layers a TOML text and environment pairs over the defaults, then validates.
pub fn load_from(text: Option<&str>, env: &[(String, String)]) -> Result<AppConfig, ConfigErrors> {
    let mut errors = Vec::new();
    let mut root = match text {
        Some(t) => match t.parse::<toml::Table>() {
            Ok(v) => v,
            Err(e) => return Err(ConfigErrors(vec![format!("TOML syntax: {e}")])),
        },
        None => toml::Table::new(),
    };
    for (k, v) in env {
        if let Err(e) = overlay_env(&mut root, k, v) {
            errors.push(e);
        }
    }
    let mut config = AppConfig::default();
    for (section, value) in root {
        let value = toml::Value::Table(match value {
            toml::Value::Table(t) => t,
            other => {
                errors.push(format!(
                    "[{section}] must be a table, found {}",
                    other.type_str()
                ));
                continue;
            }
        });
        let r = match section.as_str() {
            "broker" => value.try_into().map(|v| config.broker = v),
            "pipeline" => value.try_into().map(|v| config.pipeline = v),
            "rules" => value.try_into().map(|v| config.rules = v),
            "http" => value.try_into().map(|v| config.http = v),
            "log" => value.try_into().map(|v| config.log = v),
            "command_requests" => value.try_into().map(|v| config.command_requests = v),
            _ => {
                errors.push(format!(
                    "unknown section [{section}] (expected broker, pipeline, rules, http, log, command_requests)"
                ));
                continue;
            }
        };
        if let Err(e) = r {
            errors.push(format!("[{section}] {}", e.message().trim()));
        }
    }
    errors.extend(validate(&config));
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Semantic checks that span sections; each crate's own `validate()` is included.
pub fn validate(config: &AppConfig) -> Vec<String> {
    let mut errors = Vec::new();
    let tag = |section: &str, list: Vec<String>| {
        list.into_iter()
            .map(|e| format!("[{section}] {e}"))
            .collect::<Vec<_>>()
    };
    errors.extend(tag("broker", config.broker.validate()));
    match config.pipeline.validate() {
        Err(uspwatch_pipeline::Error::Config(list)) => errors.extend(tag("pipeline", list)),
        Err(e) => errors.push(format!("[pipeline] {e}")),
        Ok(()) => {}
    }
    if let Err(e) = config.rules.validate() {
        errors.push(format!("[rules] {e}"));
    }
    errors.extend(tag("command_requests", config.command_requests.validate()));
    if config.http.tokens.iter().any(|t| t.len() < 16) {
        errors.push("[http] tokens must be at least 16 characters".into());
    }
    if config.http.command_timeout.is_zero() {
        errors.push("[http] command_timeout must be more than 0s".into());
    }
    errors
}

/// `USPWATCH__PIPELINE__KAFKA__BROKERS=a:9092` sets `pipeline.kafka.brokers`. Values are read
/// as TOML when they parse as a TOML value (numbers, booleans, arrays), else as strings.
fn overlay_env(root: &mut toml::Table, key: &str, value: &str) -> Result<(), String> {
    let path: Vec<String> = key[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(String::is_empty) || path.len() < 2 {
        return Err(format!("{key}: expected {ENV_PREFIX}SECTION__KEY"));
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut table = root;
    for part in &path[..path.len() - 1] {
        let entry = table
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("{key}: {part} is not a table")),
        };
    }
    table.insert(path[path.len() - 1].clone(), parsed);
    Ok(())
}

/// The annotated default configuration printed by `uspwatch generate-config`.
pub fn generate() -> String {
    let defaults = toml::to_string_pretty(&AppConfig::default())
        .unwrap_or_else(|e| format!("# could not render defaults: {e}\n"));
    let mut out = String::from(
        "# uspwatch configuration: every key with its default.\n\
         # Layering: these defaults < this file (--config) < USPWATCH__SECTION__KEY env < flags.\n\
         # Durations are strings such as \"30s\", \"5m\". Unknown keys are rejected.\n\n",
    );
    out.push_str(&defaults);
    out
}

/// Flattens a config to `section.key = value` lines, used to show the effective settings with
/// secrets already redacted by the section types.
pub fn effective(config: &AppConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(config) {
        flatten("", &toml::Value::Table(t), &mut out);
    }
    out
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        other => {
            let redacted = ["token", "password", "secret", "sasl"]
                .iter()
                .any(|s| prefix.contains(s));
            let shown = if redacted {
                "\"<redacted>\"".to_string()
            } else {
                other.to_string()
            };
            out.insert(prefix.to_string(), shown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        load_from(None, &[]).unwrap();
    }

    #[test]
    fn env_overrides_file() {
        let c = load_from(
            Some("[http]\nlisten = \"127.0.0.1:9000\"\n"),
            &[("USPWATCH__HTTP__LISTEN".into(), "127.0.0.1:9001".into())],
        )
        .unwrap();
        assert_eq!(c.http.listen.port(), 9001);
    }

    #[test]
    fn every_problem_is_reported() {
        let err = load_from(
            Some("[http]\nlisten = 5\n[nonsense]\nx = 1\n[log]\nformat = \"xml\"\n"),
            &[("USPWATCH__BAD".into(), "1".into())],
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
    }

    #[test]
    fn generated_defaults_parse_back() {
        load_from(Some(&generate()), &[]).unwrap();
    }

    #[test]
    fn tokens_are_redacted() {
        let mut c = AppConfig::default();
        c.http.tokens = vec!["0123456789abcdef-secret".into()];
        assert!(!format!("{:?}", c.http).contains("secret"));
        assert!(effective(&c).values().all(|v| !v.contains("secret")));
    }
}
