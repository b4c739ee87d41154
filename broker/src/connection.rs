//! One client connection: our replacement for rumqttd's `RemoteLink`, with the USP hooks.
//!
//! Reads run through rumqttd's codec, then the ACL and Record validation, and only then go to
//! the router through the connection's `LinkTx`. Router notifications (forwards, acks) are
//! written back in batches. Keep-alive and the connection's end (presence, last will, the
//! router's cleanup) are handled here because the router cannot see the socket.

mod connect;
mod publish;
mod subscribe;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use futures::FutureExt;
use parking_lot::Mutex;
use rumqttd::Notification;
use rumqttd::protocol::{
    Disconnect, DisconnectReasonCode, Packet, PingResp, PubAckReason, Publish, PublishProperties,
    SubscribeReasonCode,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, warn};
use uspwatch_proto::{PresenceEvent, PresenceState, rfc3339_millis};

use crate::acl::Identity;
use crate::codec::{Codec, ReadError};
use crate::metrics;
use crate::ratelimit::Bucket;
use crate::state::{Counters, Shared, now_ms};

/// Rejected and refused publishes are re-targeted here so that the router acknowledges them
/// in order with the client's other publishes; `$` topics match no subscription, so nothing
/// is stored or delivered.
const QUARANTINE_TOPIC: &str = "$uspwatch/quarantine";
/// Most notifications written in one batch, and the write buffer size that also ends one
/// (bounds per-connection memory when messages are large).
const MAX_BATCH: usize = 512;
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Read buffer room for an idle or lightly loaded connection. Most devices send a Notify every
/// few minutes, so per-connection buffers dominate memory at fleet scale; busy connections grow
/// their reads up to [`READ_MAX`] and shrink back once their reads are small again.
const READ_MIN: usize = 1024;
const READ_MAX: usize = 64 * 1024;
/// A write buffer at most this large is kept between flushes; a larger one is given back.
const WRITE_KEEP: usize = 4 * 1024;
/// Time given to the last DISCONNECT and the socket shutdown of an ending connection.
const FINAL_WRITE: std::time::Duration = std::time::Duration::from_secs(1);
/// Most bytes read and discarded after a refused packet before the socket is closed.
const LINGER_BYTES: usize = 256 * 1024;

/// How a connection ended (a presence reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Disconnect,
    DisconnectWithWill,
    KeepAliveTimeout,
    /// Writes could not be drained within `write_timeout` (a subscriber that stopped reading).
    WriteTimeout,
    SocketClosed,
    /// A packet that breaks the MQTT encoding rules (MQTT 5: DISCONNECT 0x81).
    Malformed,
    ProtocolError,
    PacketTooLarge,
    TakenOver,
    RouterDropped,
    Shutdown,
}

impl End {
    fn reason(self) -> &'static str {
        match self {
            End::Disconnect | End::DisconnectWithWill => "disconnect",
            End::KeepAliveTimeout => "keep_alive_timeout",
            End::WriteTimeout => "write_timeout",
            End::SocketClosed => "socket_closed",
            End::Malformed => "malformed_packet",
            End::ProtocolError | End::RouterDropped => "protocol_error",
            End::PacketTooLarge => "packet_too_large",
            End::TakenOver => "session_taken_over",
            End::Shutdown => "shutdown",
        }
    }

    fn v5_code(self) -> Option<DisconnectReasonCode> {
        match self {
            End::KeepAliveTimeout => Some(DisconnectReasonCode::KeepAliveTimeout),
            End::Malformed => Some(DisconnectReasonCode::MalformedPacket),
            End::ProtocolError => Some(DisconnectReasonCode::ProtocolError),
            End::PacketTooLarge => Some(DisconnectReasonCode::PacketTooLarge),
            End::TakenOver => Some(DisconnectReasonCode::SessionTakenOver),
            End::Shutdown => Some(DisconnectReasonCode::ServerShuttingDown),
            _ => None,
        }
    }
}

/// Serves one accepted socket until it ends.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    mut socket: S,
    remote: SocketAddr,
    v5: bool,
    tls: bool,
    cert_eid: Option<String>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let conn_no = shared
        .next_conn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut codec = if v5 {
        Codec::V5(rumqttd::protocol::v5::V5)
    } else {
        Codec::V4(rumqttd::protocol::v4::V4)
    };
    let mut rbuf = BytesMut::with_capacity(4096);
    let est = match connect::handshake(
        &shared,
        &mut socket,
        &mut codec,
        &mut rbuf,
        cert_eid.as_deref(),
        conn_no,
        remote,
    )
    .await
    {
        Ok(e) => e,
        Err(f) => {
            debug!(%remote, reason = f.reason, "connection closed during CONNECT");
            return;
        }
    };
    let version = if v5 { "5" } else { "3.1.1" };
    let transport = if tls { "tls" } else { "tcp" };
    let gauge = ::metrics::gauge!(metrics::CONNECTIONS, "mqtt_version" => version, "transport" => transport);
    gauge.increment(1.0);
    let c = &shared.counters;
    Counters::inc(if v5 { &c.conn_v5 } else { &c.conn_v311 });
    if tls {
        Counters::inc(&c.conn_tls);
    }
    debug!(endpoint_id = %est.identity.eid, client_id = %est.client_id, mqtt_version = version, %remote, "client connected");
    let presence = |state, reason: &str, client_id: &str, eid: &str| {
        let at_ms = now_ms();
        let _ = shared.presence.send(PresenceEvent {
            endpoint_id: eid.to_owned(),
            state,
            reason: reason.to_owned(),
            mqtt_version: version.to_owned(),
            client_id: client_id.to_owned(),
            remote_addr: Some(remote.to_string()),
            at: rfc3339_millis(at_ms),
            at_ms,
        });
    };
    presence(
        PresenceState::Connected,
        "connect",
        &est.client_id,
        &est.identity.eid,
    );

    let bucket = shared.buckets.acquire(&est.identity.eid);
    // 1.5 × the granted interval (MQTT-3.1.2-22); keep-alive is at most 65,535 s.
    let ka_timeout = est
        .keep_alive
        .saturating_add(est.keep_alive.checked_div(2).unwrap_or_default());
    let mut conn = Connection {
        bucket,
        ack_overrides: HashMap::new(),
        last_read: Instant::now(),
        accepted: ::metrics::counter!(metrics::RECORDS_ACCEPTED, "record_type" => "no_session_context"),
        shared: shared.clone(),
        codec,
        rbuf,
        read_hint: READ_MIN,
        wbuf: BytesMut::new(),
        to_router: Vec::new(),
        pending_subacks: HashMap::new(),
        client_id: est.client_id,
        identity: est.identity,
        link_tx: est.link_tx,
        link_rx: est.link_rx,
        ka_timeout,
        will: est.will,
        conn_no,
    };
    let end = conn.run(&mut socket).await;
    conn.finish(&mut socket, end).await;
    shared.buckets.release(&conn.identity.eid);

    gauge.decrement(1.0);
    Counters::dec(if v5 { &c.conn_v5 } else { &c.conn_v311 });
    if tls {
        Counters::dec(&c.conn_tls);
    }
    ::metrics::counter!(metrics::DISCONNECTS, "reason" => end.reason()).increment(1);
    debug!(endpoint_id = %conn.identity.eid, client_id = %conn.client_id, reason = end.reason(), "client disconnected");
    presence(
        PresenceState::Disconnected,
        end.reason(),
        &conn.client_id,
        &conn.identity.eid,
    );
}

struct Connection {
    shared: Arc<Shared>,
    codec: Codec,
    rbuf: BytesMut,
    /// How much free room the next read asks for: doubled when a read fills it, halved when
    /// a read uses less than a quarter.
    read_hint: usize,
    wbuf: BytesMut,
    /// Packets read in this batch that go to the router.
    to_router: Vec<Packet>,
    /// SUBSCRIBEs partly refused by the ACL: the router answers for the allowed filters, the
    /// refused ones (`Some`) are merged back into its SUBACK in the client's order.
    pending_subacks: HashMap<u16, Vec<Option<SubscribeReasonCode>>>,
    /// MQTT 5 QoS 1 publishes refused here whose router PUBACK must carry an error code
    /// (at most one per packet id).
    ack_overrides: HashMap<u16, PubAckReason>,
    /// The endpoint's ingress bucket, shared with its other connections.
    bucket: Arc<Mutex<Bucket>>,
    /// When the client was last heard from (keep-alive).
    last_read: Instant,
    client_id: String,
    identity: Identity,
    link_tx: rumqttd::local::LinkTx,
    link_rx: rumqttd::local::LinkRx,
    ka_timeout: std::time::Duration,
    will: Option<(
        rumqttd::protocol::LastWill,
        Option<rumqttd::protocol::LastWillProperties>,
    )>,
    conn_no: u64,
    accepted: ::metrics::Counter,
}

impl Connection {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, socket: &mut S) -> End {
        let max = self.shared.config.max_packet_size as usize;
        let shutdown = self.shared.shutdown.clone();
        self.last_read = Instant::now();
        // A CONNECT may arrive with more packets behind it in the same read.
        if !self.rbuf.is_empty()
            && let Err(end) = self.on_bytes(socket, max).await
        {
            return end;
        }
        loop {
            // Checked on every turn, not only when the timer branch is polled: a connection
            // whose router side is always ready would otherwise never reach it.
            if Instant::now() >= self.keep_alive_deadline() {
                return End::KeepAliveTimeout;
            }
            // Give back the memory of an earlier large packet or burst.
            if self.rbuf.is_empty() && self.rbuf.capacity() > self.read_hint.saturating_mul(2) {
                self.rbuf = BytesMut::new();
            }
            let room = self.rbuf.capacity().saturating_sub(self.rbuf.len());
            if room < self.read_hint / 2 {
                self.rbuf.reserve(self.read_hint);
            }
            let room = self.rbuf.capacity().saturating_sub(self.rbuf.len());
            let keep_alive = self.keep_alive_deadline();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return End::Shutdown,
                r = socket.read_buf(&mut self.rbuf) => {
                    match r {
                        Ok(0) | Err(_) => return End::SocketClosed,
                        Ok(n) => {
                            self.last_read = Instant::now();
                            self.read_hint = next_read_hint(self.read_hint, n, room);
                        }
                    }
                    if let Err(end) = self.on_bytes(socket, max).await {
                        return end;
                    }
                }
                n = self.link_rx.next() => match n {
                    Ok(Some(first)) => {
                        if let Err(end) = self.on_notifications(socket, first).await {
                            return end;
                        }
                    }
                    Ok(None) => {}
                    Err(_) => return self.router_dropped(),
                },
                _ = tokio::time::sleep_until(keep_alive) => return End::KeepAliveTimeout,
            }
        }
    }

    fn keep_alive_deadline(&self) -> Instant {
        // Cannot overflow: the timeout is at most 1.5 × 65,535 s.
        self.last_read
            .checked_add(self.ka_timeout)
            .unwrap_or(self.last_read)
    }

    fn router_dropped(&self) -> End {
        if self
            .shared
            .sessions
            .is_current(&self.client_id, self.conn_no)
        {
            End::RouterDropped
        } else {
            End::TakenOver
        }
    }

    /// Handles every complete packet in the read buffer, then hands the batch to the router
    /// and writes our own answers.
    async fn on_bytes<S: AsyncWrite + Unpin>(
        &mut self,
        socket: &mut S,
        max: usize,
    ) -> Result<(), End> {
        let mut end = None;
        loop {
            let id = crate::codec::publish_id(&self.rbuf);
            match self.codec.read(&mut self.rbuf, max) {
                Ok(Some(p)) => {
                    if let Err(e) = self.on_packet(p, id) {
                        end = Some(e);
                        break;
                    }
                }
                Ok(None) => break,
                Err(ReadError::TooLarge(n)) => {
                    warn!(endpoint_id = %self.identity.eid, size = n, "packet over max_packet_size");
                    end = Some(End::PacketTooLarge);
                    break;
                }
                Err(e) => {
                    warn!(endpoint_id = %self.identity.eid, error = %e, "malformed packet");
                    end = Some(End::Malformed);
                    break;
                }
            }
        }
        self.flush_router().await;
        if !self.wbuf.is_empty() {
            self.flush_socket(socket).await?;
        }
        end.map_or(Ok(()), Err)
    }

    async fn flush_router(&mut self) {
        let Some(last) = self.to_router.pop() else {
            return;
        };
        if !self.to_router.is_empty() {
            self.link_tx.buffer().extend(self.to_router.drain(..));
        }
        // One router event for the whole batch, as rumqttd's own link does.
        let _ = self.link_tx.send(last).await;
    }

    /// Writes the buffer out within `write_timeout`, and never past the keep-alive deadline:
    /// a peer that stops reading cannot hold the task (and with it the keep-alive timer).
    async fn flush_socket<S: AsyncWrite + Unpin>(&mut self, socket: &mut S) -> Result<(), End> {
        let ka_deadline = self.keep_alive_deadline();
        let write_deadline = Instant::now()
            .checked_add(self.shared.config.write_timeout)
            .unwrap_or(ka_deadline);
        let deadline = write_deadline.min(ka_deadline);
        let write =
            async { socket.write_all(&self.wbuf).await.is_ok() && socket.flush().await.is_ok() };
        let result = match tokio::time::timeout_at(deadline, write).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(End::SocketClosed),
            Err(_) if ka_deadline < write_deadline => Err(End::KeepAliveTimeout),
            Err(_) => {
                warn!(endpoint_id = %self.identity.eid, "writes not drained within write_timeout");
                Err(End::WriteTimeout)
            }
        };
        if self.wbuf.capacity() > WRITE_KEEP {
            self.wbuf = BytesMut::new();
        } else {
            self.wbuf.clear();
        }
        result
    }

    /// `id`: QoS and packet id when `packet` is a QoS 1 or 2 PUBLISH.
    fn on_packet(&mut self, packet: Packet, id: Option<(u8, u16)>) -> Result<(), End> {
        match packet {
            Packet::Publish(p, props) => self.on_publish(p, props, id),
            Packet::Subscribe(s, props) => {
                self.on_subscribe(s, props);
                Ok(())
            }
            Packet::Unsubscribe(u, _) => self.on_unsubscribe(u),
            Packet::PingReq(_) => {
                self.codec.write(Packet::PingResp(PingResp), &mut self.wbuf);
                Ok(())
            }
            p @ (Packet::PubAck(..)
            | Packet::PubRec(..)
            | Packet::PubRel(..)
            | Packet::PubComp(..)) => {
                self.to_router.push(p);
                Ok(())
            }
            Packet::Disconnect(d, _) => {
                if d.reason_code == DisconnectReasonCode::DisconnectWithWillMessage {
                    Err(End::DisconnectWithWill)
                } else {
                    self.will = None;
                    Err(End::Disconnect)
                }
            }
            _ => Err(End::ProtocolError),
        }
    }

    async fn on_notifications<S: AsyncWrite + Unpin>(
        &mut self,
        socket: &mut S,
        first: Notification,
    ) -> Result<(), End> {
        let mut unscheduled = false;
        let mut end = None;
        let mut next = Some(first);
        let mut n: usize = 0;
        while let Some(notification) = next.take() {
            match notification {
                Notification::Forward(f) => {
                    self.codec
                        .write(Packet::Publish(f.publish, f.properties), &mut self.wbuf);
                }
                Notification::Unschedule => unscheduled = true,
                Notification::Disconnect(d, props) => {
                    self.codec
                        .write(Packet::Disconnect(d, props), &mut self.wbuf);
                    end = Some(End::RouterDropped);
                    break;
                }
                other => {
                    if let Some(p) = Option::<Packet>::from(other) {
                        self.on_ack(p);
                    }
                }
            }
            n = n.saturating_add(1);
            if n >= MAX_BATCH || self.wbuf.len() >= MAX_BATCH_BYTES {
                break;
            }
            next = match self.link_rx.next().now_or_never() {
                Some(Ok(Some(x))) => Some(x),
                _ => None,
            };
        }
        if !self.wbuf.is_empty() {
            self.flush_socket(socket).await?;
        }
        if unscheduled && self.link_rx.wake().await.is_err() {
            return Err(self.router_dropped());
        }
        end.map_or(Ok(()), Err)
    }

    fn on_ack(&mut self, p: Packet) {
        match p {
            Packet::ConnAck(..) | Packet::UnsubAck(..) => {}
            Packet::PubAck(mut ack, props) => {
                if let Some(reason) = self.ack_overrides.remove(&ack.pkid) {
                    ack.reason = reason;
                }
                self.codec.write(Packet::PubAck(ack, props), &mut self.wbuf);
            }
            Packet::SubAck(mut ack, props) => {
                if let Some(slots) = self.pending_subacks.remove(&ack.pkid) {
                    let mut granted = ack.return_codes.into_iter();
                    ack.return_codes = slots
                        .into_iter()
                        .map(|s| {
                            s.or_else(|| granted.next())
                                .unwrap_or(SubscribeReasonCode::Failure)
                        })
                        .collect();
                }
                self.codec.write(Packet::SubAck(ack, props), &mut self.wbuf);
            }
            other => {
                self.codec.write(other, &mut self.wbuf);
            }
        }
    }

    /// Ends the connection: the will (on abrupt loss), the router's cleanup, and for MQTT 5 a
    /// DISCONNECT with the reason when the server ends it.
    async fn finish<S: AsyncRead + AsyncWrite + Unpin>(&mut self, socket: &mut S, end: End) {
        let router_gone = matches!(end, End::TakenOver | End::RouterDropped);
        if !router_gone {
            let with_will = !matches!(end, End::Disconnect);
            if with_will && let Some((w, wp)) = self.will.take() {
                let props = wp.map(|wp| PublishProperties {
                    payload_format_indicator: wp.payload_format_indicator,
                    message_expiry_interval: wp.message_expiry_interval,
                    content_type: wp.content_type,
                    response_topic: wp.response_topic,
                    correlation_data: wp.correlation_data,
                    user_properties: wp.user_properties,
                    ..PublishProperties::default()
                });
                // The will goes through the same ACL and validation as any publish.
                let _ = self.on_publish(Publish::new(w.topic, w.message, w.retain), props, None);
            }
            self.to_router.push(Packet::Disconnect(
                Disconnect {
                    reason_code: DisconnectReasonCode::NormalDisconnection,
                },
                None,
            ));
            self.flush_router().await;
        }
        if let Some(code) = end.v5_code()
            && self.codec.is_v5()
        {
            self.wbuf.clear();
            self.codec.write(
                Packet::Disconnect(Disconnect { reason_code: code }, None),
                &mut self.wbuf,
            );
            let wbuf = &self.wbuf;
            let write = async {
                socket.write_all(wbuf).await?;
                socket.flush().await
            };
            let _ = tokio::time::timeout(FINAL_WRITE, write).await;
        }
        let _ = tokio::time::timeout(FINAL_WRITE, socket.shutdown()).await;
        if matches!(
            end,
            End::PacketTooLarge | End::Malformed | End::ProtocolError
        ) {
            // The client is likely still sending what we refused; closing with unread bytes
            // resets the connection, and the reset can destroy the DISCONNECT before the client
            // reads it. Read and discard a bounded amount first.
            let drain = async {
                let mut scratch = [0u8; 4096];
                let mut left = LINGER_BYTES;
                while left > 0 {
                    match socket.read(&mut scratch).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            };
            let _ = tokio::time::timeout(FINAL_WRITE, drain).await;
        }
        self.shared.sessions.release(&self.client_id, self.conn_no);
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(256).collect()
}

/// The read room to ask for next, given that a read of `n` bytes had `room` bytes free.
fn next_read_hint(hint: usize, n: usize, room: usize) -> usize {
    if n >= room {
        hint.saturating_mul(2).min(READ_MAX)
    } else if n < room / 4 {
        (hint / 2).max(READ_MIN)
    } else {
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_room_grows_under_bursts_and_shrinks_when_idle() {
        let mut h = READ_MIN;
        for _ in 0..20 {
            h = next_read_hint(h, h, h);
        }
        assert_eq!(h, READ_MAX);
        h = next_read_hint(h, h / 2, h);
        assert_eq!(h, READ_MAX, "a half-full read keeps the room");
        for _ in 0..20 {
            h = next_read_hint(h, 2, h);
        }
        assert_eq!(h, READ_MIN);
    }
}
