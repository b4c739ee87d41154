//! Telemetry against a running gateway: every metric a Grafana panel queries is exported, and
//! a real Prometheus (Debian's `prometheus`, installed by .ci/run) scrapes it.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::gw::TestGateway;

/// Names of the metric families in a Prometheus text exposition.
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| common::dashboards::strip_histogram_suffix(n).to_string())
        .collect()
}

async fn scrape(t: &TestGateway) -> String {
    reqwest::get(t.url("/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body")
}

/// Sends one spoofed Record so rejection counters have a sample.
async fn send_spoofed_record(t: &TestGateway) {
    use rumqttc::v5::{AsyncClient, MqttOptions, mqttbytes::QoS};
    use uspwatch_proto::{Message, builder};
    let addr = t.mqtt(uspwatch_broker::ListenerKind::V5);
    let (host, port) = addr.rsplit_once(':').expect("addr");
    let mut opts = MqttOptions::new("os::00256D-SPOOF1", host, port.parse().expect("port"));
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(opts, 10);
    let msg = builder::value_change("m1", "s", false, "Device.X", "1");
    let rec = uspwatch_proto::wrap(&msg, "os::00256D-SOMEONE-ELSE", "self::uspwatch");
    client
        .publish(
            "usp/controller/self::uspwatch",
            QoS::AtLeastOnce,
            false,
            rec.encode_to_vec(),
        )
        .await
        .expect("publish");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), el.poll()).await {
            Ok(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::PubAck(_)))) => break,
            Ok(Err(e)) => panic!("mqtt: {e}"),
            _ => {}
        }
    }
    let _ = client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_metric_is_exported() {
    // Kafka (librdkafka's mock cluster) as in production, so the Kafka panels have data.
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let t = TestGateway::start_with(&[], Some(cluster.bootstrap_servers())).await;
    let fleet = t.fleet(4, "wifi_interference:0.5@0s").await;
    send_spoofed_record(&t).await;
    let api = reqwest::get(t.url("/api/v1/rules")).await.expect("api");
    assert!(api.status().is_success());
    let wanted = common::dashboards::dashboard_metric_names();
    assert!(!wanted.is_empty());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = exported_names(&scrape(&t).await);
        let missing: Vec<_> = wanted.iter().filter(|m| !have.contains(*m)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard metrics not exported: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    fleet.stop().await;
}

/// Kills the Prometheus process when the test ends; the temporary directory (its config and
/// TSDB) is removed after it.
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_the_gateway() {
    let bin = "/usr/bin/prometheus";
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} missing: install Debian's prometheus (.ci/run does)"
    );
    let t = TestGateway::start(&[]).await;
    let fleet = t.fleet(3, "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: uspwatch\n    static_configs:\n      - targets: ['{}']\n",
            t.http
        ),
    )
    .expect("config");
    let port = common::wait::free_port();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _prom = Prometheus { child, _dir: dir };
    let query = format!(
        "http://127.0.0.1:{port}/api/v1/query?query=sum(uspwatch_broker_records_accepted_total)"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        let v: Option<f64> = async {
            let body: serde_json::Value = reqwest::get(&query).await.ok()?.json().await.ok()?;
            body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
        }
        .await;
        match v {
            Some(v) if v > 0.0 => break v,
            _ => {}
        }
        assert!(Instant::now() < deadline, "Prometheus never saw records");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(value > 0.0);
    fleet.stop().await;
}
