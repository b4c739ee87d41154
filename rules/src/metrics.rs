//! Metric names of the rule engine. Labels are bounded: `rule` (loaded rule names), `state`,
//! `status`, `reason`, `outcome`, `result` — never an endpoint id.

/// Counter: events appended to the rule window.
pub const EVENTS_INGESTED: &str = "uspwatch_rules_events_ingested_total";
/// Counter: durable events the window never received because its consumer fell behind the
/// event stream (the binary feeds the window from a bounded broadcast).
pub const EVENTS_SKIPPED: &str = "uspwatch_rules_events_skipped_total";
/// Counter: events dropped from the window (aged out or over `max_window_events`).
pub const EVENTS_EVICTED: &str = "uspwatch_rules_events_evicted_total";
/// Gauge: events currently in the window.
pub const WINDOW_EVENTS: &str = "uspwatch_rules_window_events";
/// Gauge: rules loaded.
pub const RULES_LOADED: &str = "uspwatch_rules_loaded";
/// Histogram (seconds), label `rule`: time to run one rule's query.
pub const RULE_EVAL_SECONDS: &str = "uspwatch_rules_rule_evaluation_seconds";
/// Counter, label `rule`: rule evaluations whose query failed.
pub const RULE_EVAL_FAILURES: &str = "uspwatch_rules_rule_evaluation_failures_total";
/// Histogram (seconds): one evaluation round (all due rules and verifications).
pub const ROUND_SECONDS: &str = "uspwatch_rules_round_seconds";
/// Gauge, label `state` (pending/firing/resolved): alerts in memory.
pub const ALERTS: &str = "uspwatch_rules_alerts";
/// Counter, labels `rule`, `state`: alert state changes.
pub const ALERT_TRANSITIONS: &str = "uspwatch_rules_alert_transitions_total";
/// Counter, labels `rule`, `status` (sent/succeeded/failed/dry_run/suppressed), `reason`
/// (guardrail name or empty): action records.
pub const ACTIONS: &str = "uspwatch_rules_actions_total";
/// Counter, labels `rule`, `outcome` (fixed/not_fixed/unknown): verifications.
pub const VERIFICATIONS: &str = "uspwatch_rules_verifications_total";
/// Gauge: 1 while the kill switch is on.
pub const KILL_SWITCH: &str = "uspwatch_rules_kill_switch";
/// Counter, label `result` (ok/error): Alertmanager pushes.
pub const ALERTMANAGER_PUSHES: &str = "uspwatch_rules_alertmanager_pushes_total";

/// Registers the description of every metric above.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    for result in ["ok", "error"] {
        metrics::counter!(ALERTMANAGER_PUSHES, "result" => result).increment(0);
    }
    describe_counter!(EVENTS_INGESTED, "Events appended to the rule window");
    describe_counter!(EVENTS_EVICTED, "Events dropped from the rule window");
    metrics::counter!(EVENTS_SKIPPED).increment(0);
    describe_counter!(
        EVENTS_SKIPPED,
        "Durable events the rule window missed because it fell behind the event stream"
    );
    describe_gauge!(WINDOW_EVENTS, "Events currently in the rule window");
    describe_gauge!(RULES_LOADED, "Rules loaded");
    describe_histogram!(
        RULE_EVAL_SECONDS,
        metrics::Unit::Seconds,
        "Time to run one rule's query"
    );
    describe_counter!(RULE_EVAL_FAILURES, "Rule evaluations whose query failed");
    describe_histogram!(
        ROUND_SECONDS,
        metrics::Unit::Seconds,
        "Time of one evaluation round"
    );
    describe_gauge!(ALERTS, "Alerts in memory by state");
    describe_counter!(ALERT_TRANSITIONS, "Alert state changes");
    describe_counter!(ACTIONS, "Action records by status and guardrail reason");
    describe_counter!(VERIFICATIONS, "Action verifications by outcome");
    describe_gauge!(KILL_SWITCH, "1 while the action kill switch is on");
    describe_counter!(ALERTMANAGER_PUSHES, "Alertmanager pushes by result");
}
