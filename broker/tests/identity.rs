//! Hostile devices with valid credentials: a device can never make anyone answer into another
//! endpoint's topic, never take another identity's client id or session, and never guess an
//! assigned client id.

#[path = "support/helpers.rs"]
mod support;

use bytes::{Bytes, BytesMut};
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode as C, Packet as P5, PublishProperties};
use support::*;
use tokio::io::AsyncReadExt;
use uspwatch_broker::{Broker, ListenerKind};
use uspwatch_proto::mqtt::{USER_PROPERTY_ENDPOINT_ID, with_reply_to};
use uspwatch_proto::{Message, builder, wrap};

const A: &str = "os::00256D-HA";
const B: &str = "os::00256D-HB";

/// Nothing reaches the controller link but `marker`, published last by a good agent.
async fn only_marker_arrives(
    b: &Broker,
    link: &mut tokio::sync::mpsc::Receiver<uspwatch_broker::Delivery>,
) {
    let eid = "os::00256D-HM";
    let (c, mut ev) = v5_client(addr(b, ListenerKind::V5), eid, |_| {}).await;
    connack5(&mut ev).await;
    let marker = notify("marker", eid, CTL);
    c.publish(CTL_TOPIC, Q5::AtLeastOnce, false, marker.clone())
        .await
        .unwrap();
    let d = tokio::time::timeout(WAIT, link.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.payload, marker, "a hostile publish was delivered: {d:?}");
    c.disconnect().await.unwrap();
}

async fn next_quarantine(
    q: &mut tokio::sync::broadcast::Receiver<uspwatch_proto::QuarantineEvent>,
) -> uspwatch_proto::QuarantineEvent {
    tokio::time::timeout(WAIT, q.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn reply_routes_naming_someone_else_are_quarantined() {
    let (b, _t) = broker(|_| {}).await;
    let (_p, mut link) = controller_link(&b);
    let mut q = b.quarantine();

    // MQTT 5 Response Topic: another agent's topic, then another controller's.
    let (a, mut ev) = v5_client(addr(&b, ListenerKind::V5), A, |_| {}).await;
    connack5(&mut ev).await;
    for rt in [
        format!("usp/agent/{B}"),
        "usp/controller/self::other".into(),
    ] {
        let props = PublishProperties {
            response_topic: Some(rt.clone()),
            ..Default::default()
        };
        a.publish_with_properties(
            CTL_TOPIC,
            Q5::AtLeastOnce,
            false,
            notify("m", A, CTL),
            props,
        )
        .await
        .unwrap();
        let e = next_quarantine(&mut q).await;
        assert_eq!(
            (e.reason.as_str(), e.endpoint_id.as_str()),
            ("foreign_reply_to", A),
            "{rt}"
        );
    }
    // An MQTTConnect Record whose subscribed_topic names another agent.
    let connect =
        Bytes::from(builder::mqtt_connect(A, CTL, true, &format!("usp/agent/{B}")).encode_to_vec());
    a.publish(CTL_TOPIC, Q5::AtLeastOnce, false, connect)
        .await
        .unwrap();
    assert_eq!(next_quarantine(&mut q).await.reason, "foreign_reply_to");

    // MQTT 3.1.1 `/reply-to=` naming another agent.
    let (a4, mut ev4) = v4_client(addr(&b, ListenerKind::V4), A, |_| {}).await;
    let _ = until(&mut ev4, |e| matches!(e, Ok(rumqttc::Packet::ConnAck(_)))).await;
    let topic = with_reply_to(CTL_TOPIC, &format!("usp/agent/{B}"));
    a4.publish(
        &topic,
        rumqttc::QoS::AtLeastOnce,
        false,
        notify("m4", A, CTL).to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(next_quarantine(&mut q).await.reason, "foreign_reply_to");

    only_marker_arrives(&b, &mut link).await;
    assert!(b.stats().records_rejected >= 4);
}

#[tokio::test]
async fn own_topic_and_below_remain_valid_reply_routes() {
    let (b, _t) = broker(|_| {}).await;
    let (_p, mut link) = controller_link(&b);
    let (a, mut ev) = v5_client(addr(&b, ListenerKind::V5), A, |_| {}).await;
    connack5(&mut ev).await;
    for rt in [format!("usp/agent/{A}"), format!("usp/agent/{A}/replies")] {
        let props = PublishProperties {
            response_topic: Some(rt.clone()),
            ..Default::default()
        };
        let rec = notify("ok", A, CTL);
        a.publish_with_properties(CTL_TOPIC, Q5::AtLeastOnce, false, rec.clone(), props)
            .await
            .unwrap();
        let d = tokio::time::timeout(WAIT, link.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.response_topic.as_deref(), Some(rt.as_str()));
    }
}

#[tokio::test]
async fn wildcard_or_dollar_response_topic_is_a_protocol_error() {
    let (b, _t) = broker(|_| {}).await;
    let (_p, mut link) = controller_link(&b);
    for rt in ["usp/agent/#", "usp/agent/+", "$SYS/x"] {
        let (a, mut ev) = v5_client(addr(&b, ListenerKind::V5), A, |_| {}).await;
        connack5(&mut ev).await;
        let props = PublishProperties {
            response_topic: Some(rt.into()),
            ..Default::default()
        };
        a.publish_with_properties(
            CTL_TOPIC,
            Q5::AtLeastOnce,
            false,
            notify("w", A, CTL),
            props,
        )
        .await
        .unwrap();
        match until(&mut ev, |e| matches!(e, Ok(P5::Disconnect(_)) | Err(_))).await {
            Ok(P5::Disconnect(d)) => assert_eq!(
                d.reason_code,
                rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::ProtocolError,
                "{rt}"
            ),
            Err(_) => {}
            other => panic!("{rt}: {other:?}"),
        }
    }
    only_marker_arrives(&b, &mut link).await;
}

#[tokio::test]
async fn the_controller_link_obeys_the_controller_acl() {
    let (b, _t) = broker(|_| {}).await;
    let (publisher, _link) = controller_link(&b);
    let get =
        |to: &str| Bytes::from(wrap(&builder::get("g", &["Device."], 0), CTL, to).encode_to_vec());
    // A Record for A on B's topic, a controller topic, a wildcard, a `$` topic, a Record
    // that is not from the link's own Endpoint ID, junk, and a foreign reply route.
    let forged = Bytes::from(wrap(&builder::get("g", &["Device."], 0), B, A).encode_to_vec());
    for (topic, payload, rt) in [
        (format!("usp/agent/{B}"), get(A), None),
        (
            "usp/controller/self::other".to_string(),
            get("self::other"),
            None,
        ),
        ("usp/agent/#".to_string(), get(A), None),
        ("$SYS/x".to_string(), get(A), None),
        (format!("usp/agent/{A}"), forged, None),
        (format!("usp/agent/{A}"), Bytes::from_static(b"junk"), None),
        (
            format!("usp/agent/{A}"),
            get(A),
            Some(format!("usp/agent/{B}")),
        ),
        (
            with_reply_to(&format!("usp/agent/{A}"), &format!("usp/agent/{B}")),
            get(A),
            None,
        ),
    ] {
        let r = publisher.publish(&topic, payload, rt.as_deref(), Some("usp.msg"));
        assert!(r.is_err(), "{topic} {rt:?} was accepted");
    }
    for topic in [format!("usp/agent/{A}"), format!("usp/agent/{A}/replies")] {
        publisher
            .publish(&topic, get(A), Some(CTL_TOPIC), Some("usp.msg"))
            .expect("a request to the topic of its addressee passes");
    }
}

/// A credentials file with one agent per `(username, endpoint id)`, all with password `pw`.
fn credentials(dir: &std::path::Path, entries: &[(&str, &str)]) -> std::path::PathBuf {
    let hash = uspwatch_broker::hash_password("pw").unwrap();
    let text: String = entries
        .iter()
        .map(|(u, e)| {
            format!("[[client]]\nusername = \"{u}\"\npassword_hash = \"{hash}\"\nendpoint_id = \"{e}\"\nrole = \"agent\"\n")
        })
        .collect();
    let path = dir.join("credentials.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_client_id_belongs_to_the_identity_that_created_it() {
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials(dir.path(), &[("a", A), ("b", B)]);
    let (b, _t) = broker(|c| {
        c.allow_anonymous = false;
        c.credentials_file = Some(creds.clone());
    })
    .await;
    let (publisher, _link) = controller_link(&b);
    let v5 = addr(&b, ListenerKind::V5);
    let cid = "cpe-shared-id";
    let login = |user: &'static str| {
        move |o: &mut rumqttc::v5::MqttOptions| {
            o.set_credentials(user, "pw");
            o.set_clean_start(false);
        }
    };
    let (a, mut eva) = v5_client(v5, cid, login("a")).await;
    assert_eq!(connack5(&mut eva).await.code, C::Success);
    a.subscribe(format!("usp/agent/{A}"), Q5::AtLeastOnce)
        .await
        .unwrap();
    let _ = until(&mut eva, |e| matches!(e, Ok(P5::SubAck(_)))).await;

    // B with A's client id: refused (MQTT 5 0x85), A untouched.
    let (_bc, mut evb) = v5_client(v5, cid, login("b")).await;
    match until(&mut evb, |e| matches!(e, Ok(P5::ConnAck(_)) | Err(_))).await {
        Ok(P5::ConnAck(c)) => assert_eq!(c.code, C::ClientIdentifierNotValid),
        Err(e) => assert!(e.contains("ClientIdentifierNotValid"), "{e}"),
        other => panic!("{other:?}"),
    }
    // MQTT 3.1.1: return code 2.
    let mut s = raw_connect(addr(&b, ListenerKind::V4), false, cid, Some(("b", "pw"))).await;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x02]);

    // A is still connected and still gets what the controller sends it.
    let get = Bytes::from(wrap(&builder::get("g1", &["Device."], 0), CTL, A).encode_to_vec());
    publisher
        .publish(
            &format!("usp/agent/{A}"),
            get.clone(),
            Some(CTL_TOPIC),
            Some("usp.msg"),
        )
        .unwrap();
    match until(&mut eva, |e| {
        matches!(e, Ok(P5::Publish(_)) | Ok(P5::Disconnect(_)) | Err(_))
    })
    .await
    {
        Ok(P5::Publish(p)) => assert_eq!(p.payload, get),
        other => panic!("A lost its connection: {other:?}"),
    }

    // The same identity reconnecting still takes over.
    let (_a2, mut eva2) = v5_client(v5, cid, login("a")).await;
    let ack = connack5(&mut eva2).await;
    assert_eq!((ack.code, ack.session_present), (C::Success, true));
    match until(&mut eva, |e| matches!(e, Ok(P5::Disconnect(_)) | Err(_))).await {
        Ok(P5::Disconnect(d)) => assert_eq!(
            d.reason_code,
            rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::SessionTakenOver
        ),
        Err(_) => {}
        other => panic!("{other:?}"),
    }
    drop(a);
    assert!(b.stats().connects_refused >= 2);
}

#[tokio::test]
async fn a_persistent_session_is_not_inherited_by_another_identity() {
    let (b, _t) = broker(|_| {}).await;
    let (publisher, _link) = controller_link(&b);
    let v5 = addr(&b, ListenerKind::V5);
    let cid = "cpe-persistent";
    let claim = |eid: &'static str| {
        move |o: &mut rumqttc::v5::MqttOptions| {
            o.set_user_properties(vec![(USER_PROPERTY_ENDPOINT_ID.into(), eid.into())]);
            o.set_clean_start(false);
        }
    };
    let (a, mut eva) = v5_client(v5, cid, claim(A)).await;
    connack5(&mut eva).await;
    a.subscribe(format!("usp/agent/{A}"), Q5::AtLeastOnce)
        .await
        .unwrap();
    let _ = until(&mut eva, |e| matches!(e, Ok(P5::SubAck(_)))).await;
    a.disconnect().await.unwrap();
    let _ = until(&mut eva, |e| e.is_err()).await;
    // Queued for A while it is away.
    let get = Bytes::from(wrap(&builder::get("queued", &["Device."], 0), CTL, A).encode_to_vec());
    publisher
        .publish(
            &format!("usp/agent/{A}"),
            get,
            Some(CTL_TOPIC),
            Some("usp.msg"),
        )
        .unwrap();

    let (_bc, mut evb) = v5_client(v5, cid, claim(B)).await;
    match until(&mut evb, |e| matches!(e, Ok(P5::ConnAck(_)) | Err(_))).await {
        Ok(P5::ConnAck(c)) => assert_ne!(c.code, C::Success, "B inherited A's session"),
        Err(e) => assert!(e.contains("ClientIdentifierNotValid"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Whatever B sees until its connection ends (or for a bounded time) is not A's request.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        while let Some(e) = evb.recv().await {
            assert!(
                !matches!(e, Ok(P5::Publish(_))),
                "B received A's queued request"
            );
        }
    })
    .await;
}

/// The Assigned Client Identifier the broker gives an MQTT 5 CONNECT with an empty client id
/// (the Endpoint ID claimed through the `usp-endpoint-id` user property).
async fn assigned_id(b: &Broker) -> String {
    use rumqttd::protocol::{Connect, ConnectProperties, Packet, Protocol};
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr(b, ListenerKind::V5))
        .await
        .unwrap();
    let connect = Packet::Connect(
        Connect {
            keep_alive: 30,
            client_id: String::new(),
            clean_session: true,
        },
        Some(ConnectProperties {
            session_expiry_interval: None,
            receive_maximum: None,
            max_packet_size: None,
            topic_alias_max: None,
            request_response_info: None,
            request_problem_info: None,
            user_properties: vec![(USER_PROPERTY_ENDPOINT_ID.into(), A.into())],
            authentication_method: None,
            authentication_data: None,
        }),
        None,
        None,
        None,
    );
    let mut out = BytesMut::new();
    rumqttd::protocol::v5::V5.write(connect, &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(p) = rumqttc::v5::mqttbytes::v5::Packet::read(&mut buf, None) {
                return match p {
                    P5::ConnAck(c) => c
                        .properties
                        .and_then(|p| p.assigned_client_identifier)
                        .expect("an assigned client id"),
                    other => panic!("{other:?}"),
                };
            }
            assert!(s.read_buf(&mut buf).await.unwrap() > 0, "closed");
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn assigned_client_ids_are_random_and_differ_across_restarts() {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (b, t) = broker(|_| {}).await;
        ids.push(assigned_id(&b).await);
        t.cancel();
    }
    assert_ne!(ids[0], ids[1], "assigned ids repeat across restarts");
    for id in &ids {
        let random = id.rsplit('-').next().unwrap_or_default();
        assert!(
            random.len() >= 32 && random.bytes().all(|c| c.is_ascii_hexdigit()),
            "{id} has fewer than 128 random bits"
        );
    }
}
