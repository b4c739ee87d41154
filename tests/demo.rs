//! `uspwatch demo` as a user runs it, off a terminal: a subprocess that tells the story one
//! line per step (alert fired, action sent, verified, resolved), never one line per
//! connection, exits 0, and whose last stdout line is the JSON summary showing detection and
//! verified remediation, with nothing rejected.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::wait::ChildGuard;

/// The demo runs for a minute; this bounds start-up, shutdown and a slow machine.
const DEMO_LIMIT: Duration = Duration::from_secs(240);

#[test]
fn demo_detects_remediates_and_verifies() {
    let data = tempfile::tempdir().expect("tempdir");
    let child = Command::new(env!("CARGO_BIN_EXE_uspwatch"))
        .args([
            "demo",
            "--duration",
            "60s",
            "--agents",
            "40",
            "--mqtt-port",
            "0",
            "--http-port",
            "0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        // The default log filter, as a user gets it.
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run demo");
    let mut demo = ChildGuard(child);
    // Drained on threads so a chatty child never blocks on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(demo.0.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(demo.0.stderr.take().expect("stderr")));
    let status = demo.wait_timeout("uspwatch demo", DEMO_LIMIT);
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        status.success(),
        "demo failed: {status}\n{stdout}\n{stderr}"
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
    assert_eq!(s["agents_connected"], 40, "{s}");
    assert!(s["alerts_fired"].as_u64() > Some(0), "{s}");
    assert!(s["actions_verified"].as_u64() > Some(0), "{s}");
    assert_eq!(s["rejected"], 0, "{s}");

    let story = story_lines(&stdout);
    let count = |step: &str| story.iter().filter(|l| l.step == step).count() as u64;
    assert_eq!(
        Some(count("alert fired")),
        s["alerts_fired"].as_u64(),
        "{stdout}"
    );
    assert_eq!(
        Some(count("alert resolved")),
        s["alerts_resolved"].as_u64(),
        "{stdout}"
    );
    assert_eq!(
        Some(count("verified fixed")),
        s["actions_verified"].as_u64(),
        "{stdout}"
    );
    assert_eq!(count("fleet connected"), 1, "{stdout}");
    // At least one fault told from end to end, in order, on one device: its alert fired, the
    // rule's command was sent to that device and verified as the fix.
    let told = story
        .iter()
        .filter(|l| l.step == "verified fixed")
        .any(|v| {
            let fired = story
                .iter()
                .position(|l| l.step == "alert fired" && l.rule == v.rule && l.device == v.device);
            let sent = story
                .iter()
                .position(|l| l.step == "action sent" && l.rule == v.rule && l.device == v.device);
            let verified = story.iter().position(|l| std::ptr::eq(l, v));
            matches!((fired, sent, verified), (Some(f), Some(s), Some(v)) if f < s && s < v)
        });
    assert!(told, "no fault told from alert to verified fix:\n{stdout}");
    // Every resolution follows its firing.
    for (i, r) in story
        .iter()
        .enumerate()
        .filter(|(_, l)| l.step == "alert resolved")
    {
        assert!(
            story[..i]
                .iter()
                .any(|l| l.step == "alert fired" && l.rule == r.rule && l.device == r.device),
            "{} on {} resolved before it fired:\n{stdout}",
            r.rule,
            r.device
        );
    }
    // Nothing per connection, on stdout or in the default logs; the embedded router's routine
    // disconnect errors are not logged either.
    for noise in [
        "client connected",
        "client disconnected",
        "already gone",
        "Client connection registered",
    ] {
        assert!(!stdout.contains(noise), "stdout has {noise:?}:\n{stdout}");
        assert!(!stderr.contains(noise), "stderr has {noise:?}:\n{stderr}");
    }
    let log_lines = stderr.lines().count();
    assert!(
        log_lines < 40,
        "{log_lines} log lines for 40 agents:\n{stderr}"
    );
}

/// One story line: `t+  12s  alert fired       wifi_noise_high on os::X: summary`.
#[derive(Debug)]
struct StoryLine {
    step: String,
    rule: String,
    device: String,
}

/// Every stdout line between the two header lines and the summary is a story line.
fn story_lines(stdout: &str) -> Vec<StoryLine> {
    const STEPS: [&str; 12] = [
        "alert fired",
        "alert resolved",
        "action sent",
        "action failed",
        "action suppressed",
        "dry run",
        "verified fixed",
        "not fixed",
        "unverified",
        "fleet connected",
        "fleet connecting",
        "status",
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 3, "{stdout}");
    lines[2..lines.len() - 1]
        .iter()
        .map(|line| {
            let rest = line
                .strip_prefix("t+")
                .and_then(|r| r.split_once("s  "))
                .map(|(_, r)| r)
                .unwrap_or_else(|| panic!("not a story line: {line:?}"));
            let step = STEPS
                .iter()
                .find(|s| rest.starts_with(*s))
                .unwrap_or_else(|| panic!("unknown step: {line:?}"));
            // `rule → device[: …]` or `rule on device[: …]`.
            let what = rest[step.len()..].trim_start();
            let (rule, device) = what
                .split_once(" → ")
                .or_else(|| what.split_once(" on "))
                .map(|(r, d)| (r.to_string(), d.split(": ").next().unwrap_or(d).to_string()))
                .unwrap_or_default();
            StoryLine {
                step: step.to_string(),
                rule,
                device,
            }
        })
        .collect()
}
