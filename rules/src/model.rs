//! The engine's public data: devices in, alerts and actions out. All serialise to the JSON
//! written to `usp.alerts.v1` / `usp.commands.v1` and served by the HTTP API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A device as the `devices` table shows it (inventory + presence), set by the binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Device {
    pub endpoint_id: String,
    pub online: bool,
    /// Online but not heard from for longer than expected.
    pub stale: bool,
    pub last_seen_ms: i64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub software_version: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds but not yet for `for`.
    Pending,
    Firing,
    /// The condition stopped holding (after `keep_firing_for`).
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert instance: a rule and the identity of one result row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Hex hash of the rule name and the sorted labels; stable across restarts.
    pub fingerprint: String,
    pub rule: String,
    pub state: AlertState,
    pub severity: String,
    /// `alertname`, `severity`, the rule's labels and the key columns.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The latest result row (all columns), as JSON values.
    pub values: BTreeMap<String, serde_json::Value>,
    pub active_since_ms: i64,
    #[serde(default)]
    pub fired_at_ms: Option<i64>,
    #[serde(default)]
    pub resolved_at_ms: Option<i64>,
    /// Last evaluation whose result contained this alert.
    pub last_seen_ms: i64,
    /// First evaluation of a firing alert whose result no longer contained it
    /// (`keep_firing_for` counts from here).
    #[serde(default)]
    pub keep_firing_since_ms: Option<i64>,
    pub silenced: bool,
    /// The most recent actions taken (or suppressed) for this alert, newest last.
    pub actions: Vec<ActionRecord>,
}

/// A state change of an alert, as written to `usp.alerts.v1` (key = fingerprint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertChange {
    pub at_ms: i64,
    pub at: String,
    /// `None` for a new alert.
    pub previous: Option<AlertState>,
    pub alert: Alert,
}

/// What happened to an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Handed to the command sink; the outcome follows as `succeeded` / `failed`.
    Sent,
    Succeeded,
    Failed,
    /// Mode is dry-run: every guardrail passed and this is what would have been sent.
    DryRun,
    /// A guardrail stopped it; see `reason`.
    Suppressed,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Sent => "sent",
            ActionStatus::Succeeded => "succeeded",
            ActionStatus::Failed => "failed",
            ActionStatus::DryRun => "dry_run",
            ActionStatus::Suppressed => "suppressed",
        }
    }
}

/// Result of an action's verification query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyOutcome {
    Fixed,
    NotFixed,
    /// The command failed or the query could not run.
    Unknown,
}

impl VerifyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyOutcome::Fixed => "fixed",
            VerifyOutcome::NotFixed => "not_fixed",
            VerifyOutcome::Unknown => "unknown",
        }
    }
}

/// One action of a rule on one device, as written to `usp.commands.v1` (key = endpoint_id).
/// The same `action_id` is written again when its outcome and its verification are known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub action_id: String,
    pub rule: String,
    pub fingerprint: String,
    pub endpoint_id: String,
    pub command: uspwatch_proto::Command,
    /// `enforce` or `dry-run`.
    pub mode: String,
    pub status: ActionStatus,
    /// Why it was suppressed (`kill_switch`, `silenced`, `cooldown`, `max_per_hour`,
    /// `max_fleet_fraction`) or why it failed.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub response: Option<serde_json::Value>,
    #[serde(default)]
    pub verify: Option<VerifyOutcome>,
    #[serde(default)]
    pub verified_at_ms: Option<i64>,
    pub at_ms: i64,
    pub at: String,
}

/// Everything the engine emits, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
pub enum Output {
    /// For `usp.alerts.v1`.
    Alert(AlertChange),
    /// For `usp.commands.v1`.
    Action(ActionRecord),
}

/// A label matcher of a silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    /// `value` is a regular expression (anchored at both ends).
    #[serde(default)]
    pub is_regex: bool,
    /// `false` negates the match.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// A silence as asked for by an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    pub matchers: Vec<Matcher>,
    /// How long it lasts from now, e.g. "2h".
    #[serde(with = "humantime_serde")]
    pub duration: std::time::Duration,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

/// An active or expired silence. A silenced alert keeps its lifecycle but is not pushed to
/// Alertmanager and its actions are suppressed (`reason = "silenced"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub created_by: String,
    pub comment: String,
    pub active: bool,
}

/// Health and schedule of one rule, for the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleStatus {
    pub name: String,
    pub source: String,
    pub sql: String,
    pub every_ms: i64,
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub window_ms: i64,
    pub severity: String,
    pub has_action: bool,
    pub mode: Option<String>,
    pub last_eval_ms: Option<i64>,
    pub last_duration_us: Option<u64>,
    pub last_error: Option<String>,
    pub last_rows: usize,
    pub pending: usize,
    pub firing: usize,
}

/// Counters for the console and the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    pub rules: usize,
    pub events_ingested: u64,
    pub window_events: usize,
    pub alerts_pending: usize,
    pub alerts_firing: usize,
    pub alerts_resolved: usize,
    pub actions_sent: u64,
    pub actions_succeeded: u64,
    pub actions_failed: u64,
    pub actions_dry_run: u64,
    pub actions_suppressed: u64,
    pub actions_verified_fixed: u64,
    pub actions_verified_not_fixed: u64,
    pub actions_verified_unknown: u64,
    pub kill_switch: bool,
    pub evaluation_rounds: u64,
}

/// What one evaluation round did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub at_ms: i64,
    pub rules_evaluated: usize,
    /// (rule, error) for rules whose query failed this round.
    pub errors: Vec<(String, String)>,
    pub changes: Vec<AlertChange>,
    /// Actions decided this round (sent, dry-run or suppressed) and verifications done.
    pub actions: Vec<ActionRecord>,
    pub duration_us: u64,
}
