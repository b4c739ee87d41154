//! Debian's mosquitto clients as an independent MQTT implementation.

#[path = "support/helpers.rs"]
mod support;

use support::*;
use tokio::process::Command;
use uspwatch_broker::ListenerKind;
use uspwatch_proto::mqtt::with_reply_to;

async fn mosquitto_pub(args: &[&str]) {
    let out = Command::new("mosquitto_pub")
        .args(args)
        .output()
        .await
        .expect("mosquitto_pub is installed (Debian package mosquitto-clients)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn mosquitto_v5_and_v311_publishers_reach_the_controller() {
    let (b, _t) = broker(|_| {}).await;
    let (_p, mut link) = controller_link(&b);
    let dir = tempfile::tempdir().unwrap();

    let eid = "os::00256D-M5";
    let record = notify("m5", eid, CTL);
    let file = dir.path().join("r5");
    std::fs::write(&file, &record).unwrap();
    let a = addr(&b, ListenerKind::V5);
    let reply = format!("usp/agent/{eid}");
    mosquitto_pub(&[
        "-V",
        "mqttv5",
        "-h",
        "127.0.0.1",
        "-p",
        &a.port().to_string(),
        "-i",
        eid,
        "-q",
        "1",
        "-t",
        CTL_TOPIC,
        "-f",
        file.to_str().unwrap(),
        "-D",
        "publish",
        "content-type",
        "usp.msg",
        "-D",
        "publish",
        "response-topic",
        &reply,
    ])
    .await;
    let d = tokio::time::timeout(WAIT, link.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.payload, record);
    assert_eq!(d.content_type.as_deref(), Some("usp.msg"));
    assert_eq!(d.response_topic.as_deref(), Some(reply.as_str()));

    let eid = "os::00256D-M4";
    let record = notify("m4", eid, CTL);
    let file = dir.path().join("r4");
    std::fs::write(&file, &record).unwrap();
    let a = addr(&b, ListenerKind::V4);
    let topic = with_reply_to(CTL_TOPIC, &format!("usp/agent/{eid}"));
    mosquitto_pub(&[
        "-V",
        "mqttv311",
        "-h",
        "127.0.0.1",
        "-p",
        &a.port().to_string(),
        "-i",
        eid,
        "-q",
        "1",
        "-t",
        &topic,
        "-f",
        file.to_str().unwrap(),
    ])
    .await;
    let d = tokio::time::timeout(WAIT, link.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.topic.as_str(), &d.payload), (topic.as_str(), &record));
}
