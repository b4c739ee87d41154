//! A lean MQTT 5 client for load generation: one socket, one read buffer, no request queue
//! and no background task, so thousands of agents cost little besides their sockets. The
//! socket is bound to a chosen 127.0.0.x source address before connecting, which lifts the
//! ephemeral-port cap of a single source address.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use rumqttc::v5::mqttbytes::v5::{
    Connect, ConnectProperties, ConnectReturnCode, Filter, Packet, PingReq, PubAck, Publish,
    PublishProperties, Subscribe,
};
use rumqttc::v5::mqttbytes::{Error as MqttError, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Largest packet read; the controller's messages are small.
const MAX_PACKET: u32 = 1024 * 1024;
/// Longest wait for CONNACK / SUBACK.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// The `i`-th source address of `n` (127.0.0.2 …), skipping 127.0.0.1 which the listener uses.
pub fn source_addr(i: usize, n: usize) -> Ipv4Addr {
    let k = (i % n.clamp(1, 250)) as u8;
    Ipv4Addr::new(127, 0, 0, 2 + k)
}

/// An established MQTT 5 connection.
pub struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    next_pkid: u16,
}

impl Conn {
    /// TCP connect from `src`, CONNECT as `client_id`, and when `subscribe` is given, subscribe
    /// to it at QoS 1; returns once CONNACK (and SUBACK) arrived.
    pub async fn open(
        src: Ipv4Addr,
        broker: SocketAddr,
        client_id: &str,
        keep_alive: u16,
        subscribe: Option<&str>,
    ) -> anyhow::Result<Conn> {
        if !src.is_loopback() || !broker.ip().is_loopback() {
            bail!("the load generator uses loopback addresses only");
        }
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((src, 0))).context("bind")?;
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.connect(broker))
            .await
            .context("TCP connect timed out")?
            .context("TCP connect")?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            rbuf: BytesMut::with_capacity(256),
            wbuf: BytesMut::with_capacity(256),
            next_pkid: 0,
        };
        let mut props = ConnectProperties::new();
        props.user_properties = vec![(
            uspwatch_proto::mqtt::USER_PROPERTY_ENDPOINT_ID.to_string(),
            client_id.to_string(),
        )];
        let connect = Connect {
            keep_alive,
            client_id: client_id.to_string(),
            clean_start: true,
            properties: Some(props),
        };
        c.queue(&Packet::Connect(connect, None, None))?;
        c.flush().await?;
        tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            match c.read().await? {
                Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => Ok(()),
                Packet::ConnAck(a) => bail!("CONNACK {:?}", a.code),
                other => bail!("expected CONNACK, got {other:?}"),
            }
        })
        .await
        .context("CONNACK timed out")??;
        if let Some(topic) = subscribe {
            let pkid = c.pkid();
            let mut s = Subscribe::new(Filter::new(topic, QoS::AtLeastOnce), None);
            s.pkid = pkid;
            c.queue(&Packet::Subscribe(s))?;
            c.flush().await?;
            tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                loop {
                    match c.read().await? {
                        Packet::SubAck(a) if a.pkid == pkid => return Ok(()),
                        Packet::Disconnect(d) => bail!("disconnected: {:?}", d.reason_code),
                        _ => {}
                    }
                }
            })
            .await
            .context("SUBACK timed out")??;
        }
        Ok(c)
    }

    /// The next packet id (never 0).
    pub fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        self.next_pkid
    }

    /// Appends a packet to the write buffer.
    pub fn queue(&mut self, p: &Packet) -> anyhow::Result<()> {
        p.write(&mut self.wbuf, Some(MAX_PACKET))
            .map_err(|e| anyhow::anyhow!("encode: {e:?}"))?;
        Ok(())
    }

    /// Queues a QoS 1 USP publish with the TR-369 properties; returns its packet id.
    pub fn queue_usp(
        &mut self,
        topic: &str,
        payload: Bytes,
        reply_to: &str,
    ) -> anyhow::Result<u16> {
        let pkid = self.pkid();
        let props = PublishProperties {
            content_type: Some(uspwatch_proto::mqtt::CONTENT_TYPE.to_string()),
            response_topic: Some(reply_to.to_string()),
            ..Default::default()
        };
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload, Some(props));
        p.pkid = pkid;
        self.queue(&Packet::Publish(p))?;
        Ok(pkid)
    }

    /// Queues a PINGREQ.
    pub fn queue_ping(&mut self) -> anyhow::Result<()> {
        self.queue(&Packet::PingReq(PingReq))
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Reads the next packet. Cancel-safe: partial reads stay in the buffer. A QoS 1 publish
    /// from the broker is acknowledged (queued; sent with the next flush).
    pub async fn read(&mut self) -> anyhow::Result<Packet> {
        loop {
            match Packet::read(&mut self.rbuf, Some(MAX_PACKET)) {
                Ok(p) => {
                    if let Packet::Publish(ref pb) = p
                        && pb.qos == QoS::AtLeastOnce
                    {
                        self.queue(&Packet::PubAck(PubAck::new(pb.pkid, None)))?;
                    }
                    return Ok(p);
                }
                Err(MqttError::InsufficientBytes(_)) => {}
                Err(e) => bail!("decode: {e:?}"),
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                bail!("connection closed by the broker");
            }
        }
    }
}
