//! The load harness at tiny sizes: every scenario runs end to end and reports sane figures
//! (counts, not timings, are asserted), so `uspwatch bench` cannot silently rot.

use std::time::Duration;

use serde_json::Value;

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_reports_non_zero_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_uspwatch"))
        .args(["bench", "--smoke", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start uspwatch bench");
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the smoke run finishes within 5 minutes")
        .expect("uspwatch bench output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("targets"), "{stdout}");
    let r: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("valid JSON");

    assert_eq!(num(&r, "connections.achieved"), 50.0, "{r:#}");
    assert_eq!(
        r["connections"]["storm_recovered"],
        Value::Bool(true),
        "{r:#}"
    );
    assert_eq!(num(&r, "connections.storm_agents"), 50.0);
    assert!(num(&r, "connections.connect_rate_per_s") > 0.0);

    for s in ["ingest", "latency", "kafka"] {
        assert_eq!(num(&r, &format!("{s}.agents")), 4.0, "{s}: {r:#}");
        assert!(num(&r, &format!("{s}.answered")) > 0.0, "{s}: {r:#}");
        assert!(num(&r, &format!("{s}.answered")) <= num(&r, &format!("{s}.sent")));
        assert!(
            num(&r, &format!("{s}.events_durable_per_s")) > 0.0,
            "{s}: {r:#}"
        );
        assert!(num(&r, &format!("{s}.latency.count")) > 0.0, "{s}: {r:#}");
        assert!(num(&r, &format!("{s}.latency.p99_ms")) >= num(&r, &format!("{s}.latency.p50_ms")));
    }
    assert!(num(&r, "ingest.peak_rss_mib") > 0.0);

    assert!(num(&r, "baseline.delivered_per_s") > 0.0, "{r:#}");
    assert!(num(&r, "baseline.acked") > 0.0);
    assert!(num(&r, "ingest_ratio") > 0.0);

    assert_eq!(num(&r, "fault.latency.count"), 2.0, "{r:#}");
    assert_eq!(num(&r, "fault.timeouts"), 0.0, "{r:#}");
    assert!(num(&r, "fault.latency.max_ms") > 0.0);

    let targets = r["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 7, "{r:#}");
}

/// The fault scenario alone, on a gateway that has just started: the rule's blast-radius budget
/// must count the devices sending events, not an inventory that has not been synced yet (every
/// repetition after the first used to be suppressed by `max_fleet_fraction` and time out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_to_command_right_after_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_uspwatch"))
        .args(["bench", "--smoke", "--scenarios", "fault", "--json"])
        .arg(&json)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the fault run finishes within 2 minutes")
        .expect("uspwatch bench output");
    assert!(
        out.status.success(),
        "bench failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("valid JSON");
    assert_eq!(num(&r, "fault.timeouts"), 0.0, "{r:#}");
    assert_eq!(num(&r, "fault.latency.count"), 2.0, "{r:#}");
}

/// The memory scenario at tiny sizes: the flood of maximum-size Records is answered, the other
/// agents are answered around it, and the RSS figures and their bound are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_scenario_reports_the_flood_and_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_uspwatch"))
        .args(["bench", "--smoke", "--scenarios", "memory", "--json"])
        .arg(&json)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), out)
        .await
        .expect("the memory run finishes within 4 minutes")
        .expect("uspwatch bench output");
    assert!(
        out.status.success(),
        "bench failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("valid JSON");
    assert!(num(&r, "memory.flood_notifies") > 0.0, "{r:#}");
    assert!(num(&r, "memory.record_bytes") > 1_000_000.0, "{r:#}");
    assert!(num(&r, "memory.quiet_latency.count") > 0.0, "{r:#}");
    assert!(num(&r, "memory.loud_latency.count") > 0.0, "{r:#}");
    assert!(num(&r, "memory.peak_rss_mib") >= num(&r, "memory.rss_before_mib") * 0.5);
    assert!(num(&r, "memory.bound_mib") > num(&r, "memory.rss_before_mib"));
}
