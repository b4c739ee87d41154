//! Alerts pushed to a real Alertmanager (Debian's `prometheus-alertmanager`, started here on
//! loopback) and read back through its v2 API, through firing and resolution.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::value_change;
use uspwatch_rules::{AlertState, AlertmanagerConfig, Engine, RulesConfig};

const BINARY: &str = "/usr/bin/prometheus-alertmanager";

struct Alertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_alertmanager() -> Alertmanager {
    assert!(
        std::path::Path::new(BINARY).exists(),
        "{BINARY} is missing: apt-get install prometheus-alertmanager"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: none\n  group_wait: 1s\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(BINARY)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let am = Alertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let ready = format!("{}/-/ready", am.url);
    wait_for(Duration::from_secs(30), || {
        let (client, ready) = (client.clone(), ready.clone());
        async move {
            client
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    am
}

/// Polls `check` until it holds, failing the test after `timeout`.
async fn wait_for<F, Fut>(timeout: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The alerts Alertmanager holds for our rule: (endpoint_id, state, summary).
async fn am_alerts(url: &str) -> Vec<(String, String, String)> {
    let v: serde_json::Value = reqwest::get(format!("{url}/api/v2/alerts"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["alertname"] == "temperature")
        .map(|a| {
            (
                a["labels"]["endpoint_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                a["status"]["state"].as_str().unwrap_or("").to_string(),
                a["annotations"]["summary"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

const RULE: &str = r#"
name = "temperature"
every = "1ms"
severity = "critical"
sql = "SELECT endpoint_id, value_f64 AS temp FROM latest WHERE path = 'Device.T' AND value_f64 > 80"
[annotations]
summary = "{{endpoint_id}} at {{temp}} C"
"#;

#[tokio::test]
async fn alerts_reach_alertmanager_and_resolve_there() {
    let am = start_alertmanager().await;
    let config = RulesConfig {
        default_pack: false,
        alertmanager: Some(AlertmanagerConfig {
            url: am.url.clone(),
            resend_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        }),
        ..RulesConfig::default()
    };
    let (engine, errors) = Engine::from_sources(
        &config,
        common::RecordingSink::new(),
        vec![("t.toml".into(), RULE.into())],
    )
    .unwrap();
    assert!(errors.is_empty(), "{errors:?}");

    // Alertmanager judges startsAt/endsAt against its own clock: use the real time.
    let now = chrono::Utc::now().timestamp_millis();
    engine.ingest(&value_change("os::00256D-AM1", "Device.T", "91", now));
    engine.ingest(&value_change("os::00256D-AM2", "Device.T", "40", now));
    engine.evaluate_at(now).await.unwrap();
    assert_eq!(engine.alerts()[0].state, AlertState::Firing);
    assert_eq!(engine.push_alertmanager(now).await.unwrap(), 1);
    wait_for(Duration::from_secs(10), || async {
        am_alerts(&am.url).await
            == [(
                "os::00256D-AM1".to_string(),
                "active".to_string(),
                "os::00256D-AM1 at 91 C".to_string(),
            )]
    })
    .await;

    // Re-sent only once resend_interval has passed.
    assert_eq!(engine.push_alertmanager(now + 1_000).await.unwrap(), 0);
    assert_eq!(engine.push_alertmanager(now + 60_000).await.unwrap(), 1);

    // The condition clears: resolved here, then pushed with endsAt, and gone from the
    // active alerts there. endsAt must not be in Alertmanager's future, or it merges the
    // update into the firing alert and keeps it active.
    let later = chrono::Utc::now().timestamp_millis().max(now + 1);
    engine.ingest(&value_change("os::00256D-AM1", "Device.T", "45", later));
    engine.evaluate_at(later).await.unwrap();
    assert_eq!(engine.alerts()[0].state, AlertState::Resolved);
    assert_eq!(engine.push_alertmanager(later).await.unwrap(), 1);
    wait_for(Duration::from_secs(10), || async {
        am_alerts(&am.url).await.is_empty()
    })
    .await;
    // A resolved alert is sent once.
    assert_eq!(engine.push_alertmanager(later + 120_000).await.unwrap(), 0);
}

#[tokio::test]
async fn unreachable_alertmanager_is_an_error_and_retried() {
    let port = free_port();
    let config = RulesConfig {
        default_pack: false,
        alertmanager: Some(AlertmanagerConfig {
            url: format!("http://127.0.0.1:{port}"),
            resend_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(2),
        }),
        ..RulesConfig::default()
    };
    let (engine, _) = Engine::from_sources(
        &config,
        common::RecordingSink::new(),
        vec![("t.toml".into(), RULE.into())],
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    engine.ingest(&value_change("os::00256D-AM1", "Device.T", "91", now));
    engine.evaluate_at(now).await.unwrap();
    assert!(engine.push_alertmanager(now).await.is_err());
    // Not marked as sent: the next push tries again.
    assert!(engine.push_alertmanager(now + 1).await.is_err());
}
