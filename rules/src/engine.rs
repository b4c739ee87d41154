//! [`Engine`]: owns the window, the compiled rules and their alerts; evaluates, acts, verifies.

mod outputs;
mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use datafusion::execution::context::{SessionConfig, SessionContext};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use uspwatch_proto::time::{micros_u64, millis, now_ms as now_wall_ms};

use crate::action::ActionState;
use crate::alert;
use crate::compile::{self, CompiledRule};
use crate::config::RulesConfig;
use crate::error::Result;
use crate::metrics as m;
use crate::model::{
    ActionRecord, ActionStatus, Alert, AlertState, Device, EngineStats, EvalReport, NewSilence,
    Output, RuleStatus, Silence,
};
use crate::rule::{self, RuleLoadError};
use crate::tables::LiveTable;
use crate::tables::ring::Ring;
use crate::tables::sources::{
    CommandLog, CommandsSource, DeviceState, DevicesSource, EventsSource, LatestSource,
};
use crate::udf::{self, EvalParams, ParamCell};

/// Where actions go: the binary connects this to the controller.
#[async_trait]
pub trait CommandSink: Send + Sync + 'static {
    /// Sends `command` to `endpoint_id`; `origin` names the rule. `Ok` carries the response
    /// as JSON; `Err` is [`Error::CommandUndelivered`](crate::Error::CommandUndelivered)
    /// (timeout, device offline: retryable) or
    /// [`Error::CommandFailed`](crate::Error::CommandFailed) (refused, USP error).
    async fn send(
        &self,
        endpoint_id: &str,
        command: uspwatch_proto::Command,
        origin: &str,
    ) -> Result<serde_json::Value>;
}

/// Capacity of the output broadcast. A subscriber that falls this far behind loses the oldest
/// outputs (and sees `RecvError::Lagged`), so evaluation never waits on Kafka.
const OUTPUT_CAPACITY: usize = 65_536;
/// Actions remembered per alert.
const ACTIONS_PER_ALERT: usize = 10;

/// The rule engine. Cheap to clone (shared state inside).
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: RulesConfig,
    pub sink: Arc<dyn CommandSink>,
    pub ctx: SessionContext,
    pub ring: Arc<Mutex<Ring>>,
    pub params: ParamCell,
    pub devices: Arc<Mutex<DeviceState>>,
    pub commands: Arc<Mutex<CommandLog>>,
    pub rules: Vec<CompiledRule>,
    pub state: Mutex<State>,
    /// Serialises evaluation rounds: the parameter cell is shared by every plan.
    pub eval_lock: tokio::sync::Mutex<()>,
    pub kill_switch: AtomicBool,
    pub tx: broadcast::Sender<Output>,
    pub tracker: TaskTracker,
    pub permits: Arc<Semaphore>,
    pub ingested: AtomicU64,
    pub http: Option<reqwest::Client>,
    /// Retention of the ring: the longest window of any rule.
    pub retention_ms: i64,
    /// Replay: decisions to send become dry-run.
    pub dry_run_only: bool,
}

#[derive(Default)]
pub(crate) struct State {
    pub rules: Vec<RuleRuntime>,
    pub silences: Vec<Silence>,
    pub verifies: Vec<verify::PendingVerify>,
    pub stats: EngineStats,
    pub seq: u64,
}

#[derive(Default)]
pub(crate) struct RuleRuntime {
    pub alerts: HashMap<String, Alert>,
    pub actions: ActionState,
    pub next_due_ms: Option<i64>,
    pub last_eval_ms: Option<i64>,
    pub last_duration_us: Option<u64>,
    pub last_error: Option<String>,
    pub last_rows: usize,
    /// Alertmanager bookkeeping: fingerprint → (last push, resolved pushed).
    pub pushed: HashMap<String, (i64, bool)>,
}

impl Engine {
    /// Loads the rules (built-in pack and `config.dirs`), plans every query once, and returns
    /// the engine plus the rules that could not be loaded (the others run).
    pub fn new(
        config: &RulesConfig,
        sink: Arc<dyn CommandSink>,
    ) -> Result<(Engine, Vec<RuleLoadError>)> {
        config.validate()?;
        let mut files: Vec<(String, String)> = Vec::new();
        if config.default_pack {
            files.extend(
                rule::PACK
                    .iter()
                    .map(|(s, t)| (s.to_string(), t.to_string())),
            );
        }
        for d in &config.dirs {
            files.extend(rule::read_dir(d)?);
        }
        Self::from_sources(config, sink, files)
    }

    /// Like [`Engine::new`] with rule files given as (source name, TOML text).
    pub fn from_sources(
        config: &RulesConfig,
        sink: Arc<dyn CommandSink>,
        files: Vec<(String, String)>,
    ) -> Result<(Engine, Vec<RuleLoadError>)> {
        Self::build(config, sink, files, None, false)
    }

    /// `only`: load just these rule names; `dry_run_only`: never send (replay).
    pub(crate) fn build(
        config: &RulesConfig,
        sink: Arc<dyn CommandSink>,
        files: Vec<(String, String)>,
        only: Option<&[String]>,
        dry_run_only: bool,
    ) -> Result<(Engine, Vec<RuleLoadError>)> {
        let params: ParamCell = Arc::new(Mutex::new(EvalParams::default()));
        let ring = Arc::new(Mutex::new(Ring::new(
            config.max_window_events,
            config.max_window_bytes,
        )));
        let devices = Arc::new(Mutex::new(DeviceState::default()));
        let commands = Arc::new(Mutex::new(CommandLog::new(config.command_history)));
        let mut sc = SessionConfig::new()
            .with_target_partitions(1)
            .with_information_schema(false);
        sc.options_mut().sql_parser.collect_spans = true;
        let ctx = SessionContext::new_with_config(sc);
        for f in udf::functions(&params) {
            ctx.register_udf(f);
        }
        let tables: [(&str, Arc<dyn crate::tables::exec::Source>, bool); 4] = [
            (
                "events",
                Arc::new(EventsSource {
                    ring: ring.clone(),
                    params: params.clone(),
                }),
                true,
            ),
            (
                "latest",
                Arc::new(LatestSource {
                    ring: ring.clone(),
                    cache: Mutex::new(None),
                }),
                false,
            ),
            (
                "devices",
                Arc::new(DevicesSource {
                    ring: ring.clone(),
                    state: devices.clone(),
                }),
                false,
            ),
            (
                "commands",
                Arc::new(CommandsSource {
                    log: commands.clone(),
                }),
                false,
            ),
        ];
        for (name, source, prunable) in tables {
            ctx.register_table(name, Arc::new(LiveTable::new(source, prunable)))?;
        }

        let mut errors = Vec::new();
        let mut rules: Vec<CompiledRule> = Vec::new();
        for (source, text) in &files {
            for spec in rule::parse_file(source, text) {
                let spec = match spec {
                    Ok(s) => s,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                if only.is_some_and(|o| !o.contains(&spec.name)) {
                    continue;
                }
                if rules.iter().any(|r| r.spec.name == spec.name) {
                    errors.push(RuleLoadError {
                        source: source.clone(),
                        rule: spec.name.clone(),
                        message: "a rule with this name is already loaded".into(),
                        line: None,
                        column: None,
                    });
                    continue;
                }
                // Planning is CPU work with no I/O on these tables, so blocking here is fine
                // even inside a runtime.
                match futures::executor::block_on(compile::compile(
                    &ctx,
                    spec,
                    source,
                    config.max_window,
                )) {
                    Ok(r) => rules.push(r),
                    Err(e) => errors.push(e),
                }
            }
        }
        for e in &errors {
            warn!(source = %e.source, rule = %e.rule, error = %e, "rule not loaded");
        }
        let retention_ms = rules
            .iter()
            .map(|r| millis(r.spec.window))
            .max()
            .unwrap_or(0);
        let http = match &config.alertmanager {
            Some(am) => Some(
                reqwest::Client::builder()
                    .timeout(am.timeout)
                    .build()
                    .map_err(|e| crate::Error::Alertmanager(e.to_string()))?,
            ),
            None => None,
        };
        let state = State {
            rules: rules.iter().map(|_| RuleRuntime::default()).collect(),
            ..State::default()
        };
        let (tx, _) = broadcast::channel(OUTPUT_CAPACITY);
        let inner = Inner {
            config: config.clone(),
            sink,
            ctx,
            ring,
            params,
            devices,
            commands,
            rules,
            state: Mutex::new(state),
            eval_lock: tokio::sync::Mutex::new(()),
            kill_switch: AtomicBool::new(config.kill_switch),
            tx,
            tracker: TaskTracker::new(),
            permits: Arc::new(Semaphore::new(config.max_concurrency)),
            ingested: AtomicU64::new(0),
            http,
            retention_ms,
            dry_run_only,
        };
        metrics::gauge!(m::RULES_LOADED).set(inner.rules.len() as f64);
        metrics::gauge!(m::KILL_SWITCH).set(if config.kill_switch { 1.0 } else { 0.0 });
        // Per-rule series exist from load time, so a dashboard shows every rule at zero.
        for rule in &inner.rules {
            let name = rule.spec.name.clone();
            metrics::counter!(m::RULE_EVAL_FAILURES, "rule" => name.clone()).increment(0);
            if rule.action.as_ref().is_some_and(|a| a.verify.is_some()) {
                for outcome in ["fixed", "not_fixed", "unknown"] {
                    metrics::counter!(m::VERIFICATIONS, "rule" => name.clone(), "outcome" => outcome)
                        .increment(0);
                }
            }
        }
        Ok((
            Engine {
                inner: Arc::new(inner),
            },
            errors,
        ))
    }

    /// Appends an event to the window (a hash lookup and a few buffer appends).
    pub fn ingest(&self, event: &uspwatch_proto::Event) {
        let r = self.inner.ring.lock().push(event);
        if let Err(e) = r {
            warn!(endpoint_id = %event.endpoint_id, error = %e, "event not added to the rule window");
            return;
        }
        self.inner.ingested.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::EVENTS_INGESTED).increment(1);
    }

    /// Replaces the device inventory behind the `devices` table (and the fleet size that
    /// `max_fleet_fraction` is a share of). Until it is called, every endpoint seen in the
    /// events counts as an online device.
    pub fn set_devices(&self, devices: Vec<Device>) {
        self.inner.devices.lock().set(devices);
    }

    /// Subscribes to alert changes and action records, in the order they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Output> {
        self.inner.tx.subscribe()
    }

    /// Turns the global kill switch on (every action suppressed) or off.
    pub fn set_kill_switch(&self, on: bool) {
        self.inner.kill_switch.store(on, Ordering::SeqCst);
        metrics::gauge!(m::KILL_SWITCH).set(if on { 1.0 } else { 0.0 });
    }

    /// Names of the loaded rules, in load order.
    pub fn rule_names(&self) -> Vec<String> {
        self.inner
            .rules
            .iter()
            .map(|r| r.spec.name.clone())
            .collect()
    }

    /// Waits until every command handed to the sink has its outcome recorded.
    pub async fn flush(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        self.inner.tracker.reopen();
    }

    fn fleet_size(&self) -> usize {
        let devices = self.inner.devices.lock();
        match &devices.explicit {
            Some(d) => d.iter().filter(|d| d.online).count(),
            None => crate::tables::sources::synthesised_devices(&self.inner.ring.lock()).len(),
        }
    }

    /// One evaluation round at `now_ms`: every rule whose `every` has come runs once, alert
    /// states advance, actions pass through the guardrails, due verifications run.
    pub async fn evaluate_at(&self, now_ms: i64) -> Result<EvalReport> {
        let inner = &self.inner;
        let _round = inner.eval_lock.lock().await;
        let started = Instant::now();
        let mut report = EvalReport {
            at_ms: now_ms,
            ..EvalReport::default()
        };
        {
            let mut ring = inner.ring.lock();
            let before = ring.evicted;
            ring.seal_and_evict(now_ms - inner.retention_ms)
                .map_err(|e| datafusion::error::DataFusionError::ArrowError(Box::new(e), None))?;
            metrics::counter!(m::EVENTS_EVICTED).increment(ring.evicted - before);
            m::record_window(&mut ring);
        }
        let due: Vec<usize> = {
            let st = inner.state.lock();
            st.rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.next_due_ms.is_none_or(|d| d <= now_ms))
                .map(|(i, _)| i)
                .collect()
        };
        let mut fleet: Option<usize> = None;
        for idx in due {
            let rule = &inner.rules[idx];
            *inner.params.lock() = EvalParams {
                now_ms,
                window_start_ms: now_ms.saturating_sub(millis(rule.spec.window)),
                ..EvalParams::default()
            };
            let t = Instant::now();
            let result = compile::run(&inner.ctx, &rule.plan).await;
            let took = t.elapsed();
            metrics::histogram!(m::RULE_EVAL_SECONDS, "rule" => rule.spec.name.clone())
                .record(took.as_secs_f64());
            report.rules_evaluated += 1;
            let every = millis(rule.spec.every);
            let rows = match result {
                Ok(batches) => compile::rows(&batches),
                Err(e) => {
                    let msg = e.strip_backtrace();
                    warn!(rule = %rule.spec.name, error = %msg, "rule evaluation failed");
                    metrics::counter!(m::RULE_EVAL_FAILURES, "rule" => rule.spec.name.clone())
                        .increment(1);
                    let mut st = inner.state.lock();
                    let rt = &mut st.rules[idx];
                    rt.last_error = Some(msg.clone());
                    rt.last_eval_ms = Some(now_ms);
                    rt.next_due_ms = Some(now_ms + every);
                    report.errors.push((rule.spec.name.clone(), msg));
                    continue;
                }
            };
            let needs_fleet = rule.action.is_some() && !rows.is_empty();
            if needs_fleet && fleet.is_none() {
                fleet = Some(self.fleet_size());
            }
            self.process(
                idx,
                rows,
                now_ms,
                micros_u64(took),
                fleet.unwrap_or(0),
                &mut report,
            );
        }
        self.run_verifications(now_ms, &mut report).await;
        {
            let mut st = inner.state.lock();
            st.stats.evaluation_rounds += 1;
        }
        report.duration_us = micros_u64(started.elapsed());
        metrics::histogram!(m::ROUND_SECONDS).record(started.elapsed().as_secs_f64());
        self.update_alert_gauges();
        debug!(
            at_ms = now_ms,
            rules = report.rules_evaluated,
            changes = report.changes.len(),
            actions = report.actions.len(),
            "evaluation round done"
        );
        Ok(report)
    }

    /// Applies one rule's rows: lifecycle, then actions for firing alerts.
    fn process(
        &self,
        idx: usize,
        rows: Vec<compile::Row>,
        now_ms: i64,
        took_us: u64,
        fleet: usize,
        report: &mut EvalReport,
    ) {
        let inner = &self.inner;
        let rule = &inner.rules[idx];
        let kill = inner.kill_switch.load(Ordering::SeqCst);
        let mut sends = Vec::new();
        let mut records = Vec::new();
        let changes;
        {
            let mut guard = inner.state.lock();
            let st = &mut *guard;
            let silences = st.silences.clone();
            let rt = &mut st.rules[idx];
            rt.last_rows = rows.len();
            rt.last_eval_ms = Some(now_ms);
            rt.last_duration_us = Some(took_us);
            rt.last_error = None;
            rt.next_due_ms = Some(now_ms.saturating_add(millis(rule.spec.every)));
            let (ch, firing) = alert::apply(
                rule,
                &mut rt.alerts,
                rows,
                now_ms,
                &silences,
                millis(inner.config.resolved_retention),
            );
            changes = ch;
            if let Some(action) = &rule.action {
                rt.actions.prune(now_ms, &action.guard);
                for (fp, just_fired) in firing {
                    let Some(a) = rt.alerts.get(&fp) else {
                        continue;
                    };
                    let target = a
                        .values
                        .get(&action.guard.target)
                        .map(crate::template::display_value)
                        .unwrap_or_default();
                    if target.is_empty()
                        || !rt.actions.due(&target, just_fired, now_ms, &action.guard)
                    {
                        continue;
                    }
                    let mut decision =
                        rt.actions
                            .decide(&target, now_ms, &action.guard, kill, a.silenced, fleet);
                    if inner.dry_run_only && decision == crate::action::Decision::Send {
                        decision = crate::action::Decision::DryRun;
                    }
                    st.seq += 1;
                    let record =
                        outputs::action_record(rule, action, a, &target, decision, now_ms, st.seq);
                    if record.status == ActionStatus::Sent {
                        sends.push(record.clone());
                        if action.guard.verify.is_some() {
                            st.verifies.push(verify::PendingVerify {
                                rule: idx,
                                action_id: record.action_id.clone(),
                                fingerprint: fp.clone(),
                                endpoint_id: target.clone(),
                                action_ms: now_ms,
                                due_ms: now_ms.saturating_add(millis(action.guard.verify_after)),
                            });
                        }
                    }
                    records.push(record);
                }
            }
            for r in &records {
                outputs::attach(&mut st.rules[idx].alerts, r, ACTIONS_PER_ALERT);
                outputs::count(&mut st.stats, r);
            }
            // Alerts carry their actions: re-read the changed alerts so the change records
            // include what was decided this round.
        }
        let changes: Vec<_> = {
            let st = inner.state.lock();
            changes
                .into_iter()
                .map(|mut c| {
                    if let Some(a) = st.rules[idx].alerts.get(&c.alert.fingerprint) {
                        c.alert.actions = a.actions.clone();
                    }
                    c
                })
                .collect()
        };
        for c in &changes {
            metrics::counter!(m::ALERT_TRANSITIONS, "rule" => rule.spec.name.clone(), "state" => c.alert.state.as_str())
                .increment(1);
            let _ = inner.tx.send(Output::Alert(c.clone()));
        }
        {
            let mut log = inner.commands.lock();
            for r in &records {
                log.upsert(r);
            }
        }
        for r in &records {
            metrics::counter!(m::ACTIONS, "rule" => rule.spec.name.clone(), "status" => r.status.as_str(), "reason" => r.reason.clone().unwrap_or_default())
                .increment(1);
            let _ = inner.tx.send(Output::Action(r.clone()));
        }
        for r in sends {
            self.spawn_send(r);
        }
        report.changes.extend(changes);
        report.actions.extend(records);
    }

    fn spawn_send(&self, record: ActionRecord) {
        let engine = self.clone();
        self.inner.tracker.spawn(async move {
            let inner = &engine.inner;
            let outcome = match inner.permits.clone().acquire_owned().await {
                Ok(_permit) => {
                    inner
                        .sink
                        .send(&record.endpoint_id, record.command.clone(), &record.rule)
                        .await
                }
                Err(_) => Err(crate::Error::CommandUndelivered(
                    "engine shutting down".to_string(),
                )),
            };
            let mut r = record;
            match outcome {
                Ok(resp) => {
                    r.status = ActionStatus::Succeeded;
                    r.response = Some(resp);
                }
                Err(reason) => {
                    warn!(rule = %r.rule, endpoint_id = %r.endpoint_id, reason = %reason, "action failed");
                    r.status = ActionStatus::Failed;
                    r.reason = Some(reason.to_string());
                }
            }
            engine.record_update(&r);
            metrics::counter!(m::ACTIONS, "rule" => r.rule.clone(), "status" => r.status.as_str(), "reason" => "")
                .increment(1);
        });
    }

    /// Stores a changed action record everywhere it is visible and emits it.
    pub(crate) fn record_update(&self, r: &ActionRecord) {
        let inner = &self.inner;
        {
            let mut st = inner.state.lock();
            if let Some(idx) = inner.rules.iter().position(|x| x.spec.name == r.rule) {
                outputs::attach(&mut st.rules[idx].alerts, r, ACTIONS_PER_ALERT);
            }
            outputs::count(&mut st.stats, r);
        }
        inner.commands.lock().upsert(r);
        let _ = inner.tx.send(Output::Action(r.clone()));
    }

    fn update_alert_gauges(&self) {
        let s = self.stats();
        metrics::gauge!(m::ALERTS, "state" => "pending").set(s.alerts_pending as f64);
        metrics::gauge!(m::ALERTS, "state" => "firing").set(s.alerts_firing as f64);
        metrics::gauge!(m::ALERTS, "state" => "resolved").set(s.alerts_resolved as f64);
    }

    /// Every alert in memory (pending, firing, recently resolved), sorted by rule then labels.
    pub fn alerts(&self) -> Vec<Alert> {
        let st = self.inner.state.lock();
        let mut v: Vec<Alert> = st
            .rules
            .iter()
            .flat_map(|r| r.alerts.values().cloned())
            .collect();
        v.sort_by(|a, b| (&a.rule, &a.labels).cmp(&(&b.rule, &b.labels)));
        v
    }

    /// Loaded rules with their last evaluation.
    pub fn rules(&self) -> Vec<RuleStatus> {
        let st = self.inner.state.lock();
        self.inner
            .rules
            .iter()
            .zip(st.rules.iter())
            .map(|(r, rt)| RuleStatus {
                name: r.spec.name.clone(),
                source: r.source.clone(),
                sql: r.spec.sql.clone(),
                every_ms: millis(r.spec.every),
                for_ms: millis(r.spec.for_),
                keep_firing_for_ms: millis(r.spec.keep_firing_for),
                window_ms: millis(r.spec.window),
                severity: r.spec.severity.clone(),
                has_action: r.action.is_some(),
                mode: r.action.as_ref().map(|a| a.guard.mode.as_str().to_string()),
                last_eval_ms: rt.last_eval_ms,
                last_duration_us: rt.last_duration_us,
                last_error: rt.last_error.clone(),
                last_rows: rt.last_rows,
                pending: rt
                    .alerts
                    .values()
                    .filter(|a| a.state == AlertState::Pending)
                    .count(),
                firing: rt
                    .alerts
                    .values()
                    .filter(|a| a.state == AlertState::Firing)
                    .count(),
            })
            .collect()
    }

    /// Counters for the console and the API.
    pub fn stats(&self) -> EngineStats {
        let st = self.inner.state.lock();
        let mut s = st.stats.clone();
        s.rules = self.inner.rules.len();
        s.events_ingested = self.inner.ingested.load(Ordering::Relaxed);
        s.kill_switch = self.inner.kill_switch.load(Ordering::SeqCst);
        s.alerts_pending = 0;
        s.alerts_firing = 0;
        s.alerts_resolved = 0;
        for a in st.rules.iter().flat_map(|r| r.alerts.values()) {
            match a.state {
                AlertState::Pending => s.alerts_pending += 1,
                AlertState::Firing => s.alerts_firing += 1,
                AlertState::Resolved => s.alerts_resolved += 1,
            }
        }
        drop(st);
        s.window_events = self.inner.ring.lock().rows();
        s
    }

    /// Active and expired silences (newest first).
    pub fn silences(&self) -> Vec<Silence> {
        let now = now_wall_ms();
        let st = self.inner.state.lock();
        let mut v: Vec<Silence> = st
            .silences
            .iter()
            .cloned()
            .map(|mut s| {
                s.active = s.starts_at_ms <= now && now < s.ends_at_ms;
                s
            })
            .collect();
        v.reverse();
        v
    }

    /// Adds a silence starting now (wall clock).
    pub fn add_silence(&self, s: NewSilence) -> Result<Silence> {
        self.add_silence_at(s, now_wall_ms())
    }

    /// Adds a silence starting at `now_ms` (event time, for tests and replay).
    pub fn add_silence_at(&self, s: NewSilence, now_ms: i64) -> Result<Silence> {
        if s.matchers.is_empty() {
            return Err(crate::Error::Silence(
                "at least one matcher is needed".into(),
            ));
        }
        for m in &s.matchers {
            if m.is_regex {
                regex::Regex::new(&m.value).map_err(|e| {
                    crate::Error::Silence(format!("matcher {}: bad regex: {e}", m.name))
                })?;
            }
        }
        if s.duration.is_zero() {
            return Err(crate::Error::Silence("duration must be > 0".into()));
        }
        let mut st = self.inner.state.lock();
        st.seq += 1;
        let silence = Silence {
            id: format!("sil-{now_ms:x}-{}", st.seq),
            matchers: s.matchers,
            starts_at_ms: now_ms,
            ends_at_ms: now_ms.saturating_add(millis(s.duration)),
            created_by: s.created_by,
            comment: s.comment,
            active: true,
        };
        st.silences.push(silence.clone());
        Ok(silence)
    }

    /// Ends a silence now.
    pub fn expire_silence(&self, id: &str) -> Result<()> {
        let now = now_wall_ms();
        let mut st = self.inner.state.lock();
        let s = st
            .silences
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| crate::Error::Silence(format!("no silence {id:?}")))?;
        s.ends_at_ms = s.ends_at_ms.min(now);
        Ok(())
    }

    /// The live loop: evaluates due rules by wall clock every `tick`, pushes to
    /// Alertmanager, runs verifications; returns after `shutdown` once commands in flight
    /// have their outcome.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = now_wall_ms();
            if let Err(e) = self.evaluate_at(now).await {
                warn!(error = %e, "evaluation round failed");
            }
            if self.inner.http.is_some()
                && let Err(e) = self.push_alertmanager(now).await
            {
                warn!(error = %e, "alertmanager push failed");
            }
        }
        self.flush().await;
    }
}
