//! Bulk Data reports over the two transports outside USP, through a whole gateway: the HTTP
//! collector (HTTP Basic against the broker's credentials file) and MQTT publishes on a Bulk
//! Data topic (identity from the publishing connection, never from the report or a property
//! the client sets). Hostile requests are refused and store nothing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::sync::broadcast;
use uspwatch::AppConfig;
use uspwatch_broker::ListenerKind;
use uspwatch_proto::{Event, EventKind};

use common::gw::TestGateway;

const A: &str = "os::00256D-BULK0001";
const B: &str = "os::00256D-BULK0002";
const NOISE: &str = "Device.WiFi.Radio.1.Stats.Noise";
const WAIT: Duration = Duration::from_secs(30);

async fn start() -> TestGateway {
    let data = tempfile::tempdir().expect("tempdir");
    let creds = data.path().join("credentials.toml");
    let mut text = String::new();
    for (user, eid) in [("cpe-a", A), ("cpe-b", B)] {
        let hash = uspwatch_broker::hash_password(&format!("{user}-secret")).expect("hash");
        text.push_str(&format!(
            "[[client]]\nusername = \"{user}\"\npassword_hash = \"{hash}\"\nendpoint_id = \"{eid}\"\nrole = \"agent\"\n"
        ));
    }
    std::fs::write(&creds, text).expect("credentials");
    let mut cfg = AppConfig::default();
    cfg.broker.listeners.v5 = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.broker.listeners.v311 = None;
    cfg.broker.credentials_file = Some(creds);
    cfg.broker.topics.bulk_data_topics = vec!["usp/bulkdata/+".into()];
    cfg.pipeline.log.dir = data.path().join("events");
    cfg.pipeline.bulk_data.max_report_bytes = 4096;
    cfg.http.listen = "127.0.0.1:0".parse().expect("addr");
    TestGateway::start_config(cfg, data).await
}

/// The next samples (kind = 'sample') from the event stream, or a panic after `WAIT`.
async fn samples(rx: &mut broadcast::Receiver<Arc<Event>>, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while out.len() < n {
        let e = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("samples in time")
            .expect("event stream");
        if e.kind == EventKind::Sample {
            out.push((*e).clone());
        }
    }
    out
}

/// Nothing more arrives on the stream within a bounded wait.
async fn no_more_samples(rx: &mut broadcast::Receiver<Arc<Event>>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(r) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let e = r.expect("event stream");
        assert_ne!(e.kind, EventKind::Sample, "unexpected sample {e:?}");
    }
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_collector_authenticates_devices_and_refuses_hostile_reports() {
    let t = start().await;
    let mut events = t.gw.pipeline.subscribe_events();
    let url = format!("http://{}/bulkdata", t.http);
    let http = reqwest::Client::new();
    let csv = "ReportTimestamp,ParameterName,ParameterValue,ParameterType\r\n\
1736935200,Device.WiFi.Radio.1.Stats.Noise,-58,int\r\n\
1736935200,Device.DeviceInfo.ProcessStatus.CPUUsage,12,unsignedInt\r\n";
    let post = |auth: Option<String>, query: &str, body: &str, ct: &str| {
        let mut r = http
            .post(format!("{url}{query}"))
            .header("content-type", ct)
            .header("bbf-report-format", "\"ParameterPerRow\"")
            .body(body.to_string());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let csv_ct = "text/csv; charset=UTF-8; header=present";

    let ok = post(
        Some(basic("cpe-a", "cpe-a-secret")),
        &format!("?eid={A}"),
        csv,
        csv_ct,
    )
    .await
    .expect("request");
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.expect("json");
    assert_eq!(body["samples"], 2);
    let got = samples(&mut events, 2).await;
    assert!(got.iter().all(|e| e.endpoint_id == A));
    assert!(
        got.iter()
            .any(|e| e.path == NOISE && e.value_f64() == Some(-58.0))
    );

    // No credentials, a wrong password, a controller-less user: 401. Another device's eid: 403.
    for auth in [
        None,
        Some(basic("cpe-a", "wrong")),
        Some(basic("nobody", "x")),
    ] {
        let r = post(auth, "", csv, csv_ct).await.expect("request");
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("www-authenticate"));
    }
    let r = post(
        Some(basic("cpe-a", "cpe-a-secret")),
        &format!("?eid={B}"),
        csv,
        csv_ct,
    )
    .await
    .expect("request");
    assert_eq!(r.status(), 403);
    // Malformed, mislabelled, compressed and oversized reports are refused.
    let r = post(
        Some(basic("cpe-b", "cpe-b-secret")),
        "",
        "ParameterName,ParameterValue\n\"open",
        csv_ct,
    )
    .await
    .expect("request");
    assert_eq!(r.status(), 400);
    let r = post(
        Some(basic("cpe-b", "cpe-b-secret")),
        "",
        csv,
        "application/xml",
    )
    .await
    .expect("request");
    assert_eq!(r.status(), 400);
    let r = http
        .post(&url)
        .header("authorization", basic("cpe-b", "cpe-b-secret"))
        .header("content-type", csv_ct)
        .header("content-encoding", "gzip")
        .body(csv)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 415);
    let big = format!("{csv}{}", "1736935200,Device.X,1,int\r\n".repeat(200));
    let r = post(Some(basic("cpe-b", "cpe-b-secret")), "", &big, csv_ct)
        .await
        .expect("request");
    assert_eq!(r.status(), 413);
    no_more_samples(&mut events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_reports_are_attributed_to_the_publishing_connection() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    use rumqttc::v5::{AsyncClient, MqttOptions};

    let t = start().await;
    let mut events = t.gw.pipeline.subscribe_events();
    let addr =
        t.gw.broker
            .local_addrs()
            .into_iter()
            .find(|(k, _)| *k == ListenerKind::V5)
            .map(|(_, a)| a)
            .expect("v5 listener");
    let mut opts = MqttOptions::new("cpe-a-client", addr.ip().to_string(), addr.port());
    opts.set_credentials("cpe-a", "cpe-a-secret");
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(opts, 10);
    // The device claims to be B, in the topic and in the broker's own property name.
    let props = PublishProperties {
        content_type: Some("application/json; charset=UTF-8".into()),
        user_properties: vec![(uspwatch_broker::BULK_DATA_PUBLISHER.into(), B.into())],
        ..Default::default()
    };
    let report =
        r#"{"Report":[{"CollectionTime":1736935200,"Device.WiFi.Radio.1.Stats.Noise":-57}]}"#;
    client
        .publish_with_properties(
            format!("usp/bulkdata/{B}"),
            QoS::AtLeastOnce,
            false,
            report,
            props,
        )
        .await
        .expect("publish");
    client
        .publish(
            "usp/bulkdata/x",
            QoS::AtLeastOnce,
            false,
            "{\"Report\":[{\"A\":null}]}",
        )
        .await
        .expect("publish");
    let poller = tokio::spawn(async move {
        while let Ok(Ok(_)) = tokio::time::timeout(WAIT, el.poll()).await {}
    });
    let got = samples(&mut events, 1).await;
    assert_eq!(got[0].endpoint_id, A);
    assert_eq!(got[0].path, NOISE);
    assert_eq!(got[0].args["source"], "mqtt");
    assert_eq!(got[0].args["origin"], format!("usp/bulkdata/{B}"));
    // The malformed second report is quarantined, not half-ingested.
    no_more_samples(&mut events).await;
    let _ = client.disconnect().await;
    poller.abort();
}
