//! Rule files: TOML, one rule per file (top-level keys) or several as `[[rule]]` tables.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A rule as written in its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    pub name: String,
    pub sql: String,
    /// How often the rule runs. Default 30s.
    #[serde(default = "d_every", with = "humantime_serde")]
    pub every: Duration,
    /// How long a row must keep appearing before its alert fires. Default 0 (at once).
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_: Duration,
    /// How long a firing alert stays firing after its row disappears. Default 0.
    #[serde(default, with = "humantime_serde")]
    pub keep_firing_for: Duration,
    /// How far back `events` reaches for this rule. Default 5m.
    #[serde(default = "d_window", with = "humantime_serde")]
    pub window: Duration,
    #[serde(default = "d_severity")]
    pub severity: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Identity columns of an alert instance. Default `["endpoint_id"]`.
    #[serde(default = "d_key")]
    pub key: Vec<String>,
    #[serde(default)]
    pub action: Option<toml::Table>,
}

fn d_every() -> Duration {
    Duration::from_secs(30)
}
fn d_window() -> Duration {
    Duration::from_secs(300)
}
fn d_severity() -> String {
    "warning".into()
}
fn d_key() -> Vec<String> {
    vec!["endpoint_id".into()]
}

/// Whether an action is really sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Mode {
    #[serde(rename = "dry-run")]
    DryRun,
    #[serde(rename = "enforce")]
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        }
    }
}

/// The guardrail part of `[action]`; every other key is the command template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Guardrails {
    /// Minimum time between two attempts on the same device. Default 1h.
    #[serde(default = "d_cooldown", with = "humantime_serde")]
    pub cooldown: Duration,
    /// Commands (sent or dry-run) per rule per rolling hour. Default 100.
    #[serde(default = "d_per_hour")]
    pub max_per_hour: usize,
    /// Share of the online fleet one rule may act on per `fleet_window`. Default 0.05.
    #[serde(default = "d_fraction")]
    pub max_fleet_fraction: f64,
    #[serde(default = "d_fleet_window", with = "humantime_serde")]
    pub fleet_window: Duration,
    /// Default dry-run: a rule acts only when it says `mode = "enforce"`.
    #[serde(default = "d_mode")]
    pub mode: Mode,
    /// SQL returning rows when the fix worked (uses `action_endpoint()`, `action_ms()`).
    #[serde(default)]
    pub verify: Option<String>,
    #[serde(default = "d_verify_after", with = "humantime_serde")]
    pub verify_after: Duration,
    /// Result column naming the device to act on. Default `endpoint_id`.
    #[serde(default = "d_target")]
    pub target: String,
}

fn d_cooldown() -> Duration {
    Duration::from_secs(3600)
}
fn d_per_hour() -> usize {
    100
}
fn d_fraction() -> f64 {
    0.05
}
fn d_fleet_window() -> Duration {
    Duration::from_secs(3600)
}
fn d_mode() -> Mode {
    Mode::DryRun
}
fn d_verify_after() -> Duration {
    Duration::from_secs(300)
}
fn d_target() -> String {
    "endpoint_id".into()
}

pub(crate) const GUARDRAIL_KEYS: &[&str] = &[
    "cooldown",
    "max_per_hour",
    "max_fleet_fraction",
    "fleet_window",
    "mode",
    "verify",
    "verify_after",
    "target",
];

/// Splits `[action]` into guardrails and the command template (as JSON, strings templated).
pub(crate) fn split_action(table: &toml::Table) -> Result<(Guardrails, serde_json::Value), String> {
    let mut guard = toml::Table::new();
    let mut command = serde_json::Map::new();
    for (k, v) in table {
        if GUARDRAIL_KEYS.contains(&k.as_str()) {
            guard.insert(k.clone(), v.clone());
        } else {
            let j = serde_json::to_value(v).map_err(|e| format!("action.{k}: {e}"))?;
            command.insert(k.clone(), j);
        }
    }
    let g: Guardrails = guard
        .try_into()
        .map_err(|e: toml::de::Error| format!("action: {}", e.message()))?;
    if !(g.max_fleet_fraction > 0.0 && g.max_fleet_fraction <= 1.0) {
        return Err("action.max_fleet_fraction must be in (0, 1]".into());
    }
    let command = serde_json::Value::Object(command);
    serde_json::from_value::<uspwatch_proto::Command>(command.clone())
        .map_err(|e| format!("action is not a valid command: {e}"))?;
    Ok((g, command))
}

/// A rule that could not be loaded. The others still run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleLoadError {
    /// The file it was in.
    pub source: String,
    /// The rule's name (or the file stem when the name could not be read).
    pub rule: String,
    pub message: String,
    /// 1-based position in the rule's `sql` when the error is in the SQL.
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl fmt::Display for RuleLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: rule {:?}: ", self.source, self.rule)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "SQL error at line {l}, column {c}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Parses the text of one rule file into its rules (each `Ok`) or errors.
pub(crate) fn parse_file(source: &str, text: &str) -> Vec<Result<RuleSpec, RuleLoadError>> {
    let stem = Path::new(source)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| source.to_string());
    let err = |rule: String, message: String| RuleLoadError {
        source: source.to_string(),
        rule,
        message,
        line: None,
        column: None,
    };
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => return vec![Err(err(stem, format!("TOML: {e}")))],
    };
    let tables: Vec<toml::Table> = match table.get("rule") {
        Some(toml::Value::Array(items)) if table.len() == 1 => items
            .iter()
            .map(|v| v.as_table().cloned().unwrap_or_default())
            .collect(),
        _ => vec![table],
    };
    tables
        .into_iter()
        .map(|t| {
            let name = t
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| stem.clone());
            let spec: RuleSpec = t
                .try_into()
                .map_err(|e: toml::de::Error| err(name.clone(), e.message().to_string()))?;
            if spec.name.is_empty()
                || !spec
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(err(
                    name,
                    "name must be non-empty ASCII letters, digits, '_' or '-'".into(),
                ));
            }
            if spec.every.is_zero() {
                return Err(err(name, "every must be > 0".into()));
            }
            if spec.key.is_empty() {
                return Err(err(name, "key must name at least one column".into()));
            }
            Ok(spec)
        })
        .collect()
}

/// The built-in pack, compiled in so the binary works from any directory.
pub(crate) const PACK: &[(&str, &str)] = &[
    (
        "pack/reboot_loop.toml",
        include_str!("../pack/reboot_loop.toml"),
    ),
    (
        "pack/device_silent.toml",
        include_str!("../pack/device_silent.toml"),
    ),
    (
        "pack/wifi_noise_high.toml",
        include_str!("../pack/wifi_noise_high.toml"),
    ),
    (
        "pack/memory_critical.toml",
        include_str!("../pack/memory_critical.toml"),
    ),
    (
        "pack/wan_flapping.toml",
        include_str!("../pack/wan_flapping.toml"),
    ),
    (
        "pack/dsl_noise_margin_low.toml",
        include_str!("../pack/dsl_noise_margin_low.toml"),
    ),
    (
        "pack/pon_rx_power_low.toml",
        include_str!("../pack/pon_rx_power_low.toml"),
    ),
    (
        "pack/cpu_critical.toml",
        include_str!("../pack/cpu_critical.toml"),
    ),
    (
        "pack/temperature_high.toml",
        include_str!("../pack/temperature_high.toml"),
    ),
    (
        "pack/firmware_update_failed.toml",
        include_str!("../pack/firmware_update_failed.toml"),
    ),
    (
        "pack/ipping_failure_rate_high.toml",
        include_str!("../pack/ipping_failure_rate_high.toml"),
    ),
];

/// Reads every `*.toml` file of `dir` (sorted, not recursive) as (source, text).
pub(crate) fn read_dir(dir: &Path) -> crate::Result<Vec<(String, String)>> {
    let io = |source| crate::Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|source| crate::Error::Io {
                path: p.clone(),
                source,
            })?;
            Ok((p.display().to_string(), text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_array_forms() {
        let one = parse_file(
            "a.toml",
            "name = \"x\"\nsql = \"select 1\"\nevery = \"10s\"",
        );
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].as_ref().unwrap().every, Duration::from_secs(10));
        let many = parse_file(
            "b.toml",
            "[[rule]]\nname = \"a\"\nsql = \"s\"\n[[rule]]\nname = \"b\"\nsql = \"s\"\nbogus = 1",
        );
        assert!(many[0].is_ok());
        let e = many[1].as_ref().unwrap_err();
        assert_eq!(e.rule, "b");
        assert!(e.message.contains("bogus"), "{}", e.message);
    }

    #[test]
    fn action_split() {
        let t: toml::Table = toml::from_str(
            r#"type = "operate"
            command = "Device.Reboot()"
            command_key = "{{rule}}"
            mode = "enforce"
            cooldown = "10m""#,
        )
        .unwrap();
        let (g, c) = split_action(&t).unwrap();
        assert_eq!(g.mode, Mode::Enforce);
        assert_eq!(g.cooldown, Duration::from_secs(600));
        assert_eq!(c["command"], "Device.Reboot()");
        let bad: toml::Table = toml::from_str("type = \"reboot\"").unwrap();
        assert!(split_action(&bad).is_err());
    }
}
