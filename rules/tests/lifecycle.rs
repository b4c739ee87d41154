//! Alert lifecycle in event time: pending → firing → resolved with `for` and
//! `keep_firing_for`, outputs on the broadcast, silences.

mod common;

use std::time::Duration;

use common::{T0, value_change};
use uspwatch_rules::{AlertState, Engine, Matcher, NewSilence, Output, RulesConfig};

const RULE: &str = r#"
name = "temp"
every = "10s"
for = "30s"
keep_firing_for = "20s"
window = "1m"
severity = "critical"
sql = """
SELECT endpoint_id, MAX(value_f64) AS temp FROM latest
WHERE path = 'Device.T' AND value_f64 > 80
GROUP BY endpoint_id
"""
[labels]
team = "noc"
[annotations]
summary = "{{endpoint_id}} at {{temp}} C"
[action]
type = "operate"
command = "Device.Reboot()"
mode = "enforce"
cooldown = "1h"
"#;

fn engine() -> (Engine, std::sync::Arc<common::RecordingSink>) {
    let config = RulesConfig {
        default_pack: false,
        ..RulesConfig::default()
    };
    let sink = common::RecordingSink::new();
    let (e, errors) =
        Engine::from_sources(&config, sink.clone(), vec![("t.toml".into(), RULE.into())]).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    (e, sink)
}

fn state(e: &Engine) -> Option<AlertState> {
    e.alerts().first().map(|a| a.state)
}

#[tokio::test]
async fn pending_firing_resolved_with_for_and_keep_firing_for() {
    let (e, sink) = engine();
    let mut rx = e.subscribe();
    let eid = "os::00256D-1";
    e.ingest(&value_change(eid, "Device.T", "90", T0));
    e.evaluate_at(T0).await.unwrap();
    assert_eq!(state(&e), Some(AlertState::Pending));
    let fp = e.alerts()[0].fingerprint.clone();
    assert_eq!(e.alerts()[0].annotations["summary"], "os::00256D-1 at 90 C");
    assert_eq!(e.alerts()[0].labels["team"], "noc");

    e.evaluate_at(T0 + 20_000).await.unwrap();
    assert_eq!(
        state(&e),
        Some(AlertState::Pending),
        "for = 30s not over yet"
    );
    let r = e.evaluate_at(T0 + 30_000).await.unwrap();
    assert_eq!(state(&e), Some(AlertState::Firing));
    assert_eq!(r.changes.len(), 1);
    assert_eq!(r.changes[0].previous, Some(AlertState::Pending));
    assert_eq!(
        r.actions.len(),
        1,
        "the action runs when the alert starts firing"
    );
    e.flush().await;
    assert_eq!(sink.count(), 1);

    // The condition stops: still firing during keep_firing_for (20s), then resolved.
    e.ingest(&value_change(eid, "Device.T", "50", T0 + 35_000));
    e.evaluate_at(T0 + 40_000).await.unwrap();
    assert_eq!(state(&e), Some(AlertState::Firing));
    e.evaluate_at(T0 + 50_000).await.unwrap();
    assert_eq!(state(&e), Some(AlertState::Firing));
    let r = e.evaluate_at(T0 + 60_000).await.unwrap();
    assert_eq!(state(&e), Some(AlertState::Resolved));
    assert_eq!(r.changes[0].alert.resolved_at_ms, Some(T0 + 60_000));
    assert_eq!(e.alerts()[0].fingerprint, fp, "fingerprint is stable");

    // A rule runs only when its `every` has come.
    let r = e.evaluate_at(T0 + 65_000).await.unwrap();
    assert_eq!(r.rules_evaluated, 0);

    // Outputs, in order: pending, firing, action sent, action succeeded, resolved.
    let mut seen = Vec::new();
    while let Ok(o) = rx.try_recv() {
        seen.push(match o {
            Output::Alert(c) => c.alert.state.as_str().to_string(),
            Output::Action(a) => format!("action:{}", a.status.as_str()),
        });
    }
    assert_eq!(
        seen,
        [
            "pending",
            "firing",
            "action:sent",
            "action:succeeded",
            "resolved"
        ]
    );
    let stats = e.stats();
    assert_eq!((stats.actions_sent, stats.actions_succeeded), (1, 1));
    assert_eq!(stats.alerts_resolved, 1);
    assert_eq!(e.rules()[0].name, "temp");
}

#[tokio::test]
async fn pending_alert_that_disappears_never_fires() {
    let (e, _) = engine();
    e.ingest(&value_change("os::00256D-1", "Device.T", "90", T0));
    e.evaluate_at(T0).await.unwrap();
    e.ingest(&value_change("os::00256D-1", "Device.T", "20", T0 + 5_000));
    let r = e.evaluate_at(T0 + 10_000).await.unwrap();
    assert!(e.alerts().is_empty());
    assert!(r.changes.is_empty());
}

#[tokio::test]
async fn silenced_alert_keeps_its_lifecycle_but_its_action_is_suppressed() {
    let (e, sink) = engine();
    let s = e
        .add_silence_at(
            NewSilence {
                matchers: vec![Matcher {
                    name: "endpoint_id".into(),
                    value: "os::00256D-.*".into(),
                    is_regex: true,
                    is_equal: true,
                }],
                duration: Duration::from_secs(3600),
                created_by: "noc".into(),
                comment: "maintenance".into(),
            },
            T0,
        )
        .unwrap();
    e.ingest(&value_change("os::00256D-1", "Device.T", "90", T0));
    e.evaluate_at(T0).await.unwrap();
    let r = e.evaluate_at(T0 + 30_000).await.unwrap();
    assert_eq!(state(&e), Some(AlertState::Firing));
    assert!(e.alerts()[0].silenced);
    assert_eq!(r.actions[0].reason.as_deref(), Some("silenced"));
    assert_eq!(e.alerts()[0].actions[0].reason.as_deref(), Some("silenced"));
    e.flush().await;
    assert_eq!(sink.count(), 0);
    assert_eq!(e.silences()[0].id, s.id);
    e.expire_silence(&s.id).unwrap();
    assert!(e.expire_silence("nope").is_err());
    assert!(
        e.add_silence(NewSilence {
            matchers: vec![],
            duration: Duration::from_secs(1),
            created_by: String::new(),
            comment: String::new(),
        })
        .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn live_loop_evaluates_on_its_tick_and_stops_on_shutdown() {
    let (e, sink) = engine();
    let mut rx = e.subscribe();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(e.clone().run(shutdown.clone()));
    let now = chrono::Utc::now().timestamp_millis();
    e.ingest(&value_change("os::00256D-1", "Device.T", "95", now));
    // Paused time: the loop's ticks advance the clock with no real waiting.
    let first = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("an alert within a minute of ticks")
        .unwrap();
    match first {
        Output::Alert(c) => assert_eq!(c.alert.state, AlertState::Pending),
        other => panic!("unexpected {other:?}"),
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("run returns after shutdown")
        .unwrap();
    assert_eq!(sink.count(), 0, "for = 30s of wall clock has not passed");
    assert!(e.stats().evaluation_rounds >= 1);
}
