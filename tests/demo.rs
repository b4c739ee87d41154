//! `uspwatch demo` as a user runs it: a subprocess that exits 0 and whose last stdout line is
//! the JSON summary showing detection and verified remediation, with nothing rejected.

use std::process::Command;

#[test]
fn demo_detects_remediates_and_verifies() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_uspwatch"))
        .args([
            "demo",
            "--duration",
            "60s",
            "--agents",
            "100",
            "--mqtt-port",
            "0",
            "--http-port",
            "0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("summary line");
    let s: serde_json::Value = serde_json::from_str(last).expect("JSON summary");
    for key in [
        "agents_connected",
        "events",
        "alerts_fired",
        "alerts_resolved",
        "actions_sent",
        "actions_verified",
        "actions_suppressed",
        "rejected",
    ] {
        assert!(s.get(key).is_some_and(|v| v.is_u64()), "{key} missing: {s}");
    }
    assert_eq!(s["agents_connected"], 100, "{s}");
    assert!(s["alerts_fired"].as_u64() > Some(0), "{s}");
    assert!(s["actions_verified"].as_u64() > Some(0), "{s}");
    assert_eq!(s["rejected"], 0, "{s}");
}
