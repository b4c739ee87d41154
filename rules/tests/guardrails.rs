//! Guardrails under a storm: 10,000 devices match at once.

mod common;

use std::sync::Arc;

use common::{T0, value_change};
use uspwatch_rules::{ActionStatus, Device, Engine, Output, RulesConfig};

const DEVICES: usize = 10_000;

fn rule(mode: &str) -> String {
    format!(
        r#"
name = "storm"
every = "10s"
window = "5m"
sql = "SELECT endpoint_id, MAX(value_f64) AS v FROM events WHERE path = 'Device.X' GROUP BY endpoint_id HAVING MAX(value_f64) > 10"
[action]
type = "operate"
command = "Device.Reboot()"
mode = "{mode}"
cooldown = "1h"
max_per_hour = 100000
max_fleet_fraction = 0.05
fleet_window = "1h"
"#
    )
}

fn eid(i: usize) -> String {
    format!("os::00256D-{i:06}")
}

fn setup(mode: &str) -> (Engine, Arc<common::RecordingSink>) {
    let config = RulesConfig {
        default_pack: false,
        max_concurrency: 64,
        ..RulesConfig::default()
    };
    let sink = common::RecordingSink::new();
    let (e, errors) =
        Engine::from_sources(&config, sink.clone(), vec![("s.toml".into(), rule(mode))]).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    e.set_devices(
        (0..DEVICES)
            .map(|i| Device {
                endpoint_id: eid(i),
                online: true,
                last_seen_ms: T0,
                ..Device::default()
            })
            .collect(),
    );
    (e, sink)
}

fn storm(e: &Engine, at: i64) {
    for i in 0..DEVICES {
        e.ingest(&value_change(&eid(i), "Device.X", "20", at));
    }
}

fn count(r: &[uspwatch_rules::ActionRecord], status: ActionStatus, reason: Option<&str>) -> usize {
    r.iter()
        .filter(|a| a.status == status && a.reason.as_deref() == reason)
        .count()
}

#[tokio::test]
async fn storm_is_capped_by_fleet_fraction_and_cooldowns_hold() {
    let (e, sink) = setup("enforce");
    let mut rx = e.subscribe();
    storm(&e, T0);
    let r = e.evaluate_at(T0).await.unwrap();
    assert_eq!(r.changes.len(), DEVICES);
    let budget = DEVICES / 20;
    assert_eq!(count(&r.actions, ActionStatus::Sent, None), budget);
    assert_eq!(
        count(
            &r.actions,
            ActionStatus::Suppressed,
            Some("max_fleet_fraction")
        ),
        DEVICES - budget
    );
    e.flush().await;
    assert_eq!(sink.count(), budget);
    let mut targets: Vec<String> = sink.sent.lock().iter().map(|s| s.0.clone()).collect();
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), budget, "each device at most once");

    // Every decision, sent or suppressed, is an output and is visible in its alert.
    let mut suppressed = 0;
    while let Ok(o) = rx.try_recv() {
        if let Output::Action(a) = o
            && a.status == ActionStatus::Suppressed
        {
            suppressed += 1;
        }
    }
    assert_eq!(suppressed, DEVICES - budget);
    assert!(e.alerts().iter().all(|a| a.actions.len() == 1));

    // Still firing 10 s later: nobody is retried inside the cooldown.
    let r = e.evaluate_at(T0 + 10_000).await.unwrap();
    assert!(r.actions.is_empty());

    // Resolve (the window empties), then the same storm again within the hour: all cooldown.
    let r = e.evaluate_at(T0 + 6 * 60_000).await.unwrap();
    assert_eq!(r.changes.len(), DEVICES);
    storm(&e, T0 + 7 * 60_000);
    let r = e.evaluate_at(T0 + 7 * 60_000).await.unwrap();
    assert_eq!(
        count(&r.actions, ActionStatus::Suppressed, Some("cooldown")),
        DEVICES
    );
    e.flush().await;
    assert_eq!(sink.count(), budget);
    let s = e.stats();
    assert_eq!(s.actions_sent as usize, budget);
    assert_eq!(s.actions_suppressed as usize, 2 * DEVICES - budget);
}

#[tokio::test]
async fn dry_run_sends_nothing_but_records_what_it_would_send() {
    let (e, sink) = setup("dry-run");
    storm(&e, T0);
    let r = e.evaluate_at(T0).await.unwrap();
    e.flush().await;
    assert_eq!(sink.count(), 0);
    assert_eq!(count(&r.actions, ActionStatus::DryRun, None), DEVICES / 20);
    assert_eq!(
        count(
            &r.actions,
            ActionStatus::Suppressed,
            Some("max_fleet_fraction")
        ),
        DEVICES - DEVICES / 20
    );
}

#[tokio::test]
async fn kill_switch_suppresses_everything() {
    let (e, sink) = setup("enforce");
    e.set_kill_switch(true);
    storm(&e, T0);
    let r = e.evaluate_at(T0).await.unwrap();
    e.flush().await;
    assert_eq!(sink.count(), 0);
    assert_eq!(
        count(&r.actions, ActionStatus::Suppressed, Some("kill_switch")),
        DEVICES
    );
    assert!(e.stats().kill_switch);
}
