//! What the demo tells: the fleet by MTP, the event rate, firing alerts, the action timeline
//! (sent → succeeded → verified, or suppressed and why) and quarantine counts, gathered from a
//! running gateway; and, off a terminal, one line per step of the story.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use uspwatch_proto::Command;
use uspwatch_rules::{ActionRecord, ActionStatus, AlertChange, AlertState, Output, VerifyOutcome};

use uspwatch::gateway::Gateway;

/// Action rows kept for the timeline (the newest).
const MAX_ACTIONS: usize = 200;
/// Seconds of event-rate history (the sparkline).
const RATE_HISTORY: usize = 120;

/// One row of the action timeline.
#[derive(Debug, Clone)]
pub struct ActionRow {
    pub at_s: u64,
    pub action_id: String,
    pub rule: String,
    pub endpoint_id: String,
    pub command: String,
    /// The latest status: sent, succeeded, failed, dry_run or suppressed.
    pub status: ActionStatus,
    /// Why it was suppressed or failed.
    pub reason: Option<String>,
    pub verify: Option<VerifyOutcome>,
}

impl ActionRow {
    /// `sent → succeeded → fixed`, `suppressed: cooldown`, …
    pub fn progress(&self) -> String {
        let mut s = match self.status {
            ActionStatus::Suppressed => {
                return format!("suppressed: {}", self.reason.as_deref().unwrap_or("?"));
            }
            ActionStatus::DryRun => return "dry run (not sent)".into(),
            ActionStatus::Sent => "sent".to_string(),
            ActionStatus::Succeeded => "sent → succeeded".to_string(),
            ActionStatus::Failed => {
                format!("sent → failed: {}", self.reason.as_deref().unwrap_or("?"))
            }
        };
        match self.verify {
            Some(VerifyOutcome::Fixed) => s.push_str(" → verified fixed"),
            Some(VerifyOutcome::NotFixed) => s.push_str(" → not fixed"),
            Some(VerifyOutcome::Unknown) => s.push_str(" → unverified"),
            None => {}
        }
        s
    }
}

/// Fleet presence for one MTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Presence {
    pub online: usize,
    pub stale: usize,
    pub offline: usize,
}

/// A firing alert as the console lists it.
#[derive(Debug, Clone)]
pub struct FiringAlert {
    pub rule: String,
    pub severity: String,
    pub endpoint_id: String,
    pub summary: String,
    pub fired_at_ms: i64,
}

/// What the gateway looks like now: read once per refresh.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// By MTP name (only MQTT exists today).
    pub fleet: BTreeMap<String, Presence>,
    pub events_total: u64,
    pub firing: Vec<FiringAlert>,
    pub pending: usize,
    pub broker_connections: u64,
    pub records_rejected: u64,
}

impl Snapshot {
    pub fn take(gw: &Gateway) -> Snapshot {
        let mut fleet: BTreeMap<String, Presence> = BTreeMap::new();
        for d in gw.pipeline.inventory().snapshot() {
            let p = fleet.entry(mtp(&d).to_string()).or_default();
            if !d.online {
                p.offline += 1;
            } else if d.stale {
                p.stale += 1;
            } else {
                p.online += 1;
            }
        }
        let mut firing: Vec<FiringAlert> = Vec::new();
        let mut pending = 0;
        for a in gw.rules.alerts() {
            match a.state {
                AlertState::Firing => firing.push(FiringAlert {
                    endpoint_id: a.labels.get("endpoint_id").cloned().unwrap_or_default(),
                    summary: a.annotations.get("summary").cloned().unwrap_or_default(),
                    fired_at_ms: a.fired_at_ms.unwrap_or(a.active_since_ms),
                    severity: a.severity,
                    rule: a.rule,
                }),
                AlertState::Pending => pending += 1,
                AlertState::Resolved => {}
            }
        }
        firing.sort_by_key(|f| std::cmp::Reverse(f.fired_at_ms));
        let b = gw.broker.stats();
        Snapshot {
            fleet,
            events_total: gw.pipeline.stats().events_written,
            firing,
            pending,
            broker_connections: b.connections,
            records_rejected: b.records_rejected,
        }
    }

    pub fn totals(&self) -> Presence {
        self.fleet
            .values()
            .fold(Presence::default(), |a, p| Presence {
                online: a.online + p.online,
                stale: a.stale + p.stale,
                offline: a.offline + p.offline,
            })
    }
}

/// The transport a device reached the gateway over. Every device speaks MQTT today; the
/// console keeps the MTP a column so other transports appear beside it.
fn mtp(d: &uspwatch_pipeline::Device) -> &'static str {
    match d.mqtt_version.as_deref() {
        Some(_) => "MQTT",
        None => "unknown",
    }
}

/// Everything that happened since the demo started, fed by the gateway's output streams.
pub struct Story {
    started: Instant,
    actions: VecDeque<ActionRow>,
    /// Rejected records by reason.
    pub quarantine: BTreeMap<String, u64>,
    /// Events per second, oldest first.
    pub rates: VecDeque<u64>,
    last_events: Option<u64>,
    /// Story lines not yet printed (off a terminal).
    lines: Vec<String>,
    pub alerts_fired: u64,
    pub alerts_resolved: u64,
    pub actions_verified: u64,
}

impl Story {
    pub fn new(started: Instant) -> Story {
        Story {
            started,
            actions: VecDeque::new(),
            quarantine: BTreeMap::new(),
            rates: VecDeque::new(),
            last_events: None,
            lines: Vec::new(),
            alerts_fired: 0,
            alerts_resolved: 0,
            actions_verified: 0,
        }
    }

    fn elapsed_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Timeline rows, newest first.
    pub fn actions(&self) -> impl Iterator<Item = &ActionRow> {
        self.actions.iter().rev()
    }

    /// Events per second over the last few seconds.
    pub fn rate(&self) -> u64 {
        let n = self.rates.len().min(5);
        if n == 0 {
            return 0;
        }
        self.rates.iter().rev().take(n).sum::<u64>() / n as u64
    }

    /// Records the event counter once a second.
    pub fn sample_events(&mut self, total: u64) {
        if let Some(last) = self.last_events {
            self.rates.push_back(total.saturating_sub(last));
            if self.rates.len() > RATE_HISTORY {
                self.rates.pop_front();
            }
        }
        self.last_events = Some(total);
    }

    pub fn on_quarantine(&mut self, reason: &str) {
        *self.quarantine.entry(reason.to_string()).or_default() += 1;
    }

    pub fn on_output(&mut self, out: &Output) {
        match out {
            Output::Alert(c) => self.on_alert(c),
            Output::Action(a) => self.on_action(a),
        }
    }

    fn on_alert(&mut self, c: &AlertChange) {
        let eid = c
            .alert
            .labels
            .get("endpoint_id")
            .map_or("-", String::as_str);
        match c.alert.state {
            AlertState::Firing if c.previous != Some(AlertState::Firing) => {
                self.alerts_fired += 1;
                let summary = c.alert.annotations.get("summary").cloned();
                let line = format!(
                    "alert fired       {} on {eid}{}",
                    c.alert.rule,
                    summary.map(|s| format!(": {s}")).unwrap_or_default()
                );
                self.line(line);
            }
            AlertState::Resolved if c.previous != Some(AlertState::Resolved) => {
                self.alerts_resolved += 1;
                let line = format!("alert resolved    {} on {eid}", c.alert.rule);
                self.line(line);
            }
            _ => {}
        }
    }

    fn on_action(&mut self, a: &ActionRecord) {
        let at_s = self.elapsed_s();
        let idx = self.actions.iter().position(|r| r.action_id == a.action_id);
        let row = match idx {
            Some(i) => &mut self.actions[i],
            None => {
                if self.actions.len() == MAX_ACTIONS {
                    self.actions.pop_front();
                }
                self.actions.push_back(ActionRow {
                    at_s,
                    action_id: a.action_id.clone(),
                    rule: a.rule.clone(),
                    endpoint_id: a.endpoint_id.clone(),
                    command: describe(&a.command),
                    status: a.status,
                    reason: None,
                    verify: None,
                });
                let last = self.actions.len() - 1;
                &mut self.actions[last]
            }
        };
        let newly_verified = a.verify.is_some() && row.verify.is_none();
        // A verification record repeats the final status; keep the most advanced one.
        row.status = a.status;
        if a.reason.is_some() {
            row.reason = a.reason.clone();
        }
        if a.verify.is_some() {
            row.verify = a.verify;
        }
        let target = format!("{} → {}", a.rule, a.endpoint_id);
        let line = if newly_verified {
            let v = a.verify.unwrap_or(VerifyOutcome::Unknown);
            if v == VerifyOutcome::Fixed {
                self.actions_verified += 1;
            }
            Some(match v {
                VerifyOutcome::Fixed => format!("verified fixed    {target}"),
                VerifyOutcome::NotFixed => format!("not fixed         {target}"),
                VerifyOutcome::Unknown => format!("unverified        {target}"),
            })
        } else if a.verify.is_none() {
            match a.status {
                ActionStatus::Sent => Some(format!(
                    "action sent       {target}: {}",
                    describe(&a.command)
                )),
                ActionStatus::Failed => Some(format!(
                    "action failed     {target}: {}",
                    a.reason.as_deref().unwrap_or("?")
                )),
                ActionStatus::Suppressed => Some(format!(
                    "action suppressed {target}: {}",
                    a.reason.as_deref().unwrap_or("?")
                )),
                ActionStatus::DryRun => Some(format!(
                    "dry run           {target}: {}",
                    describe(&a.command)
                )),
                ActionStatus::Succeeded => None,
            }
        } else {
            None
        };
        if let Some(l) = line {
            self.line(l);
        }
    }

    /// Queues a story line, stamped with the time since start.
    pub fn line(&mut self, text: String) {
        let at = self.elapsed_s();
        self.lines.push(format!("t+{at:>4}s  {text}"));
    }

    /// Story lines since the last call.
    pub fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }
}

/// A command in a few words: `set Device.WiFi.Radio.1.Channel=6`, `operate Device.Reboot()`.
pub fn describe(c: &Command) -> String {
    match c {
        Command::Set { objects, .. } => {
            let params: Vec<String> = objects
                .iter()
                .flat_map(|o| {
                    o.params
                        .iter()
                        .map(move |(k, v)| format!("{}{k}={v}", o.obj_path))
                })
                .collect();
            format!("set {}", params.join(" "))
        }
        Command::Operate { command, .. } => format!("operate {command}"),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_else(|| "command".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(id: &str, status: ActionStatus, verify: Option<VerifyOutcome>) -> Output {
        Output::Action(ActionRecord {
            action_id: id.into(),
            rule: "device_silent".into(),
            fingerprint: "f".into(),
            endpoint_id: "os::A".into(),
            command: Command::Operate {
                command: "Device.Reboot()".into(),
                command_key: id.into(),
                args: Default::default(),
                send_resp: true,
            },
            mode: "enforce".into(),
            status,
            reason: None,
            response: None,
            verify,
            verified_at_ms: None,
            at_ms: 0,
            at: String::new(),
        })
    }

    #[test]
    fn an_action_is_one_row_that_advances_and_one_line_per_step() {
        let mut s = Story::new(Instant::now());
        s.on_output(&action("a1", ActionStatus::Sent, None));
        s.on_output(&action("a1", ActionStatus::Succeeded, None));
        s.on_output(&action(
            "a1",
            ActionStatus::Succeeded,
            Some(VerifyOutcome::Fixed),
        ));
        let rows: Vec<_> = s.actions().collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].progress(), "sent → succeeded → verified fixed");
        let lines = s.take_lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].ends_with("action sent       device_silent → os::A: operate Device.Reboot()")
        );
        assert!(lines[1].ends_with("verified fixed    device_silent → os::A"));
        assert_eq!(s.actions_verified, 1);
        assert!(s.take_lines().is_empty());
    }

    #[test]
    fn suppression_says_why() {
        let mut s = Story::new(Instant::now());
        let Output::Action(mut a) = action("a2", ActionStatus::Suppressed, None) else {
            unreachable!()
        };
        a.reason = Some("max_fleet_fraction".into());
        s.on_output(&Output::Action(a));
        assert_eq!(
            s.actions().next().map(ActionRow::progress).as_deref(),
            Some("suppressed: max_fleet_fraction")
        );
        assert!(
            s.take_lines()[0]
                .ends_with("action suppressed device_silent → os::A: max_fleet_fraction")
        );
    }

    #[test]
    fn rate_is_per_second_deltas() {
        let mut s = Story::new(Instant::now());
        for total in [100, 150, 250, 300] {
            s.sample_events(total);
        }
        assert_eq!(s.rates, [50, 100, 50]);
        assert_eq!(s.rate(), 66);
    }
}
