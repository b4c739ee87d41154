//! [`RulesConfig`]: how the engine is set up (rule sources, scheduling, guardrail limits,
//! Alertmanager).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The `[rules]` section of the uspwatch configuration.
///
/// ```toml
/// [rules]
/// dirs = ["/etc/uspwatch/rules"]   # extra rule directories (*.toml), default none
/// default_pack = true              # load the built-in pack
/// tick = "1s"                      # scheduler granularity
/// kill_switch = false              # true: no action is ever sent
/// max_concurrency = 16             # commands in flight at once
/// max_window_events = 2000000      # events retained for `events`, oldest dropped first
/// max_window_bytes = 268435456     # bytes of events (and latest values) retained, same
/// max_window = "2h"                # longest rule window honoured
/// resolved_retention = "15m"       # how long resolved alerts stay visible
/// command_history = 10000          # rows kept in the `commands` table
/// [rules.alertmanager]
/// url = "http://127.0.0.1:9093"
/// resend_interval = "1m"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Extra directories of rule files (`*.toml`). Default: none.
    pub dirs: Vec<PathBuf>,
    /// Load the built-in rule pack (compiled into the binary). Default: true.
    pub default_pack: bool,
    /// Granularity of the evaluation scheduler; each rule still runs at its own `every`.
    /// Default: 1s.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Where alerts are pushed. Default: none (alerts only go to Kafka and the HTTP API).
    pub alertmanager: Option<AlertmanagerConfig>,
    /// Start with the global kill switch on (every action suppressed). Default: false.
    pub kill_switch: bool,
    /// Commands in flight at once across all rules; more wait for a slot. Default: 16.
    pub max_concurrency: usize,
    /// Cap on events held in the window; the oldest are dropped first. Default: 2,000,000.
    pub max_window_events: usize,
    /// Cap on the bytes the window holds (the events' data as received, plus about 100 bytes
    /// per event; the `latest` values may take a quarter of it). Past it, the oldest events
    /// are dropped first, and counted in `uspwatch_rules_events_evicted_early_total{bound="bytes"}`;
    /// rules then see a shorter window. Default: 256 MiB.
    pub max_window_bytes: usize,
    /// Longest window a rule may ask for (longer ones are refused at load). Default: 2h.
    #[serde(with = "humantime_serde")]
    pub max_window: Duration,
    /// How long a resolved alert stays in memory (HTTP API, Alertmanager). Default: 15m.
    #[serde(with = "humantime_serde")]
    pub resolved_retention: Duration,
    /// Actions kept for the `commands` table and the API. Default: 10,000.
    pub command_history: usize,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            dirs: Vec::new(),
            default_pack: true,
            tick: Duration::from_secs(1),
            alertmanager: None,
            kill_switch: false,
            max_concurrency: 16,
            max_window_events: 2_000_000,
            max_window_bytes: 256 * 1024 * 1024,
            max_window: Duration::from_secs(2 * 3600),
            resolved_retention: Duration::from_secs(15 * 60),
            command_history: 10_000,
        }
    }
}

/// Alertmanager v2 API target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://127.0.0.1:9093` (alerts go to `<url>/api/v2/alerts`).
    pub url: String,
    /// Firing alerts are re-sent this often. Default: 1m.
    #[serde(with = "humantime_serde")]
    pub resend_interval: Duration,
    /// Per-request timeout. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            url: "http://127.0.0.1:9093".to_string(),
            resend_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

impl RulesConfig {
    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.tick.is_zero() {
            problems.push("tick must be > 0".to_string());
        }
        if self.max_concurrency == 0 {
            problems.push("max_concurrency must be >= 1".to_string());
        }
        if self.max_window_events == 0 {
            problems.push("max_window_events must be >= 1".to_string());
        }
        if self.max_window_bytes < 1024 * 1024 {
            problems.push("max_window_bytes must be >= 1048576".to_string());
        }
        if self.max_window.is_zero() {
            problems.push("max_window must be > 0".to_string());
        }
        if let Some(am) = &self.alertmanager {
            if !(am.url.starts_with("http://") || am.url.starts_with("https://")) {
                problems.push(format!(
                    "alertmanager.url must start with http:// or https:// (got {:?})",
                    am.url
                ));
            }
            if am.resend_interval.is_zero() {
                problems.push("alertmanager.resend_interval must be > 0".to_string());
            }
        }
        if !self.default_pack && self.dirs.is_empty() {
            problems.push("no rules: default_pack is false and dirs is empty".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems.join("\n")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_example_and_reports_all_problems() {
        let c: RulesConfig = toml::from_str(
            r#"
            dirs = ["/tmp/r"]
            tick = "500ms"
            [alertmanager]
            url = "http://127.0.0.1:9093"
            resend_interval = "30s"
            "#,
        )
        .unwrap();
        assert_eq!(c.tick, Duration::from_millis(500));
        c.validate().unwrap();
        let bad = RulesConfig {
            max_concurrency: 0,
            tick: Duration::ZERO,
            ..RulesConfig::default()
        };
        let msg = bad.validate().unwrap_err().to_string();
        assert!(
            msg.contains("tick") && msg.contains("max_concurrency"),
            "{msg}"
        );
        assert!(toml::from_str::<RulesConfig>("nope = 1").is_err());
    }
}
