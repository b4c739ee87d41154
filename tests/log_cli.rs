//! `uspwatch log` reads the embedded event log without Kafka: filters by stream, device, kind
//! and time, `--tail`, and `--follow` printing records written while it runs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uspwatch_pipeline::{BulkReport, Mtp, Pipeline, PipelineConfig, RecordTopic};
use uspwatch_proto::SampleSource;

const A: &str = "os::00256D-LOG0001";
const B: &str = "os::00256D-LOG0002";

struct NoMtp;

#[async_trait::async_trait]
impl Mtp for NoMtp {
    async fn publish(
        &self,
        _: &str,
        _: Bytes,
        _: Option<&str>,
        _: Option<&str>,
    ) -> uspwatch_pipeline::Result<()> {
        Ok(())
    }
}

async fn pipeline(
    dir: &std::path::Path,
) -> (
    Pipeline,
    CancellationToken,
    mpsc::Sender<uspwatch_pipeline::InboundRecord>,
) {
    let mut cfg = PipelineConfig::default();
    cfg.log.dir = dir.to_path_buf();
    let (tx, rx) = mpsc::channel(8);
    let shutdown = CancellationToken::new();
    let p = Pipeline::start(cfg, Arc::new(NoMtp), rx, shutdown.clone())
        .await
        .expect("pipeline");
    (p, shutdown, tx)
}

fn event(eid: &str, kind: &str, n: u32) -> Value {
    json!({"event_id": format!("{eid}/m{n}"), "endpoint_id": eid, "kind": kind, "n": n})
}

async fn write(p: &Pipeline, eid: &str, kind: &str, n: u32) {
    let mut v = event(eid, kind, n);
    v["record_type"] = json!(kind);
    p.publish_record(RecordTopic::Events, eid, v)
        .await
        .expect("stored");
}

fn uspwatch(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_uspwatch"))
        .arg("log")
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn ns(lines: &[Value]) -> Vec<u64> {
    lines.iter().map(|v| v["n"].as_u64().expect("n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_tail_and_streams() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("events");
    let (p, shutdown, _tx) = pipeline(&dir).await;
    for n in 0..6 {
        write(
            &p,
            if n % 2 == 0 { A } else { B },
            if n < 3 { "event" } else { "value_change" },
            n,
        )
        .await;
    }
    let csv = "ParameterName,ParameterValue\nDevice.WiFi.Radio.1.Stats.Noise,-60\n";
    p.ingest_report(BulkReport {
        endpoint_id: A.into(),
        source: SampleSource::Http,
        origin: "/bulkdata".into(),
        body: Bytes::from_static(csv.as_bytes()),
        content_type: None,
        report_format: None,
    })
    .await
    .expect("sample stored");
    shutdown.cancel();
    p.join().await;
    let d = dir.to_str().expect("utf-8 path");

    assert_eq!(ns(&uspwatch(&["--dir", d])), [0, 1, 2, 3, 4, 5]);
    assert_eq!(ns(&uspwatch(&["--dir", d, "--device", A])), [0, 2, 4]);
    assert_eq!(
        ns(&uspwatch(&["--dir", d, "--kind", "value_change"])),
        [3, 4, 5]
    );
    assert_eq!(
        ns(&uspwatch(&["--dir", d, "--device", B, "--tail", "2"])),
        [3, 5]
    );
    assert!(
        uspwatch(&[
            "--dir",
            d,
            "--since",
            "1h",
            "--until",
            "2000-01-01T00:00:00Z"
        ])
        .is_empty()
    );
    assert_eq!(uspwatch(&["--dir", d, "--since", "1h"]).len(), 6);
    let t = uspwatch(&["--dir", d, "--stream", "telemetry"]);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["endpoint_id"], A);
    assert_eq!(t[0]["value_f64"], -60.0);
    assert_eq!(uspwatch(&["--dir", d, "--stream", "all"]).len(), 7);

    let bad = Command::new(env!("CARGO_BIN_EXE_uspwatch"))
        .args(["log", "--dir", d, "--stream", "nope"])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_records_written_while_it_runs() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("events");
    let (p, shutdown, _tx) = pipeline(&dir).await;
    write(&p, A, "event", 1).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_uspwatch"))
        .args(["log", "--follow", "--device", A, "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (line_tx, mut lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line_tx.send(l).is_err() {
                break;
            }
        }
    });
    assert_eq!(next(&mut lines).await["n"], 1);
    write(&p, B, "event", 2).await;
    write(&p, A, "event", 3).await;
    assert_eq!(next(&mut lines).await["n"], 3, "B's record is filtered out");
    child.kill().expect("kill");
    let _ = child.wait();
    shutdown.cancel();
    p.join().await;
}

/// The next JSON line the follower printed, within a deadline.
async fn next(lines: &mut mpsc::UnboundedReceiver<String>) -> Value {
    let l = tokio::time::timeout(Duration::from_secs(30), lines.recv())
        .await
        .expect("a line in time")
        .expect("child running");
    serde_json::from_str::<Value>(&l).expect("JSON line")
}
