//! MQTT conformance on refusals, slow consumers, the per-device ingress limit and Records the
//! built-in controller cannot handle, seen from raw sockets and real clients.

#[path = "support/helpers.rs"]
mod support;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode as C, DisconnectReasonCode as D, Packet as P5, PubAckReason,
};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uspwatch_broker::ListenerKind;
use uspwatch_proto::mqtt::USER_PROPERTY_ENDPOINT_ID;
use uspwatch_proto::pb::usp_record::SessionContextRecord;
use uspwatch_proto::pb::usp_record::record::RecordType;
use uspwatch_proto::{Message, builder, wrap};

/// The next MQTT 5 packet from a raw socket; `None` once the broker closed it.
async fn next_packet(s: &mut TcpStream, buf: &mut BytesMut) -> Option<P5> {
    tokio::time::timeout(WAIT, async {
        loop {
            if !buf.is_empty()
                && let Ok(p) = rumqttc::v5::mqttbytes::v5::Packet::read(buf, None)
            {
                return Some(p);
            }
            match s.read_buf(buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("no packet and no close in time")
}

/// A connected raw MQTT 5 client bound to `eid`.
async fn raw_v5(a: std::net::SocketAddr, eid: &str) -> (TcpStream, BytesMut) {
    let mut s = raw_connect(a, true, eid, None).await;
    let mut buf = BytesMut::new();
    match next_packet(&mut s, &mut buf).await {
        Some(P5::ConnAck(c)) => assert_eq!(c.code, C::Success),
        other => panic!("{other:?}"),
    }
    (s, buf)
}

/// The broker refuses what `bytes` carries: a DISCONNECT with a code ≥ 0x80 or a close.
async fn refused(s: &mut TcpStream, buf: &mut BytesMut, bytes: &[u8]) -> Option<D> {
    let _ = s.write_all(bytes).await;
    loop {
        match next_packet(s, buf).await {
            Some(P5::Disconnect(d)) => return Some(d.reason_code),
            None => return None,
            Some(P5::SubAck(_) | P5::UnsubAck(_)) => panic!("answered {bytes:02x?} as valid"),
            Some(_) => {}
        }
    }
}

#[tokio::test]
async fn a_packet_over_the_maximum_packet_size_gets_disconnect_0x95() {
    let (b, _t) = broker(|c| c.max_packet_size = 1024).await;
    let (mut s, mut buf) = raw_v5(addr(&b, ListenerKind::V5), "os::00256D-M1").await;
    // 1027 bytes in all: the remaining length alone (1024) is within the limit.
    let mut p = BytesMut::new();
    p.put_slice(&[0x30, 0x80, 0x08]);
    p.put_u16(4);
    p.put_slice(b"usp/");
    p.put_u8(0);
    p.resize(1027, b'x');
    assert_eq!(refused(&mut s, &mut buf, &p).await, Some(D::PacketTooLarge));
}

#[tokio::test]
async fn malformed_fixed_headers_and_empty_unsubscribe_end_the_connection() {
    let (b, _t) = broker(|_| {}).await;
    let a = addr(&b, ListenerKind::V5);
    let eid = "os::00256D-M2";
    let filter = format!("usp/agent/{eid}");
    let sub = |first: u8| {
        let mut p = BytesMut::new();
        p.put_u8(first);
        p.put_u8(u8::try_from(2 + 1 + 2 + filter.len() + 1).unwrap());
        p.put_u16(1);
        p.put_u8(0);
        p.put_u16(u16::try_from(filter.len()).unwrap());
        p.put_slice(filter.as_bytes());
        p.put_u8(1);
        p
    };
    let unsub = |first: u8| {
        let mut p = BytesMut::new();
        p.put_u8(first);
        p.put_u8(u8::try_from(2 + 1 + 2 + filter.len()).unwrap());
        p.put_u16(1);
        p.put_u8(0);
        p.put_u16(u16::try_from(filter.len()).unwrap());
        p.put_slice(filter.as_bytes());
        p
    };
    for (what, bytes, code) in [
        ("SUBSCRIBE flags 0000", sub(0x80), D::MalformedPacket),
        ("SUBSCRIBE flags 0011", sub(0x83), D::MalformedPacket),
        ("UNSUBSCRIBE flags 0000", unsub(0xa0), D::MalformedPacket),
        (
            "UNSUBSCRIBE without filters",
            BytesMut::from(&[0xa2u8, 0x03, 0x00, 0x01, 0x00][..]),
            D::ProtocolError,
        ),
    ] {
        let (mut s, mut buf) = raw_v5(a, eid).await;
        let got = refused(&mut s, &mut buf, &bytes).await;
        assert!(got.is_none() || got == Some(code), "{what}: {got:?}");
        if let Some(c) = got {
            assert_eq!(c, code, "{what}");
        }
    }
    // A well-formed SUBSCRIBE still works.
    let (mut s, mut buf) = raw_v5(a, eid).await;
    s.write_all(&sub(0x82)).await.unwrap();
    assert!(matches!(
        next_packet(&mut s, &mut buf).await,
        Some(P5::SubAck(_))
    ));
}

#[tokio::test]
async fn connect_with_the_reserved_flag_is_refused() {
    let (b, _t) = broker(|_| {}).await;
    for (v5, listener) in [(true, ListenerKind::V5), (false, ListenerKind::V4)] {
        let eid = b"os::00256D-M3";
        let mut p = BytesMut::new();
        p.put_u8(0x10);
        let props_len = usize::from(v5);
        p.put_u8(u8::try_from(10 + props_len + 2 + eid.len()).unwrap());
        p.put_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T']);
        p.put_u8(if v5 { 5 } else { 4 });
        p.put_u8(0x03); // clean start + the reserved bit
        p.put_u16(30);
        if v5 {
            p.put_u8(0);
        }
        p.put_u16(u16::try_from(eid.len()).unwrap());
        p.put_slice(eid);
        let mut s = TcpStream::connect(addr(&b, listener)).await.unwrap();
        s.write_all(&p).await.unwrap();
        let mut ack = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut ack)).await;
        // Either closed at once, or a refusing CONNACK (MQTT 5 0x81) and then closed.
        assert!(
            ack.is_empty() || (ack[0] == 0x20 && ack.get(3).is_some_and(|c| *c >= 0x80)),
            "v5={v5}: {ack:02x?}"
        );
    }
}

#[tokio::test]
async fn a_publish_refused_by_the_acl_gets_puback_0x87() {
    let (b, _t) = broker(|_| {}).await;
    let (ea, eb) = ("os::00256D-M4", "os::00256D-M5");
    let (a, mut ev) = v5_client(addr(&b, ListenerKind::V5), ea, |_| {}).await;
    connack5(&mut ev).await;
    let forged = Bytes::from(wrap(&builder::get("g", &["Device."], 0), ea, eb).encode_to_vec());
    a.publish(format!("usp/agent/{eb}"), Q5::AtLeastOnce, false, forged)
        .await
        .unwrap();
    let Ok(P5::PubAck(ack)) = until(&mut ev, |e| matches!(e, Ok(P5::PubAck(_)) | Err(_))).await
    else {
        panic!("no PUBACK")
    };
    assert_eq!(ack.reason, PubAckReason::NotAuthorized);
    // An accepted publish is still acknowledged with success.
    a.publish(CTL_TOPIC, Q5::AtLeastOnce, false, notify("m", ea, CTL))
        .await
        .unwrap();
    let Ok(P5::PubAck(ack)) = until(&mut ev, |e| matches!(e, Ok(P5::PubAck(_)) | Err(_))).await
    else {
        panic!("no PUBACK")
    };
    assert_eq!(ack.reason, PubAckReason::Success);
}

#[tokio::test]
async fn disagreeing_endpoint_id_properties_are_refused() {
    let (b, _t) = broker(|_| {}).await;
    let (_c, mut ev) = v5_client(addr(&b, ListenerKind::V5), "cpe-m6", |o| {
        o.set_user_properties(vec![
            (USER_PROPERTY_ENDPOINT_ID.into(), "os::00256D-M6".into()),
            (USER_PROPERTY_ENDPOINT_ID.into(), "os::00256D-M7".into()),
        ]);
    })
    .await;
    match until(&mut ev, |e| matches!(e, Ok(P5::ConnAck(_)) | Err(_))).await {
        Ok(P5::ConnAck(c)) => assert_eq!(c.code, C::NotAuthorized),
        Err(e) => assert!(e.contains("NotAuthorized"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.stats().connects_accepted, 0);
}

/// A raw MQTT 5 subscriber to its agent topic with a tiny receive buffer that never reads.
async fn stalled_subscriber(b: &uspwatch_broker::Broker, eid: &str) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(addr(b, ListenerKind::V5)).await.unwrap();
    let mut connect = BytesMut::new();
    let packet = rumqttd::protocol::Packet::Connect(
        rumqttd::protocol::Connect {
            keep_alive: 30,
            client_id: eid.to_string(),
            clean_session: true,
        },
        None,
        None,
        None,
        None,
    );
    rumqttd::protocol::Protocol::write(&rumqttd::protocol::v5::V5, packet, &mut connect).unwrap();
    s.write_all(&connect).await.unwrap();
    let mut buf = BytesMut::new();
    assert!(matches!(
        next_packet(&mut s, &mut buf).await,
        Some(P5::ConnAck(_))
    ));
    let filter = format!("usp/agent/{eid}");
    let mut sub = BytesMut::new();
    sub.put_u8(0x82);
    sub.put_u8(u8::try_from(2 + 1 + 2 + filter.len() + 1).unwrap());
    sub.put_u16(1);
    sub.put_u8(0);
    sub.put_u16(u16::try_from(filter.len()).unwrap());
    sub.put_slice(filter.as_bytes());
    sub.put_u8(0);
    s.write_all(&sub).await.unwrap();
    assert!(matches!(
        next_packet(&mut s, &mut buf).await,
        Some(P5::SubAck(_))
    ));
    s
}

/// Publishes large requests to `eid` until the presence stream reports its disconnect.
async fn flood_until_gone(b: &uspwatch_broker::Broker, eid: &str) -> uspwatch_proto::PresenceEvent {
    let (publisher, _link) = controller_link(b);
    let mut presence = b.presence();
    let big = "Device.".to_string() + &"X".repeat(60 * 1024);
    let get = Bytes::from(wrap(&builder::get("big", &[big.as_str()], 0), CTL, eid).encode_to_vec());
    let topic = format!("usp/agent/{eid}");
    tokio::time::timeout(WAIT, async {
        loop {
            let _ = publisher.publish(&topic, get.clone(), Some(CTL_TOPIC), Some("usp.msg"));
            match tokio::time::timeout(Duration::from_millis(5), presence.recv()).await {
                Ok(Ok(p)) if p.endpoint_id == eid && p.reason != "connect" => return p,
                _ => {}
            }
        }
    })
    .await
    .expect("the stalled subscriber kept its connection")
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_disconnected() {
    let (b, _t) = broker(|c| {
        c.write_timeout = Duration::from_secs(1);
        c.router.max_segment_size = 1024 * 1024;
    })
    .await;
    let eid = "os::00256D-M8";
    let _s = stalled_subscriber(&b, eid).await;
    let p = flood_until_gone(&b, eid).await;
    assert_eq!(p.reason, "write_timeout");
}

#[tokio::test]
async fn keep_alive_holds_while_a_write_is_blocked() {
    let (b, _t) = broker(|c| {
        c.write_timeout = Duration::from_secs(600);
        c.keep_alive_min = Duration::from_secs(1);
        c.keep_alive_max = Duration::from_secs(1);
        c.router.max_segment_size = 1024 * 1024;
    })
    .await;
    let eid = "os::00256D-M9";
    let _s = stalled_subscriber(&b, eid).await;
    let p = flood_until_gone(&b, eid).await;
    assert_eq!(p.reason, "keep_alive_timeout");
}

#[tokio::test]
async fn a_flooding_device_is_rate_limited_and_others_keep_being_served() {
    let (b, _t) = broker(|c| {
        c.ingress_rate = 5;
        c.ingress_burst = 5;
    })
    .await;
    let (_p, mut link) = controller_link(&b);
    let mut q = b.quarantine();
    let flood = "os::00256D-MA";
    let (c, mut ev) = v5_client(addr(&b, ListenerKind::V5), flood, |_| {}).await;
    connack5(&mut ev).await;
    for i in 0..50 {
        c.publish(
            CTL_TOPIC,
            Q5::AtLeastOnce,
            false,
            notify(&format!("f{i}"), flood, CTL),
        )
        .await
        .unwrap();
    }
    let mut quota = 0;
    for _ in 0..50 {
        let Ok(P5::PubAck(ack)) = until(&mut ev, |e| matches!(e, Ok(P5::PubAck(_)) | Err(_))).await
        else {
            panic!("connection lost")
        };
        if ack.reason == PubAckReason::QuotaExceeded {
            quota += 1;
        }
    }
    assert!(quota >= 40, "only {quota} of 50 refused");
    let e = tokio::time::timeout(WAIT, q.recv()).await.unwrap().unwrap();
    assert_eq!(
        (e.reason.as_str(), e.endpoint_id.as_str()),
        ("rate_limited", flood)
    );
    let mut reports = 1;
    while q.try_recv().is_ok() {
        reports += 1;
    }
    assert!(
        reports <= 5,
        "{reports} quarantine events: one per second, not one per publish"
    );
    let mut delivered = 0;
    while tokio::time::timeout(Duration::from_millis(200), link.recv())
        .await
        .is_ok()
    {
        delivered += 1;
    }
    assert!(delivered <= 10, "{delivered} flood records delivered");
    assert!(b.stats().records_rejected >= 40);

    // Another device is not affected.
    let other = "os::00256D-MB";
    let (c2, mut ev2) = v5_client(addr(&b, ListenerKind::V5), other, |_| {}).await;
    connack5(&mut ev2).await;
    let rec = notify("o1", other, CTL);
    c2.publish(CTL_TOPIC, Q5::AtLeastOnce, false, rec.clone())
        .await
        .unwrap();
    let d = tokio::time::timeout(WAIT, link.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.payload, rec);
}

fn session_context(from: &str, to: &str) -> Bytes {
    let msg = builder::value_change("sc", "sub-1", true, "Device.X", "1");
    let mut r = wrap(&msg, from, to);
    r.record_type = Some(RecordType::SessionContext(SessionContextRecord {
        session_id: 9,
        sequence_id: 1,
        expected_id: 1,
        payload: vec![Bytes::from(msg.encode_to_vec())],
        ..Default::default()
    }));
    Bytes::from(r.encode_to_vec())
}

fn tls12(from: &str, to: &str) -> Bytes {
    // The payload is a plaintext Msg: nothing but payload_security says it is protected.
    let mut r = wrap(
        &builder::value_change("e2e", "sub-1", true, "Device.X", "1"),
        from,
        to,
    );
    r.payload_security = 1;
    Bytes::from(r.encode_to_vec())
}

#[tokio::test]
async fn e2e_and_session_context_records_for_the_built_in_controller_are_refused() {
    let (b, _t) = broker(|_| {}).await;
    let (_p, mut link) = controller_link(&b);
    let ext_topic = "usp/controller/self::ext";
    let (_o, mut observer) = b.local_link("observer", &[ext_topic.to_string()]).unwrap();
    let mut q = b.quarantine();
    let eid = "os::00256D-MC";
    let (c, mut ev) = v5_client(addr(&b, ListenerKind::V5), eid, |_| {}).await;
    connack5(&mut ev).await;

    for (payload, reason) in [
        (tls12(eid, CTL), "secure_session_not_supported"),
        (session_context(eid, CTL), "session_context_not_supported"),
    ] {
        c.publish(CTL_TOPIC, Q5::AtLeastOnce, false, payload)
            .await
            .unwrap();
        let e = tokio::time::timeout(WAIT, q.recv()).await.unwrap().unwrap();
        assert_eq!(e.reason, reason);
    }
    // Between an agent and an external controller both pass untouched.
    for payload in [tls12(eid, "self::ext"), session_context(eid, "self::ext")] {
        c.publish(ext_topic, Q5::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
        let d = tokio::time::timeout(WAIT, observer.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.payload, payload);
    }
    let marker = notify("marker", eid, CTL);
    c.publish(CTL_TOPIC, Q5::AtLeastOnce, false, marker.clone())
        .await
        .unwrap();
    let d = tokio::time::timeout(WAIT, link.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.payload, marker, "a refused record reached the controller");
}
