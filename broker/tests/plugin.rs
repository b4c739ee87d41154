//! The USP plugin seen from real MQTT clients (rumqttc v5 and v3.1.1).

#[path = "support/helpers.rs"]
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::v5::mqttbytes::v5::{Packet as P5, PublishProperties};
use support::*;
use uspwatch_broker::ListenerKind;
use uspwatch_proto::mqtt::{
    USER_PROPERTY_ENDPOINT_ID, USER_PROPERTY_SUBSCRIBE_TOPIC, with_reply_to,
};
use uspwatch_proto::{Message, PresenceState, builder, wrap};

#[tokio::test]
async fn v5_notify_reaches_the_controller_byte_identical_with_properties() {
    let (b, _t) = broker(|_| {}).await;
    let (_pubr, mut link) = controller_link(&b);
    let mut presence = b.presence();
    let eid = "os::00256D-A1";
    let (c, mut ev) = v5_client(addr(&b, ListenerKind::V5), "cpe-a1", |o| {
        o.set_user_properties(vec![(USER_PROPERTY_ENDPOINT_ID.into(), eid.into())]);
        o.set_request_response_info(Some(1));
    })
    .await;
    let ack = connack5(&mut ev).await;
    let props = ack.properties.expect("CONNACK properties");
    let agent_topic = format!("usp/agent/{eid}");
    assert_eq!(
        props.user_properties,
        vec![(
            USER_PROPERTY_SUBSCRIBE_TOPIC.to_string(),
            agent_topic.clone()
        )]
    );
    assert_eq!(
        props.response_information.as_deref(),
        Some(agent_topic.as_str())
    );
    assert_eq!(props.max_packet_size, Some(1024 * 1024));
    let p = presence.recv().await.unwrap();
    assert_eq!(
        (p.endpoint_id.as_str(), p.state, p.mqtt_version.as_str()),
        (eid, PresenceState::Connected, "5")
    );

    let record = notify("m1", eid, CTL);
    let props = PublishProperties {
        content_type: Some("usp.msg".into()),
        response_topic: Some(agent_topic.clone()),
        ..Default::default()
    };
    c.publish_with_properties(CTL_TOPIC, Q5::AtLeastOnce, false, record.clone(), props)
        .await
        .unwrap();
    let d = tokio::time::timeout(WAIT, link.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.topic, CTL_TOPIC);
    assert_eq!(d.payload, record);
    assert_eq!(d.content_type.as_deref(), Some("usp.msg"));
    assert_eq!(d.response_topic.as_deref(), Some(agent_topic.as_str()));
    let _ = until(&mut ev, |e| matches!(e, Ok(P5::PubAck(_)))).await;

    c.disconnect().await.unwrap();
    let p = presence.recv().await.unwrap();
    assert_eq!(
        (p.state, p.reason.as_str()),
        (PresenceState::Disconnected, "disconnect")
    );
    assert_eq!(b.stats().records_accepted, 1);
}

#[tokio::test]
async fn v311_notify_keeps_the_reply_to_in_the_topic() {
    let (b, _t) = broker(|_| {}).await;
    let (_pubr, mut link) = controller_link(&b);
    let eid = "os::00256D-B1";
    let (c, mut ev) = v4_client(addr(&b, ListenerKind::V4), eid, |_| {}).await;
    let _ = until(&mut ev, |e| matches!(e, Ok(rumqttc::Packet::ConnAck(_)))).await;
    let topic = with_reply_to(CTL_TOPIC, &format!("usp/agent/{eid}"));
    let record = notify("m1", eid, CTL);
    c.publish(&topic, rumqttc::QoS::AtLeastOnce, false, record.to_vec())
        .await
        .unwrap();
    let d = tokio::time::timeout(WAIT, link.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.topic.as_str(), &d.payload), (topic.as_str(), &record));
    assert_eq!(d.content_type, None);
}

#[tokio::test]
async fn controller_link_reaches_v5_and_v311_agents() {
    let (b, _t) = broker(|_| {}).await;
    let (publisher, _link) = controller_link(&b);
    let (e5, e4) = ("os::00256D-C5", "os::00256D-C4");
    let (c5, mut ev5) = v5_client(addr(&b, ListenerKind::V5), e5, |_| {}).await;
    let (c4, mut ev4) = v4_client(addr(&b, ListenerKind::V4), e4, |_| {}).await;
    c5.subscribe(format!("usp/agent/{e5}"), Q5::AtLeastOnce)
        .await
        .unwrap();
    c4.subscribe(format!("usp/agent/{e4}/#"), rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let _ = until(&mut ev5, |e| matches!(e, Ok(P5::SubAck(_)))).await;
    let _ = until(&mut ev4, |e| matches!(e, Ok(rumqttc::Packet::SubAck(_)))).await;

    let get = Bytes::from(wrap(&builder::get("g1", &["Device."], 0), CTL, e5).encode_to_vec());
    publisher
        .publish(
            &format!("usp/agent/{e5}"),
            get.clone(),
            Some(CTL_TOPIC),
            Some("usp.msg"),
        )
        .unwrap();
    let P5::Publish(p) = until(&mut ev5, |e| matches!(e, Ok(P5::Publish(_))))
        .await
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(p.payload, get);
    let props = p.properties.expect("properties");
    assert_eq!(props.response_topic.as_deref(), Some(CTL_TOPIC));
    assert_eq!(props.content_type.as_deref(), Some("usp.msg"));

    let topic4 = with_reply_to(&format!("usp/agent/{e4}"), CTL_TOPIC);
    let get = Bytes::from(wrap(&builder::get("g2", &["Device."], 0), CTL, e4).encode_to_vec());
    publisher.publish(&topic4, get.clone(), None, None).unwrap();
    let rumqttc::Packet::Publish(p) =
        until(&mut ev4, |e| matches!(e, Ok(rumqttc::Packet::Publish(_))))
            .await
            .unwrap()
    else {
        unreachable!()
    };
    assert_eq!((p.topic.as_str(), &p.payload), (topic4.as_str(), &get));
}

/// Publishes from several clones of the controller's publisher at once: queued behind one
/// router signal, none may be left waiting for a signal that never comes, and each clone's
/// messages keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_controller_publishes_all_arrive_in_order() {
    let (b, _t) = broker(|_| {}).await;
    let (publisher, _link) = controller_link(&b);
    let eid = "os::00256D-C6";
    let (c, mut ev) = v5_client(addr(&b, ListenerKind::V5), eid, |_| {}).await;
    c.subscribe(format!("usp/agent/{eid}"), Q5::AtLeastOnce)
        .await
        .unwrap();
    let _ = until(&mut ev, |e| matches!(e, Ok(P5::SubAck(_)))).await;
    let (writers, each) = (4, 30);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let p = publisher.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    let get = builder::get(&format!("{w}:{i}"), &["Device."], 0);
                    let payload = Bytes::from(wrap(&get, CTL, eid).encode_to_vec());
                    p.publish(&format!("usp/agent/{eid}"), payload, None, None)
                        .unwrap();
                    if i % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut next = vec![0; writers];
    for _ in 0..writers * each {
        let P5::Publish(p) = until(&mut ev, |e| matches!(e, Ok(P5::Publish(_))))
            .await
            .unwrap()
        else {
            unreachable!()
        };
        let decoded = uspwatch_proto::validate(&p.payload, &Default::default()).unwrap();
        let text = decoded
            .msg()
            .unwrap()
            .header
            .as_ref()
            .unwrap()
            .msg_id
            .clone();
        let (w, i) = text.split_once(':').unwrap();
        let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[w], "writer {w} out of order");
        next[w] += 1;
    }
    assert_eq!(next, vec![each; writers]);
}

#[tokio::test]
async fn invalid_records_are_acked_quarantined_and_never_delivered() {
    let (b, _t) = broker(|c| c.max_record_size = 2048).await;
    let (_pubr, mut link) = controller_link(&b);
    let mut quarantine = b.quarantine();
    let eid = "os::00256D-D1";
    let (c, mut ev) = v5_client(addr(&b, ListenerKind::V5), eid, |_| {}).await;
    connack5(&mut ev).await;
    let usp = || PublishProperties {
        content_type: Some("usp.msg".into()),
        response_topic: Some(format!("usp/agent/{eid}")),
        ..Default::default()
    };
    let big = builder::value_change("m5", "s", false, "Device.X", &"x".repeat(4096));
    let cases: Vec<(&str, Bytes, PublishProperties)> = vec![
        (
            "from_id_mismatch",
            notify("m1", "os::00256D-D2", CTL),
            usp(),
        ),
        ("to_id_mismatch", notify("m2", eid, "self::other"), usp()),
        (
            "undecodable",
            Bytes::from_static(b"\x0a\xff\xff\xff\xff"),
            usp(),
        ),
        (
            "too_large",
            Bytes::from(wrap(&big, eid, CTL).encode_to_vec()),
            usp(),
        ),
        (
            "wrong_content_type",
            notify("m3", eid, CTL),
            PublishProperties {
                content_type: Some("application/json".into()),
                ..usp()
            },
        ),
    ];
    for (reason, payload, props) in &cases {
        c.publish_with_properties(
            CTL_TOPIC,
            Q5::AtLeastOnce,
            false,
            payload.clone(),
            props.clone(),
        )
        .await
        .unwrap();
        let _ = until(&mut ev, |e| matches!(e, Ok(P5::PubAck(_)))).await;
        let q = tokio::time::timeout(WAIT, quarantine.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&q.reason, reason);
        assert_eq!((q.endpoint_id.as_str(), q.topic.as_str()), (eid, CTL_TOPIC));
        assert_eq!(q.size, payload.len());
    }
    // A valid record sent last is the first thing the controller sees: none of the above
    // was delivered ahead of it.
    let good = notify("ok", eid, CTL);
    c.publish_with_properties(CTL_TOPIC, Q5::AtLeastOnce, false, good.clone(), usp())
        .await
        .unwrap();
    let d = tokio::time::timeout(WAIT, link.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.payload, good);
    assert!(link.try_recv().is_err());
    let s = b.stats();
    assert_eq!((s.records_rejected, s.records_accepted), (5, 1));
}

#[tokio::test]
async fn v311_publish_without_reply_to_is_quarantined() {
    let (b, _t) = broker(|_| {}).await;
    let mut quarantine = b.quarantine();
    let eid = "os::00256D-D3";
    let (c, mut ev) = v4_client(addr(&b, ListenerKind::V4), eid, |_| {}).await;
    let _ = until(&mut ev, |e| matches!(e, Ok(rumqttc::Packet::ConnAck(_)))).await;
    c.publish(
        CTL_TOPIC,
        rumqttc::QoS::AtLeastOnce,
        false,
        notify("m", eid, CTL).to_vec(),
    )
    .await
    .unwrap();
    let _ = until(&mut ev, |e| matches!(e, Ok(rumqttc::Packet::PubAck(_)))).await;
    let q = tokio::time::timeout(WAIT, quarantine.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q.reason, "missing_reply_to");
}

#[tokio::test]
async fn acl_matrix() {
    use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as R;
    let (b, _t) = broker(|_| {}).await;
    let (_pubr, mut link) = controller_link(&b);
    let (ea, eb) = ("os::00256D-E1", "os::00256D-E2");
    let (a, mut eva) = v5_client(addr(&b, ListenerKind::V5), ea, |_| {}).await;
    let (bb, mut evb) = v5_client(addr(&b, ListenerKind::V5), eb, |_| {}).await;
    connack5(&mut eva).await;
    connack5(&mut evb).await;
    bb.subscribe(format!("usp/agent/{eb}"), Q5::AtLeastOnce)
        .await
        .unwrap();
    let _ = until(&mut evb, |e| matches!(e, Ok(P5::SubAck(_)))).await;

    for (filter, ok) in [
        (format!("usp/agent/{eb}"), false),
        ("#".to_string(), false),
        ("usp/agent/+".to_string(), false),
        ("usp/#".to_string(), false),
        (format!("usp/agent/{ea}"), true),
    ] {
        a.subscribe(filter.clone(), Q5::AtLeastOnce).await.unwrap();
        let Ok(P5::SubAck(ack)) = until(&mut eva, |e| matches!(e, Ok(P5::SubAck(_)))).await else {
            unreachable!()
        };
        let granted = matches!(ack.return_codes[..], [R::Success(_)]);
        assert_eq!(granted, ok, "{filter}: {:?}", ack.return_codes);
        if !ok {
            assert_eq!(ack.return_codes, vec![R::NotAuthorized], "{filter}");
        }
    }
    // A publish to another agent's topic is acked but reaches nobody.
    let forged = Bytes::from(wrap(&builder::get("g", &["Device."], 0), ea, eb).encode_to_vec());
    a.publish(format!("usp/agent/{eb}"), Q5::AtLeastOnce, false, forged)
        .await
        .unwrap();
    let _ = until(&mut eva, |e| matches!(e, Ok(P5::PubAck(_)))).await;
    let marker = notify("marker", ea, CTL);
    a.publish(CTL_TOPIC, Q5::AtLeastOnce, false, marker.clone())
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, link.recv())
            .await
            .unwrap()
            .unwrap()
            .payload,
        marker
    );
    assert!(evb.try_recv().is_err(), "agent B received something");
    assert_eq!(b.stats().acl_denied_publish, 1);
}

#[tokio::test]
async fn v311_refused_subscription_gets_0x80() {
    let (b, _t) = broker(|_| {}).await;
    let (c, mut ev) = v4_client(addr(&b, ListenerKind::V4), "os::00256D-E3", |_| {}).await;
    c.subscribe("usp/agent/+", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let Ok(rumqttc::Packet::SubAck(ack)) =
        until(&mut ev, |e| matches!(e, Ok(rumqttc::Packet::SubAck(_)))).await
    else {
        unreachable!()
    };
    assert_eq!(
        ack.return_codes,
        vec![rumqttc::SubscribeReasonCode::Failure]
    );
}

#[tokio::test]
async fn authentication_failures_are_refused() {
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as C;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials.toml");
    let hash = uspwatch_broker::hash_password("right").unwrap();
    std::fs::write(
        &creds,
        format!("[[client]]\nusername = \"cpe\"\npassword_hash = \"{hash}\"\nendpoint_id = \"os::00256D-F1\"\nrole = \"agent\"\n"),
    )
    .unwrap();
    let (b, _t) = broker(|c| {
        c.allow_anonymous = false;
        c.credentials_file = Some(creds.clone());
    })
    .await;
    let a = addr(&b, ListenerKind::V5);
    let code = |creds: Option<(&'static str, &'static str)>, cid: &'static str| async move {
        let (_c, mut ev) = v5_client(a, cid, |o| {
            if let Some((u, p)) = creds {
                o.set_credentials(u, p);
            }
        })
        .await;
        match until(&mut ev, |e| matches!(e, Ok(P5::ConnAck(_)) | Err(_))).await {
            Ok(P5::ConnAck(c)) => c.code,
            Err(e) if e.contains("BadUserNamePassword") => C::BadUserNamePassword,
            Err(e) if e.contains("NotAuthorized") => C::NotAuthorized,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code(None, "os::00256D-F1").await, C::NotAuthorized);
    assert_eq!(
        code(Some(("cpe", "wrong")), "x1").await,
        C::BadUserNamePassword
    );
    assert_eq!(
        code(Some(("nobody", "right")), "x2").await,
        C::BadUserNamePassword
    );
    assert_eq!(
        code(Some(("cpe", "right")), "os::00256D-F9").await,
        C::NotAuthorized
    );
    assert_eq!(code(Some(("cpe", "right")), "x3").await, C::Success);

    let mut s = raw_connect(addr(&b, ListenerKind::V4), false, "os::00256D-F1", None).await;
    let mut ack = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut s, &mut ack)
        .await
        .unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x05], "3.1.1 not authorized");
    assert!(b.stats().connects_refused >= 5);
}

#[tokio::test]
async fn request_response_round_trip_is_fast() {
    let (b, _t) = broker(|_| {}).await;
    let (publisher, mut link) = controller_link(&b);
    tokio::spawn(async move {
        while let Some(d) = link.recv().await {
            if let Some(reply) = d.response_topic {
                let r = uspwatch_proto::validate(&d.payload, &Default::default()).unwrap();
                let resp = builder::notify_resp("m", "sub-1");
                let resp = Bytes::from(wrap(&resp, CTL, &r.record.from_id).encode_to_vec());
                let _ = publisher.publish(&reply, resp, Some(CTL_TOPIC), Some("usp.msg"));
            }
        }
    });
    let eid = "os::00256D-G1";
    let topic = format!("usp/agent/{eid}");
    let (c, mut ev) = v5_client(addr(&b, ListenerKind::V5), eid, |_| {}).await;
    c.subscribe(&topic, Q5::AtMostOnce).await.unwrap();
    let _ = until(&mut ev, |e| matches!(e, Ok(P5::SubAck(_)))).await;
    let mut rtts = Vec::new();
    for i in 0..40 {
        let props = PublishProperties {
            response_topic: Some(topic.clone()),
            content_type: Some("usp.msg".into()),
            ..Default::default()
        };
        let start = Instant::now();
        c.publish_with_properties(
            CTL_TOPIC,
            Q5::AtMostOnce,
            false,
            notify(&format!("m{i}"), eid, CTL),
            props,
        )
        .await
        .unwrap();
        let _ = until(&mut ev, |e| matches!(e, Ok(P5::Publish(_)))).await;
        rtts.push(start.elapsed());
    }
    rtts.sort();
    let p50 = rtts[rtts.len() / 2];
    assert!(
        p50 < Duration::from_millis(15),
        "round trip p50 {p50:?} (Nagle?)"
    );
}

const EXT: &str = "self::external";
const EXT_TOPIC: &str = "usp/controller/self::external";

#[tokio::test]
async fn bulk_data_and_encrypted_records_pass_without_payload_decoding() {
    use uspwatch_proto::pb::usp_record::record::RecordType;
    let (b, _t) = broker(|c| c.topics.bulk_data_topics = vec!["bulk/+/report".into()]).await;
    // An external controller's topic, watched by an in-process observer: E2E Records between
    // an agent and a controller that is not in-process pass untouched.
    let (_p, mut link) = b.local_link("observer", &[EXT_TOPIC.to_string()]).unwrap();
    let (_p2, mut bulk) = b.local_link("collector", &["bulk/#".to_string()]).unwrap();
    let eid = "os::00256D-J1";
    let (c, mut ev) = v5_client(addr(&b, ListenerKind::V5), eid, |_| {}).await;
    connack5(&mut ev).await;

    let report = Bytes::from_static(br#"{"Report":[{"Device.DeviceInfo.UpTime":42}]}"#);
    let props = PublishProperties {
        content_type: Some("application/json; charset=UTF-8".into()),
        ..Default::default()
    };
    c.publish_with_properties(
        "bulk/j1/report",
        Q5::AtLeastOnce,
        false,
        report.clone(),
        props,
    )
    .await
    .unwrap();
    let d = tokio::time::timeout(WAIT, bulk.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.payload, report);

    let mut r = wrap(&builder::get("x", &["Device."], 0), eid, EXT);
    r.payload_security = 1;
    if let Some(RecordType::NoSessionContext(n)) = &mut r.record_type {
        n.payload = Bytes::from_static(b"\x17\x03\x03\x00\x10 opaque TLS record");
    }
    let e2e = Bytes::from(r.encode_to_vec());
    c.publish(EXT_TOPIC, Q5::AtLeastOnce, false, e2e.clone())
        .await
        .unwrap();
    let d = tokio::time::timeout(WAIT, link.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.payload, e2e);
    assert_eq!((b.stats().bulk_data, b.stats().records_accepted), (1, 1));
}
