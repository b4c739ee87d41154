//! Hostile clients lose their own connection; everyone else keeps being served.

#[path = "support/helpers.rs"]
mod support;

use bytes::{BufMut, BytesMut};
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet as P5, SubscribeReasonCode};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uspwatch_broker::{Broker, ListenerKind};

/// A well-behaved agent's Notify still reaches the controller.
async fn still_serving(
    b: &Broker,
    link: &mut tokio::sync::mpsc::Receiver<uspwatch_broker::Delivery>,
    eid: &str,
) {
    let (c, mut ev) = v5_client(addr(b, ListenerKind::V5), eid, |_| {}).await;
    connack5(&mut ev).await;
    let record = notify("alive", eid, CTL);
    c.publish(CTL_TOPIC, Q5::AtLeastOnce, false, record.clone())
        .await
        .unwrap();
    let d = tokio::time::timeout(WAIT, link.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.payload, record);
    c.disconnect().await.unwrap();
}

#[tokio::test]
async fn hostile_clients_are_cut_off_and_others_keep_working() {
    let (b, _t) = broker(|c| c.max_packet_size = 64 * 1024).await;
    let (_p, mut link) = controller_link(&b);
    let v5 = addr(&b, ListenerKind::V5);

    // Garbage instead of CONNECT.
    let mut s = tokio::net::TcpStream::connect(v5).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\xff\xfe\x00garbage")
        .await
        .unwrap();
    closed_by_peer(&mut s).await;
    still_serving(&b, &mut link, "os::00256D-H1").await;

    // A CONNECT announcing a 200 KB client id.
    let mut s = tokio::net::TcpStream::connect(v5).await.unwrap();
    let id = vec![b'a'; 200 * 1024];
    let mut body = BytesMut::new();
    body.put_slice(&[
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x1e, 0x00,
    ]);
    body.put_u16(0xffff);
    body.put_slice(&id);
    let mut pkt = BytesMut::new();
    pkt.put_u8(0x10);
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        pkt.put_u8(byte);
        if len == 0 {
            break;
        }
    }
    pkt.put_slice(&body);
    let _ = s.write_all(&pkt).await;
    closed_by_peer(&mut s).await;
    still_serving(&b, &mut link, "os::00256D-H2").await;

    // 10,000 subscriptions from one client: all refused, the connection stays usable.
    let eid = "os::00256D-H3";
    let (c, mut ev) = v5_client(v5, eid, |o| {
        o.set_max_packet_size(Some(1024 * 1024));
    })
    .await;
    connack5(&mut ev).await;
    let filters: Vec<Filter> = (0..10_000)
        .map(|i| Filter::new(format!("usp/agent/os::00256D-X{i}"), Q5::AtMostOnce))
        .collect();
    for chunk in filters.chunks(1000) {
        c.subscribe_many(chunk.to_vec()).await.unwrap();
    }
    let mut refused = 0;
    while refused < 10_000 {
        let Ok(P5::SubAck(ack)) = until(&mut ev, |e| matches!(e, Ok(P5::SubAck(_)) | Err(_))).await
        else {
            panic!("connection lost");
        };
        assert!(
            ack.return_codes
                .iter()
                .all(|c| *c == SubscribeReasonCode::NotAuthorized)
        );
        refused += ack.return_codes.len();
    }
    assert_eq!(b.stats().acl_denied_subscribe, 10_000);
    still_serving(&b, &mut link, "os::00256D-H4").await;

    // A PUBLISH over max_packet_size.
    let mut s = raw_connect(addr(&b, ListenerKind::V4), false, "os::00256D-H5", None).await;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
    let mut big = BytesMut::new();
    big.put_slice(&[0x30, 0x80, 0x80, 0x08]); // remaining length 131072
    big.put_u16(4);
    big.put_slice(b"usp/");
    big.put_slice(&vec![0u8; 4096]);
    let _ = s.write_all(&big).await;
    closed_by_peer(&mut s).await;
    still_serving(&b, &mut link, "os::00256D-H6").await;
}

#[tokio::test]
async fn session_takeover_and_socket_loss_are_reported() {
    let (b, _t) = broker(|_| {}).await;
    let mut presence = b.presence();
    let eid = "os::00256D-I1";
    let mut first = raw_connect(addr(&b, ListenerKind::V4), false, eid, None).await;
    let mut ack = [0u8; 4];
    first.read_exact(&mut ack).await.unwrap();
    assert_eq!(presence.recv().await.unwrap().reason, "connect");
    let mut second = raw_connect(addr(&b, ListenerKind::V4), false, eid, None).await;
    second.read_exact(&mut ack).await.unwrap();
    let mut reasons = vec![
        presence.recv().await.unwrap().reason,
        presence.recv().await.unwrap().reason,
    ];
    reasons.sort();
    assert_eq!(reasons, vec!["connect", "session_taken_over"]);
    closed_by_peer(&mut first).await;
    drop(second);
    let p = presence.recv().await.unwrap();
    assert_eq!(
        (p.endpoint_id.as_str(), p.reason.as_str()),
        (eid, "socket_closed")
    );
}

#[tokio::test]
async fn silent_clients_hit_the_keep_alive_timeout() {
    let (b, _t) = broker(|c| {
        c.keep_alive_min = std::time::Duration::from_secs(1);
        c.keep_alive_max = std::time::Duration::from_secs(1);
    })
    .await;
    let mut presence = b.presence();
    let mut s = raw_connect(addr(&b, ListenerKind::V5), true, "os::00256D-K1", None).await;
    let mut ack = [0u8; 2];
    s.read_exact(&mut ack).await.unwrap();
    assert_eq!(presence.recv().await.unwrap().reason, "connect");
    let p = tokio::time::timeout(WAIT, presence.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.endpoint_id.as_str(), p.reason.as_str()),
        ("os::00256D-K1", "keep_alive_timeout")
    );
    closed_by_peer(&mut s).await;
}
