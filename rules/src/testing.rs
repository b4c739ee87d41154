//! Rule unit tests, in the spirit of `promtool test rules`: recorded events go in, the
//! alerts and actions expected at given times are compared with what the rules produce.
//!
//! A rules directory `DIR` holds rule files (`*.toml`) and a `tests/` folder of test files:
//!
//! ```toml
//! rules = ["wifi_noise_high"]    # rules of DIR to load (default: all)
//! interval = "10s"               # evaluation step in event time (default 10s)
//!
//! [[case]]
//! name = "high noise fires and moves the channel"
//! events = "wifi_noise_high/high.jsonl"   # uspwatch_proto::Event JSON lines, relative to this file
//! start = "2026-01-01T00:00:00Z"          # first evaluation (default: first event)
//! kill_switch = false
//!
//! [[case.expect]]
//! at = "+2m"                     # RFC 3339, or an offset from `start`
//! alerts = [{ rule = "wifi_noise_high", state = "firing", labels = { endpoint_id = "os::00256D-SIM000001" } }]
//! actions = [{ rule = "wifi_noise_high", endpoint_id = "os::00256D-SIM000001", status = "sent" }]
//! ```
//!
//! `alerts` is the complete set of alerts of the loaded rules at `at` (labels and annotations
//! given are compared, others ignored); `actions` is the complete list of action records
//! decided since the previous expectation. Leave either out to not check it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use uspwatch_proto::time::millis;

use crate::config::RulesConfig;
use crate::engine::{CommandSink, Engine};
use crate::error::{Error, Result};
use crate::model::{ActionRecord, Alert, Device};
use crate::rule;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rules: Option<Vec<String>>,
    #[serde(default = "d_interval", with = "humantime_serde")]
    interval: Duration,
    #[serde(default)]
    case: Vec<Case>,
}

fn d_interval() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    events: String,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    devices: Option<Vec<Device>>,
    #[serde(default)]
    kill_switch: bool,
    #[serde(default)]
    expect: Vec<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    at: String,
    #[serde(default)]
    alerts: Option<Vec<ExpectAlert>>,
    #[serde(default)]
    actions: Option<Vec<ExpectAction>>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct ExpectAlert {
    rule: String,
    state: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct ExpectAction {
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    endpoint_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    verify: Option<String>,
    /// Compared as a subset of the command's JSON.
    #[serde(default)]
    command: Option<serde_json::Value>,
}

/// Outcome of one test case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub file: PathBuf,
    pub name: String,
    /// Empty when the case passed; otherwise one readable diff per failed expectation.
    pub failures: Vec<String>,
}

/// Outcome of a test run.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.failures.is_empty()).count()
    }
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }
    pub fn ok(&self) -> bool {
        self.failed() == 0 && !self.cases.is_empty()
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.cases {
            if c.failures.is_empty() {
                writeln!(f, "ok    {} :: {}", c.file.display(), c.name)?;
            } else {
                writeln!(f, "FAIL  {} :: {}", c.file.display(), c.name)?;
                for d in &c.failures {
                    for line in d.lines() {
                        writeln!(f, "      {line}")?;
                    }
                }
            }
        }
        writeln!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// A sink for tests: every command succeeds.
struct OkSink;

#[async_trait::async_trait]
impl CommandSink for OkSink {
    async fn send(
        &self,
        _: &str,
        _: uspwatch_proto::Command,
        _: &str,
    ) -> Result<serde_json::Value> {
        Ok(serde_json::json!({}))
    }
}

/// Runs every test file in `dir/tests/` against the rules in `dir`.
///
/// Runs on its own thread and runtime, so it can be called from anywhere (including inside
/// an async runtime).
pub fn run_tests(dir: &Path) -> Result<TestReport> {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
        rt.block_on(run_dir(&dir))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::Parse {
            path: PathBuf::new(),
            message: "rule test run panicked".into(),
        })
    })
}

async fn run_dir(dir: &Path) -> Result<TestReport> {
    let rule_files = rule::read_dir(dir)?;
    let tests_dir = dir.join("tests");
    let mut test_files: Vec<PathBuf> = std::fs::read_dir(&tests_dir)
        .map_err(|source| Error::Io {
            path: tests_dir.clone(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    test_files.sort();
    let mut report = TestReport::default();
    for tf in test_files {
        let text = std::fs::read_to_string(&tf).map_err(|source| Error::Io {
            path: tf.clone(),
            source,
        })?;
        let parsed: TestFile = toml::from_str(&text).map_err(|e| Error::Parse {
            path: tf.clone(),
            message: e.to_string(),
        })?;
        for case in &parsed.case {
            let failures = match run_case(&tf, &parsed, case, &rule_files).await {
                Ok(f) => f,
                Err(e) => vec![e.to_string()],
            };
            report.cases.push(CaseResult {
                file: tf.clone(),
                name: case.name.clone(),
                failures,
            });
        }
    }
    Ok(report)
}

/// Parses an RFC 3339 time or a `+duration` offset from `start`.
fn parse_at(s: &str, start: i64) -> std::result::Result<i64, String> {
    if let Some(off) = s.strip_prefix('+') {
        return humantime::parse_duration(off)
            .map(|d| start.saturating_add(millis(d)))
            .map_err(|e| format!("bad offset {s:?}: {e}"));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("bad time {s:?}: {e}"))
}

/// Reads a JSON-lines file of events, sorted by time (stable).
pub(crate) fn read_events(path: &Path) -> Result<Vec<uspwatch_proto::Event>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: uspwatch_proto::Event = serde_json::from_str(line).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: format!("line {}: {e}", i + 1),
        })?;
        out.push(e);
    }
    out.sort_by_key(|e| e.received_at_ms);
    Ok(out)
}

async fn run_case(
    file: &Path,
    tf: &TestFile,
    case: &Case,
    rule_files: &[(String, String)],
) -> Result<Vec<String>> {
    let parse_err = |message: String| Error::Parse {
        path: file.to_path_buf(),
        message: format!("case {:?}: {message}", case.name),
    };
    let config = RulesConfig {
        default_pack: false,
        ..RulesConfig::default()
    };
    let (engine, errors) = Engine::build(
        &config,
        Arc::new(OkSink),
        rule_files.to_vec(),
        tf.rules.as_deref(),
        false,
    )?;
    if !errors.is_empty() {
        return Ok(errors
            .iter()
            .map(|e| format!("rule load error: {e}"))
            .collect());
    }
    if let Some(want) = &tf.rules {
        let have = engine.rule_names();
        if let Some(missing) = want.iter().find(|w| !have.contains(w)) {
            return Err(parse_err(format!(
                "no rule named {missing:?} in the directory"
            )));
        }
    }
    engine.set_kill_switch(case.kill_switch);
    if let Some(d) = &case.devices {
        engine.set_devices(d.clone());
    }
    let events_path = file.parent().unwrap_or(Path::new(".")).join(&case.events);
    let events = read_events(&events_path)?;
    let first = events.first().map_or(0, |e| e.received_at_ms);
    let start = match &case.start {
        Some(s) => parse_at(s, first).map_err(parse_err)?,
        None => first,
    };
    let mut expects: Vec<(i64, &Expect)> = case
        .expect
        .iter()
        .map(|x| parse_at(&x.at, start).map(|t| (t, x)))
        .collect::<std::result::Result<_, _>>()
        .map_err(parse_err)?;
    expects.sort_by_key(|(t, _)| *t);
    let Some(&(end, _)) = expects.last() else {
        return Err(parse_err("no [[case.expect]]".into()));
    };
    let step = millis(tf.interval).max(1);
    let mut times: Vec<i64> = (0..)
        .map(|i| start + i * step)
        .take_while(|t| *t <= end)
        .collect();
    times.extend(expects.iter().map(|(t, _)| *t));
    times.sort();
    times.dedup();

    let mut failures = Vec::new();
    let mut next_event = 0;
    let mut actions: Vec<ActionRecord> = Vec::new();
    let mut exp = expects.iter().peekable();
    for t in times {
        while next_event < events.len() && events[next_event].received_at_ms <= t {
            engine.ingest(&events[next_event]);
            next_event += 1;
        }
        let report = engine.evaluate_at(t).await?;
        engine.flush().await;
        for (rule, err) in &report.errors {
            failures.push(format!("at {}: rule {rule} failed: {err}", label(t, start)));
        }
        actions.extend(report.actions);
        while let Some((at, x)) = exp.peek().copied() {
            if *at != t {
                break;
            }
            exp.next();
            if let Some(want) = &x.alerts
                && let Some(d) = diff_alerts(want, &engine.alerts())
            {
                failures.push(format!("at {}: alerts differ\n{d}", label(t, start)));
            }
            if let Some(want) = &x.actions
                && let Some(d) = diff_actions(want, &actions)
            {
                failures.push(format!("at {}: actions differ\n{d}", label(t, start)));
            }
            actions.clear();
        }
    }
    Ok(failures)
}

fn label(t: i64, start: i64) -> String {
    format!(
        "+{} ({})",
        humantime::format_duration(Duration::from_millis((t - start).max(0) as u64)),
        uspwatch_proto::rfc3339_millis(t)
    )
}

fn subset(want: &BTreeMap<String, String>, have: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

fn alert_matches(w: &ExpectAlert, a: &Alert) -> bool {
    w.rule == a.rule
        && w.state == a.state.as_str()
        && subset(&w.labels, &a.labels)
        && subset(&w.annotations, &a.annotations)
}

fn show_alert(a: &Alert) -> String {
    let labels: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{{rule={} state={} labels={{{}}} annotations={:?}}}",
        a.rule,
        a.state.as_str(),
        labels.join(", "),
        a.annotations
    )
}

/// Pairs expected and actual items greedily; returns the unmatched ones as a diff.
fn diff<W, A>(
    want: &[W],
    have: &[A],
    matches: impl Fn(&W, &A) -> bool,
    show_w: impl Fn(&W) -> String,
    show_a: impl Fn(&A) -> String,
) -> Option<String> {
    let mut used = vec![false; have.len()];
    let mut out = String::new();
    for w in want {
        match (0..have.len()).find(|&i| !used[i] && matches(w, &have[i])) {
            Some(i) => used[i] = true,
            None => out.push_str(&format!("  - expected, missing:   {}\n", show_w(w))),
        }
    }
    for (i, a) in have.iter().enumerate() {
        if !used[i] {
            out.push_str(&format!("  + got, not expected:   {}\n", show_a(a)));
        }
    }
    (!out.is_empty()).then_some(out)
}

fn diff_alerts(want: &[ExpectAlert], have: &[Alert]) -> Option<String> {
    diff(
        want,
        have,
        alert_matches,
        |w| serde_json::to_string(w).unwrap_or_default(),
        show_alert,
    )
}

fn json_subset(want: &serde_json::Value, have: &serde_json::Value) -> bool {
    match (want, have) {
        (serde_json::Value::Object(w), serde_json::Value::Object(h)) => w
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| json_subset(v, hv))),
        _ => want == have,
    }
}

fn action_matches(w: &ExpectAction, a: &ActionRecord) -> bool {
    let status = match a.verify {
        Some(_) => "verified",
        None => a.status.as_str(),
    };
    w.rule.as_ref().is_none_or(|r| *r == a.rule)
        && w.endpoint_id.as_ref().is_none_or(|e| *e == a.endpoint_id)
        && w.status.as_ref().is_none_or(|s| s == status)
        && w.reason
            .as_ref()
            .is_none_or(|r| Some(r) == a.reason.as_ref())
        && w.verify
            .as_ref()
            .is_none_or(|v| Some(v.as_str()) == a.verify.map(|x| x.as_str()))
        && w.command.as_ref().is_none_or(|c| {
            serde_json::to_value(&a.command).is_ok_and(|have| json_subset(c, &have))
        })
}

fn show_action(a: &ActionRecord) -> String {
    format!(
        "{{rule={} endpoint_id={} status={}{}{} command={}}}",
        a.rule,
        a.endpoint_id,
        a.status.as_str(),
        a.reason
            .as_ref()
            .map(|r| format!(" reason={r}"))
            .unwrap_or_default(),
        a.verify
            .map(|v| format!(" verify={}", v.as_str()))
            .unwrap_or_default(),
        serde_json::to_string(&a.command).unwrap_or_default()
    )
}

fn diff_actions(want: &[ExpectAction], have: &[ActionRecord]) -> Option<String> {
    diff(
        want,
        have,
        action_matches,
        |w| serde_json::to_string(w).unwrap_or_default(),
        show_action,
    )
}
