//! `testing::run_tests` reports a readable diff when an expectation fails; `replay::replay`
//! backtests the default pack over a recorded file without sending anything.

mod common;

use std::io::Write;

use common::{T0, event, value_change};
use uspwatch_rules::RulesConfig;

const RULE: &str = r#"
name = "hot"
every = "10s"
sql = "SELECT endpoint_id, MAX(value_f64) AS t FROM events WHERE path = 'Device.T' GROUP BY endpoint_id HAVING MAX(value_f64) > 80"
[annotations]
summary = "{{endpoint_id}} {{t}}"
"#;

#[test]
fn failing_expectation_gives_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hot.toml"), RULE).unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    let mut f = std::fs::File::create(dir.path().join("tests/events.jsonl")).unwrap();
    for (i, v) in ["90", "91"].iter().enumerate() {
        let e = value_change("os::00256D-1", "Device.T", v, T0 + i as i64 * 1000);
        writeln!(f, "{}", serde_json::to_string(&e).unwrap()).unwrap();
    }
    std::fs::write(
        dir.path().join("tests/hot.toml"),
        r#"
[[case]]
name = "right"
events = "events.jsonl"
[[case.expect]]
at = "+10s"
alerts = [{ rule = "hot", state = "firing", labels = { endpoint_id = "os::00256D-1" }, annotations = { summary = "os::00256D-1 91" } }]

[[case]]
name = "wrong"
events = "events.jsonl"
[[case.expect]]
at = "+10s"
alerts = [{ rule = "hot", state = "pending", labels = { endpoint_id = "os::00256D-1" } }]
actions = [{ rule = "hot", status = "sent" }]
"#,
    )
    .unwrap();
    let report = uspwatch_rules::testing::run_tests(dir.path()).unwrap();
    let text = report.to_string();
    assert_eq!((report.passed(), report.failed()), (1, 1), "{text}");
    assert!(!report.ok());
    assert!(text.contains("FAIL"), "{text}");
    assert!(
        text.contains("expected, missing:   {\"rule\":\"hot\",\"state\":\"pending\""),
        "{text}"
    );
    assert!(
        text.contains(
            "got, not expected:   {rule=hot state=firing labels={endpoint_id=os::00256D-1}"
        ),
        "{text}"
    );
    assert!(text.contains("actions differ"), "{text}");
    assert!(text.contains("1 passed, 1 failed"), "{text}");
}

#[tokio::test]
async fn replay_backtests_the_default_pack_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recorded.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut events = Vec::new();
    // Ten devices with Wi-Fi interference and one in a reboot loop, written out of order.
    for d in 0..10 {
        let eid = format!("os::00256D-SIM{d:06}");
        for s in 0..24 {
            events.push(value_change(
                &eid,
                "Device.WiFi.Radio.1.Stats.Noise",
                "-60",
                T0 + s * 5_000,
            ));
        }
    }
    for s in 0..4 {
        events.push(event(
            "os::00256D-LOOP",
            "Device.",
            "Boot!",
            &[("FirmwareUpdated", "false")],
            T0 + s * 15_000,
        ));
    }
    events.reverse();
    for e in &events {
        writeln!(f, "{}", serde_json::to_string(e).unwrap()).unwrap();
    }
    drop(f);
    let mut calls = Vec::new();
    let report = uspwatch_rules::replay::replay(&RulesConfig::default(), &path, |done, total| {
        calls.push((done, total))
    })
    .await
    .unwrap();
    let text = report.to_string();
    assert_eq!(report.events, events.len() as u64, "{text}");
    assert!(report.load_errors.is_empty(), "{text}");
    let fired = |rule: &str| report.fired.iter().filter(|c| c.alert.rule == rule).count();
    assert_eq!(fired("wifi_noise_high"), 10, "{text}");
    assert_eq!(fired("reboot_loop"), 1, "{text}");
    // 11 devices seen, 5 % fleet budget → 1 channel change would be sent, 9 suppressed.
    let wifi: Vec<_> = report
        .actions
        .iter()
        .filter(|a| a.rule == "wifi_noise_high")
        .collect();
    assert_eq!(wifi.len(), 10);
    assert_eq!(
        wifi.iter()
            .filter(|a| a.status == uspwatch_rules::ActionStatus::DryRun)
            .count(),
        1,
        "{text}"
    );
    assert_eq!(
        report.suppressed_by().get("max_fleet_fraction"),
        Some(&9),
        "{text}"
    );
    assert!(text.contains("wifi_noise_high"), "{text}");
    let total = std::fs::metadata(&path).unwrap().len();
    assert_eq!(calls.last(), Some(&(total, total)));
}
