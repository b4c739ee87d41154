//! The web console in a real browser (headless Chromium over WebDriver) against a running
//! gateway with a small simulated fleet: the pages load with the API token, show the fleet,
//! a device, alerts and rules, run a diagnostic, and a silence created in the page is the one
//! the API then reports. Screenshots of each page are kept under the build's test artifacts.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::browser::{self, Browser};
use common::gw::{TOKEN, TestGateway};
use common::wait::eventually;

const AGENTS: usize = 6;
const PAGE: Duration = Duration::from_secs(30);

async fn get(t: &TestGateway, path: &str) -> Value {
    reqwest::Client::new()
        .get(t.url(path))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("API request")
        .json()
        .await
        .expect("API JSON")
}

/// A device that reports markup as its model name: the console must show it as text.
const HOSTILE_EID: &str = "os::00256D-HOSTILE1";
const HOSTILE_MODEL: &str =
    "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>";

/// Connects as `HOSTILE_EID` and publishes one ValueChange of the model name, waiting (with a
/// deadline) for the broker's PUBACK.
async fn hostile_device(t: &TestGateway) {
    use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions, mqttbytes::QoS};
    use uspwatch_proto::{Message, builder};
    let addr = t.mqtt(uspwatch_broker::ListenerKind::V5);
    let (host, port) = addr.rsplit_once(':').expect("addr");
    let mut opts = MqttOptions::new(HOSTILE_EID, host, port.parse().expect("port"));
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(opts, 10);
    let msg = builder::value_change(
        "hostile-1",
        "s",
        false,
        "Device.DeviceInfo.ModelName",
        HOSTILE_MODEL,
    );
    let rec = uspwatch_proto::wrap(&msg, HOSTILE_EID, "self::uspwatch");
    client
        .publish(
            "usp/controller/self::uspwatch",
            QoS::AtLeastOnce,
            false,
            rec.encode_to_vec(),
        )
        .await
        .expect("publish");
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Incoming::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("mqtt: {e}"),
            }
        }
    })
    .await
    .expect("PUBACK within 20 s");
    // The connection stays up (the device is online); the event loop keeps running.
    tokio::spawn(async move {
        while el.poll().await.is_ok() {}
        drop(client);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_console_shows_the_fleet_and_creates_a_silence() {
    if !browser::available() {
        return;
    }
    let t = TestGateway::start(&[TOKEN]).await;
    let fleet = t.fleet(AGENTS, "wifi_interference:0.34@0s").await;
    let faulty = fleet.faulty(uspwatch_sim::Scenario::WifiInterference);
    assert!(!faulty.is_empty());
    // The built-in pack's Wi-Fi rule fires on the faulty agents within a few evaluations.
    let tr = &t;
    let (rule, eid) = eventually(
        "a firing alert",
        Duration::from_secs(120),
        move || async move {
            let alerts = get(tr, "/api/v1/alerts").await;
            alerts["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["state"] == "firing")
                .map(|a| {
                    (
                        a["rule"].as_str().unwrap_or_default().to_string(),
                        a["labels"]["endpoint_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .ok_or(alerts)
        },
    )
    .await;
    assert!(
        faulty.contains(&eid),
        "{eid} fired {rule} but is not faulty"
    );

    let b = Browser::start().await;
    // Without a token the API refuses, and the page says what to do.
    b.goto(&t.url("/")).await;
    b.wait_text("#status", PAGE, |s| s.contains("token")).await;
    b.fill("#token", TOKEN).await;
    b.click("#token-save").await;
    let online = AGENTS.to_string();
    b.wait_text("#count-online", PAGE, |s| s == online).await;
    b.wait_text("#count-total", PAGE, |s| s == online).await;
    b.wait_text("#count-offline", PAGE, |s| s == "0").await;
    let worst = b
        .wait_text("#worst-devices", PAGE, |s| s.contains(eid.as_str()))
        .await;
    assert!(worst.contains(&rule), "{worst}");
    b.screenshot("overview").await;

    // The device page: inventory, a chart of its numeric values, its alert, a diagnostic.
    b.goto(&t.url(&format!("/#/device/{eid}"))).await;
    b.wait_text("#device-title", PAGE, |s| s == eid).await;
    let inventory = b.wait_text("#inventory", PAGE, |s| !s.is_empty()).await;
    assert!(inventory.contains("online"), "{inventory}");
    b.wait_for("#event-charts svg polyline", PAGE).await;
    let alerts = b.wait_text("#device-alerts", PAGE, |s| !s.is_empty()).await;
    assert!(alerts.contains(&rule), "{alerts}");
    b.click("#diagnostics button.diag").await;
    let result = b
        .wait_text("#diag-result", PAGE, |s| s.contains("DeviceInfo"))
        .await;
    assert!(result.contains("Read device info"), "{result}");
    b.wait_for("#command-history", PAGE).await;
    b.screenshot("device").await;

    // Alerts: silence the firing alert from its row.
    b.goto(&t.url("/#/alerts")).await;
    let row = format!("tr.alert[data-endpoint=\"{eid}\"][data-rule=\"{rule}\"] button.silence");
    b.click(&row).await;
    b.wait_for("#silence-form", PAGE).await;
    b.fill("#silence-duration", "45m").await;
    b.fill("#silence-created-by", "noc-operator").await;
    b.fill("#silence-comment", "planned work on this line")
        .await;
    b.screenshot("silence-form").await;
    b.click("#silence-submit").await;
    let created = b
        .wait_text("#silence-created", PAGE, |s| {
            s.starts_with("Created silence")
        })
        .await;
    b.wait_text("#silences", PAGE, |s| {
        s.contains("planned work on this line")
    })
    .await;
    b.screenshot("alerts").await;

    // The API has exactly that silence, and the alert is silenced by it.
    let silences = get(&t, "/api/v1/silences").await;
    let ours: Vec<&Value> = silences["silences"]
        .as_array()
        .expect("silences")
        .iter()
        .filter(|s| s["comment"] == "planned work on this line")
        .collect();
    assert_eq!(ours.len(), 1, "{silences}");
    let s = ours[0];
    assert!(created.contains(s["id"].as_str().expect("id")), "{created}");
    assert_eq!(s["created_by"], "noc-operator");
    assert_eq!(s["active"], true);
    let length =
        s["ends_at_ms"].as_i64().expect("ends") - s["starts_at_ms"].as_i64().expect("starts");
    assert_eq!(length, 45 * 60 * 1000, "{s}");
    let matchers: Vec<(String, String, bool, bool)> = s["matchers"]
        .as_array()
        .expect("matchers")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["value"].as_str().unwrap_or_default().to_string(),
                m["is_regex"].as_bool().unwrap_or(true),
                m["is_equal"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        matchers,
        vec![
            ("alertname".to_string(), rule.clone(), false, true),
            ("endpoint_id".to_string(), eid.clone(), false, true),
        ]
    );
    let (r, e) = (rule.as_str(), eid.as_str());
    eventually(
        "the alert silenced",
        Duration::from_secs(60),
        move || async move {
            let alerts = get(tr, "/api/v1/alerts").await;
            let silenced = alerts["alerts"].as_array().into_iter().flatten().any(|a| {
                a["rule"] == r && a["labels"]["endpoint_id"] == e && a["silenced"] == true
            });
            if silenced { Ok(()) } else { Err(alerts) }
        },
    )
    .await;

    // Hostile input: a device's own text is shown as text and never runs.
    hostile_device(&t).await;
    b.goto(&t.url(&format!("/#/device/{HOSTILE_EID}"))).await;
    b.wait_text("#device-title", PAGE, |s| s == HOSTILE_EID)
        .await;
    let inventory = b
        .wait_text("#inventory", PAGE, |s| s.contains(HOSTILE_MODEL))
        .await;
    assert!(inventory.contains(HOSTILE_MODEL), "{inventory}");
    let ran = b
        .eval("return [window.__pwned === undefined, document.querySelectorAll('main img, main script').length]")
        .await;
    assert_eq!(
        ran,
        serde_json::json!([true, 0]),
        "device text became markup"
    );
    b.screenshot("hostile-device").await;

    // Rules: every rule the API lists, with its last evaluation.
    b.goto(&t.url("/#/rules")).await;
    let rules = get(&t, "/api/v1/rules").await;
    let names: Vec<&str> = rules["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(!names.is_empty());
    let shown = b
        .wait_text("#rules", PAGE, |s| names.iter().all(|n| s.contains(n)))
        .await;
    let wifi_row = b
        .wait_text(
            &format!("#rules tr.rule[data-rule=\"{rule}\"]"),
            PAGE,
            |s| s.contains("ago"),
        )
        .await;
    assert!(!wifi_row.contains("never"), "{wifi_row}\n{shown}");
    b.screenshot("rules").await;

    // The console's pages come with a policy that keeps device-supplied text from running.
    let resp = reqwest::get(t.url("/")).await.expect("index");
    let csp = resp
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    eprintln!("screenshots in {}", browser::artifacts_dir().display());
    drop(b);
    fleet.stop().await;
}
