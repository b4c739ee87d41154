//! Shared helpers for the broker's integration tests: a broker on 127.0.0.1:0, rumqttc
//! clients whose events arrive on a channel, and USP Records.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::{Connect, ConnectProperties, Login, Packet, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uspwatch_broker::{Broker, BrokerConfig, ListenerKind};
use uspwatch_proto::{Message, builder, wrap};

pub const CTL: &str = "self::ctl";
pub const CTL_TOPIC: &str = "usp/controller/self::ctl";
pub const WAIT: Duration = Duration::from_secs(10);

pub fn local() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 0)))
}

pub async fn broker(f: impl FnOnce(&mut BrokerConfig)) -> (Broker, CancellationToken) {
    let mut c = BrokerConfig::default();
    c.listeners.v5 = local();
    c.listeners.v311 = local();
    c.allow_anonymous = true;
    f(&mut c);
    let token = CancellationToken::new();
    let b = Broker::start(c, token.clone())
        .await
        .expect("broker starts");
    (b, token)
}

pub fn addr(b: &Broker, kind: ListenerKind) -> SocketAddr {
    b.local_addrs()
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, a)| a)
        .expect("listener")
}

/// A Notify (ValueChange) Record from `from` to `to`.
pub fn notify(msg_id: &str, from: &str, to: &str) -> Bytes {
    let m = builder::value_change(
        msg_id,
        "sub-1",
        true,
        "Device.WiFi.Radio.1.Stats.Noise",
        "-71",
    );
    Bytes::from(wrap(&m, from, to).encode_to_vec())
}

pub fn controller_link(
    b: &Broker,
) -> (
    uspwatch_broker::LinkPublisher,
    mpsc::Receiver<uspwatch_broker::Delivery>,
) {
    b.local_link(CTL, &[CTL_TOPIC.to_string(), format!("{CTL_TOPIC}/#")])
        .expect("local link")
}

pub type V5Event = Result<rumqttc::v5::mqttbytes::v5::Packet, String>;
pub type V4Event = Result<rumqttc::Packet, String>;

pub async fn v5_client(
    a: SocketAddr,
    client_id: &str,
    tweak: impl FnOnce(&mut rumqttc::v5::MqttOptions),
) -> (rumqttc::v5::AsyncClient, mpsc::UnboundedReceiver<V5Event>) {
    let mut o = rumqttc::v5::MqttOptions::new(client_id, a.ip().to_string(), a.port());
    o.set_keep_alive(Duration::from_secs(30));
    tweak(&mut o);
    let (client, mut el) = rumqttc::v5::AsyncClient::new(o, 20_000);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(rumqttc::v5::Event::Incoming(p)) => {
                    if tx.send(Ok(p)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    (client, rx)
}

pub async fn v4_client(
    a: SocketAddr,
    client_id: &str,
    tweak: impl FnOnce(&mut rumqttc::MqttOptions),
) -> (rumqttc::AsyncClient, mpsc::UnboundedReceiver<V4Event>) {
    let mut o = rumqttc::MqttOptions::new(client_id, a.ip().to_string(), a.port());
    o.set_keep_alive(Duration::from_secs(30));
    tweak(&mut o);
    let (client, mut el) = rumqttc::AsyncClient::new(o, 1000);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(p)) => {
                    if tx.send(Ok(p)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    (client, rx)
}

/// The first item that satisfies `f`, within [`WAIT`].
pub async fn until<T>(rx: &mut mpsc::UnboundedReceiver<T>, mut f: impl FnMut(&T) -> bool) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let item = rx.recv().await.expect("event stream ended");
            if f(&item) {
                return item;
            }
        }
    })
    .await
    .expect("expected event did not arrive in time")
}

/// Waits for the CONNACK of a v5 client and returns it.
pub async fn connack5(
    rx: &mut mpsc::UnboundedReceiver<V5Event>,
) -> rumqttc::v5::mqttbytes::v5::ConnAck {
    use rumqttc::v5::mqttbytes::v5::Packet;
    match until(rx, |e| matches!(e, Ok(Packet::ConnAck(_)) | Err(_))).await {
        Ok(Packet::ConnAck(c)) => c,
        other => panic!("no CONNACK: {other:?}"),
    }
}

/// Opens a raw TCP connection and sends an MQTT CONNECT written with rumqttd's codec.
pub async fn raw_connect(
    a: SocketAddr,
    v5: bool,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(a).await.expect("connect");
    let connect = Packet::Connect(
        Connect {
            keep_alive: 30,
            client_id: client_id.to_string(),
            clean_session: true,
        },
        v5.then(|| ConnectProperties {
            session_expiry_interval: None,
            receive_maximum: None,
            max_packet_size: None,
            topic_alias_max: None,
            request_response_info: None,
            request_problem_info: None,
            user_properties: vec![],
            authentication_method: None,
            authentication_data: None,
        }),
        None,
        None,
        login.map(|(u, p)| Login {
            username: u.into(),
            password: p.into(),
        }),
    );
    let mut buf = BytesMut::new();
    if v5 {
        rumqttd::protocol::v5::V5
            .write(connect, &mut buf)
            .expect("encode");
    } else {
        rumqttd::protocol::v4::V4
            .write(connect, &mut buf)
            .expect("encode");
    }
    s.write_all(&buf).await.expect("write");
    s
}

/// Reads until the peer closes the socket (or resets it); panics if it stays open.
pub async fn closed_by_peer<S: tokio::io::AsyncRead + Unpin>(s: &mut S) {
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("broker kept the connection open");
}
