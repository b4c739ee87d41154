//! The HTTP API against a running gateway: auth, errors as JSON, inventory, commands to a
//! simulated device, silences and rules.

mod common;

use std::time::Duration;

use common::gw::{TOKEN, TestGateway};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn error_code(resp: reqwest::Response) -> String {
    let v: Value = resp.json().await.expect("JSON error body");
    v["error"]["code"].as_str().expect("error.code").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_errors_inventory_and_commands() {
    let t = TestGateway::start(&[TOKEN]).await;
    let c = client();

    // Health and metrics need no token.
    let r = c.get(t.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(t.url("/readyz")).send().await.expect("readyz");
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(t.url("/metrics")).send().await.expect("metrics");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.expect("text").contains("uspwatch_up"));

    // Missing and wrong tokens.
    let r = c
        .get(t.url("/api/v1/devices"))
        .send()
        .await
        .expect("devices");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(r).await, "unauthorized");
    let r = c
        .get(t.url("/api/v1/devices"))
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .expect("devices");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let fleet = t.fleet(3, "").await;
    let eid = fleet.agents()[0].eid.clone();
    let auth = |rb: reqwest::RequestBuilder| rb.bearer_auth(TOKEN);

    // Inventory: the agents appear once their first records arrived.
    let mut listed = Value::Null;
    for _ in 0..100 {
        let r = auth(c.get(t.url("/api/v1/devices?state=online")))
            .send()
            .await
            .expect("devices");
        assert_eq!(r.status(), StatusCode::OK);
        listed = r.json().await.expect("json");
        if listed["total"] == json!(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed["total"], json!(3), "{listed}");
    let r = auth(c.get(t.url("/api/v1/devices?state=sideways")))
        .send()
        .await
        .expect("bad filter");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "bad_query");

    let r = auth(c.get(t.url(&format!("/api/v1/devices/{eid}"))))
        .send()
        .await
        .expect("device");
    assert_eq!(r.status(), StatusCode::OK);
    let detail: Value = r.json().await.expect("json");
    assert!(detail.to_string().contains(&eid), "{detail}");

    let r = auth(c.get(t.url("/api/v1/devices/os::00256D-NOPE")))
        .send()
        .await
        .expect("unknown");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "unknown_device");

    // Commands: malformed bodies, unknown devices, then a real round trip.
    let cmd_url = t.url(&format!("/api/v1/devices/{eid}/commands"));
    for bad in [
        "{",
        "[]",
        r#"{"type":"explode"}"#,
        r#"{"type":"get","paths":[]}"#,
    ] {
        let r = auth(c.post(&cmd_url))
            .body(bad)
            .header("content-type", "application/json")
            .send()
            .await
            .expect("bad command");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let code = error_code(r).await;
        assert!(code == "bad_body" || code == "bad_command", "{bad}: {code}");
    }
    let r = auth(c.post(t.url("/api/v1/devices/os::00256D-NOPE/commands")))
        .json(&json!({"type": "get", "paths": ["Device.DeviceInfo."]}))
        .send()
        .await
        .expect("unknown device command");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r = auth(c.post(&cmd_url))
        .json(&json!({"type": "get", "paths": ["Device.DeviceInfo.SoftwareVersion"]}))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let result: Value = r.json().await.expect("json");
    assert!(
        result.to_string().contains("Device.DeviceInfo."),
        "GetResp should carry the resolved path: {result}"
    );
    let r = auth(c.post(&cmd_url))
        .json(&json!({"type": "set", "objects": [{"obj_path": "Device.WiFi.Radio.1.", "params": {"Channel": "11"}}]}))
        .send()
        .await
        .expect("set");
    assert_eq!(r.status(), StatusCode::OK);
    let got = fleet.agent(&eid).expect("agent").commands;
    assert!(got.iter().any(|c| c.kind == "set"), "{got:?}");

    // Silences and rules.
    let r = auth(c.post(t.url("/api/v1/silences")))
        .body("not json")
        .send()
        .await
        .expect("bad silence");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = auth(c.post(t.url("/api/v1/silences")))
        .json(&json!({"matchers": [{"name": "alertname", "value": "wifi_noise_high"}], "duration": "1h", "created_by": "noc", "comment": "maintenance"}))
        .send()
        .await
        .expect("silence");
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.expect("json");
    let id = created["id"].as_str().expect("silence id").to_string();
    let r = auth(c.get(t.url("/api/v1/silences")))
        .send()
        .await
        .expect("silences");
    let listed: Value = r.json().await.expect("json");
    assert!(listed.to_string().contains(&id), "{listed}");
    let r = auth(c.delete(t.url(&format!("/api/v1/silences/{id}"))))
        .send()
        .await
        .expect("expire");
    assert_eq!(r.status(), StatusCode::OK);
    let r = auth(c.delete(t.url("/api/v1/silences/no-such-silence")))
        .send()
        .await
        .expect("expire unknown");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = auth(c.get(t.url("/api/v1/rules")))
        .send()
        .await
        .expect("rules");
    assert_eq!(r.status(), StatusCode::OK);
    let rules: Value = r.json().await.expect("json");
    assert!(
        rules["rules"].as_array().is_some_and(|a| a.len() >= 10),
        "{rules}"
    );
    let r = auth(c.get(t.url("/api/v1/alerts")))
        .send()
        .await
        .expect("alerts");
    assert_eq!(r.status(), StatusCode::OK);
    let r = auth(c.get(t.url("/api/v1/nothing-here")))
        .send()
        .await
        .expect("404");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "not_found");
    fleet.stop().await;
}
