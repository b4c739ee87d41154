//! Backtesting: run the rules over a recorded event file in event-time order and report the
//! alerts that would have fired and the actions that would have been sent or suppressed.
//! Nothing is ever sent: every action that passes its guardrails is recorded as dry-run.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use uspwatch_proto::time::millis;

use crate::config::RulesConfig;
use crate::engine::{CommandSink, Engine};
use crate::error::{Error, Result};
use crate::model::{ActionRecord, ActionStatus, AlertChange, AlertState};
use crate::rule::{self, RuleLoadError};

/// What a replay found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    pub events: u64,
    pub rounds: u64,
    pub first_event_ms: Option<i64>,
    pub last_event_ms: Option<i64>,
    /// Alerts that started firing, in order.
    pub fired: Vec<AlertChange>,
    pub resolved: usize,
    /// Every action decision (dry-run = would have been sent, suppressed = with the guardrail).
    pub actions: Vec<ActionRecord>,
    pub load_errors: Vec<RuleLoadError>,
    /// Rule evaluation errors: (rule, message), first per rule.
    pub errors: BTreeMap<String, String>,
}

impl ReplayReport {
    /// Actions that would have been sent.
    pub fn would_send(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| a.status == ActionStatus::DryRun)
            .count()
    }

    /// Suppressed actions by guardrail.
    pub fn suppressed_by(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for a in &self.actions {
            if a.status == ActionStatus::Suppressed {
                *m.entry(a.reason.clone().unwrap_or_default()).or_default() += 1;
            }
        }
        m
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.load_errors {
            writeln!(f, "rule not loaded: {e}")?;
        }
        let span = match (self.first_event_ms, self.last_event_ms) {
            (Some(a), Some(b)) => format!(
                "{} .. {}",
                uspwatch_proto::rfc3339_millis(a),
                uspwatch_proto::rfc3339_millis(b)
            ),
            _ => "no events".into(),
        };
        writeln!(
            f,
            "replayed {} events ({span}) in {} rounds",
            self.events, self.rounds
        )?;
        let mut per_rule: BTreeMap<&str, (usize, usize, BTreeMap<&str, usize>)> = BTreeMap::new();
        for c in &self.fired {
            per_rule.entry(&c.alert.rule).or_default().0 += 1;
        }
        for a in &self.actions {
            let e = per_rule.entry(&a.rule).or_default();
            match a.status {
                ActionStatus::DryRun => e.1 += 1,
                ActionStatus::Suppressed => {
                    *e.2.entry(a.reason.as_deref().unwrap_or("")).or_default() += 1
                }
                _ => {}
            }
        }
        writeln!(
            f,
            "{:<28} {:>7} {:>11}  suppressed",
            "rule", "fired", "would send"
        )?;
        for (rule, (fired, send, supp)) in &per_rule {
            let s: Vec<String> = supp.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(f, "{rule:<28} {fired:>7} {send:>11}  {}", s.join(" "))?;
        }
        writeln!(
            f,
            "alerts fired: {}, resolved: {}, actions that would be sent: {}, suppressed: {}",
            self.fired.len(),
            self.resolved,
            self.would_send(),
            self.suppressed_by().values().sum::<usize>()
        )?;
        for (rule, e) in &self.errors {
            writeln!(f, "rule {rule} failed: {e}")?;
        }
        Ok(())
    }
}

struct NeverSend;

#[async_trait::async_trait]
impl CommandSink for NeverSend {
    async fn send(
        &self,
        _: &str,
        _: uspwatch_proto::Command,
        _: &str,
    ) -> Result<serde_json::Value> {
        Err(Error::CommandFailed("replay never sends".into()))
    }
}

/// Replays `events_jsonl` (one `uspwatch_proto::Event` JSON per line) through the rules of
/// `rules`, evaluating every `rules.tick` of event time. `progress(done, total)` is called
/// with bytes as the file is read and as it is replayed.
pub async fn replay(
    rules: &RulesConfig,
    events_jsonl: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReplayReport> {
    let io = |source| Error::Io {
        path: events_jsonl.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(events_jsonl).map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    let mut files = Vec::new();
    if rules.default_pack {
        files.extend(
            rule::PACK
                .iter()
                .map(|(s, t)| (s.to_string(), t.to_string())),
        );
    }
    for d in &rules.dirs {
        files.extend(rule::read_dir(d)?);
    }
    let config = RulesConfig {
        alertmanager: None,
        ..rules.clone()
    };
    let (engine, load_errors) = Engine::build(&config, Arc::new(NeverSend), files, None, true)?;

    // Read everything first: recorded files are not always in time order (several
    // partitions, retries), and the replay must be.
    let mut events: Vec<(uspwatch_proto::Event, u64)> = Vec::new();
    let mut read = 0u64;
    let mut last_report = 0u64;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        read += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let e: uspwatch_proto::Event = serde_json::from_str(&line).map_err(|e| Error::Parse {
            path: events_jsonl.to_path_buf(),
            message: format!("line {}: {e}", i + 1),
        })?;
        events.push((e, read));
        if read - last_report > (1 << 20) {
            progress(read / 2, total);
            last_report = read;
        }
    }
    events.sort_by_key(|(e, _)| e.received_at_ms);

    let mut report = ReplayReport {
        load_errors,
        first_event_ms: events.first().map(|(e, _)| e.received_at_ms),
        last_event_ms: events.last().map(|(e, _)| e.received_at_ms),
        ..ReplayReport::default()
    };
    let (Some(first), Some(last)) = (report.first_event_ms, report.last_event_ms) else {
        progress(total, total);
        return Ok(report);
    };
    let step = millis(config.tick).max(1);
    let n = events.len() as u64;
    let mut next = 0usize;
    let mut t = first;
    loop {
        while next < events.len() && events[next].0.received_at_ms <= t {
            engine.ingest(&events[next].0);
            next += 1;
            report.events += 1;
        }
        let r = engine.evaluate_at(t).await?;
        report.rounds += 1;
        for c in r.changes {
            match c.alert.state {
                AlertState::Firing if c.previous != Some(AlertState::Firing) => {
                    report.fired.push(c)
                }
                AlertState::Resolved => report.resolved += 1,
                _ => {}
            }
        }
        report.actions.extend(r.actions);
        for (rule, e) in r.errors {
            report.errors.entry(rule).or_insert(e);
        }
        if report.rounds.is_multiple_of(256) {
            progress(total / 2 + total * next as u64 / n.max(1) / 2, total);
        }
        if t >= last {
            break;
        }
        t += step;
    }
    progress(total, total);
    Ok(report)
}
