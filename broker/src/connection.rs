//! One client connection: our replacement for rumqttd's `RemoteLink`, with the USP hooks.
//!
//! Reads run through rumqttd's codec, then the ACL and Record validation, and only then go to
//! the router through the connection's `LinkTx`. Router notifications (forwards, acks) are
//! written back in batches. Keep-alive and the connection's end (presence, last will, the
//! router's cleanup) are handled here because the router cannot see the socket.

mod connect;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use rumqttd::Notification;
use rumqttd::protocol::{
    Disconnect, DisconnectReasonCode, Filter, Packet, PingResp, Publish, PublishProperties, SubAck,
    Subscribe, SubscribeProperties, SubscribeReasonCode, UnsubAck, UnsubAckReason, Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, warn};
use uspwatch_proto::{PresenceEvent, PresenceState, QuarantineEvent, rfc3339_millis};

use crate::acl::{self, Destination, Identity, UspPublish};
use crate::codec::{Codec, ReadError};
use crate::metrics;
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

/// How a connection ended (a presence reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Disconnect,
    DisconnectWithWill,
    KeepAliveTimeout,
    SocketClosed,
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
            End::SocketClosed => "socket_closed",
            End::ProtocolError | End::RouterDropped => "protocol_error",
            End::PacketTooLarge => "packet_too_large",
            End::TakenOver => "session_taken_over",
            End::Shutdown => "shutdown",
        }
    }

    fn v5_code(self) -> Option<DisconnectReasonCode> {
        match self {
            End::KeepAliveTimeout => Some(DisconnectReasonCode::KeepAliveTimeout),
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

    let mut conn = Connection {
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
        ka_timeout: est.keep_alive + est.keep_alive / 2,
        will: est.will,
        conn_no,
    };
    let end = conn.run(&mut socket).await;
    conn.finish(&mut socket, end).await;

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
        let mut last_read = Instant::now();
        // A CONNECT may arrive with more packets behind it in the same read.
        if !self.rbuf.is_empty()
            && let Err(end) = self.on_bytes(socket, max).await
        {
            return end;
        }
        loop {
            // Give back the memory of an earlier large packet or burst.
            if self.rbuf.is_empty() && self.rbuf.capacity() > 2 * self.read_hint {
                self.rbuf = BytesMut::new();
            }
            let room = self.rbuf.capacity() - self.rbuf.len();
            if room < self.read_hint / 2 {
                self.rbuf.reserve(self.read_hint);
            }
            let room = self.rbuf.capacity() - self.rbuf.len();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return End::Shutdown,
                r = socket.read_buf(&mut self.rbuf) => {
                    match r {
                        Ok(0) | Err(_) => return End::SocketClosed,
                        Ok(n) => {
                            last_read = Instant::now();
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
                _ = tokio::time::sleep_until(last_read + self.ka_timeout) => return End::KeepAliveTimeout,
            }
        }
    }

    fn router_dropped(&self) -> End {
        let newest = self.shared.sessions.lock().get(&self.client_id).copied();
        if newest.is_some_and(|n| n != self.conn_no) {
            End::TakenOver
        } else {
            End::RouterDropped
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
            match self.codec.read(&mut self.rbuf, max) {
                Ok(Some(p)) => {
                    if let Err(e) = self.on_packet(p) {
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
                    end = Some(End::ProtocolError);
                    break;
                }
            }
        }
        self.flush_router().await;
        if !self.wbuf.is_empty() && !self.flush_socket(socket).await {
            return Err(End::SocketClosed);
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

    async fn flush_socket<S: AsyncWrite + Unpin>(&mut self, socket: &mut S) -> bool {
        let ok = socket.write_all(&self.wbuf).await.is_ok() && socket.flush().await.is_ok();
        if self.wbuf.capacity() > WRITE_KEEP {
            self.wbuf = BytesMut::new();
        } else {
            self.wbuf.clear();
        }
        ok
    }

    fn on_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(p, props) => self.on_publish(p, props),
            Packet::Subscribe(s, props) => {
                self.on_subscribe(s, props);
                Ok(())
            }
            Packet::Unsubscribe(u, _) => {
                self.on_unsubscribe(u);
                Ok(())
            }
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

    fn on_publish(&mut self, mut p: Publish, props: Option<PublishProperties>) -> Result<(), End> {
        if props
            .as_ref()
            .is_some_and(|p| p.topic_alias.is_some() || !p.subscription_identifiers.is_empty())
        {
            return Err(End::ProtocolError);
        }
        let Ok(topic) = std::str::from_utf8(&p.topic) else {
            return Err(End::ProtocolError);
        };
        let shared = &self.shared;
        match shared.acl.may_publish(&self.identity, topic) {
            None => {
                Counters::inc(&shared.counters.acl_denied_publish);
                ::metrics::counter!(metrics::ACL_DENIED, "op" => "publish").increment(1);
                warn!(endpoint_id = %self.identity.eid, topic = %truncate(topic), "publish refused by ACL");
                self.retarget(p);
            }
            Some(Destination::BulkData) => {
                Counters::inc(&shared.counters.bulk_data);
                ::metrics::counter!(metrics::BULK_DATA).increment(1);
                self.to_router.push(Packet::Publish(p, props));
            }
            Some(Destination::Usp(side)) => {
                let check = acl::check_record(
                    &shared.acl,
                    side,
                    &self.identity.eid,
                    &UspPublish {
                        topic,
                        payload: &p.payload,
                        content_type: props.as_ref().and_then(|p| p.content_type.as_deref()),
                        v311: !self.codec.is_v5(),
                    },
                    &shared.limits,
                );
                match check {
                    Ok(decoded) => {
                        Counters::inc(&shared.counters.records_accepted);
                        let rt = decoded.record_type();
                        if rt == "no_session_context" {
                            self.accepted.increment(1);
                        } else {
                            ::metrics::counter!(metrics::RECORDS_ACCEPTED, "record_type" => rt)
                                .increment(1);
                        }
                        if !shared.config.retain_usp {
                            p.retain = false;
                        }
                        self.to_router.push(Packet::Publish(p, props));
                    }
                    Err(e) => {
                        self.quarantine(topic, &p.payload, &e);
                        self.retarget(p);
                    }
                }
            }
        }
        Ok(())
    }

    fn quarantine(&self, topic: &str, payload: &Bytes, e: &uspwatch_proto::Error) {
        let shared = &self.shared;
        let reason = e.reason();
        Counters::inc(&shared.counters.records_rejected);
        ::metrics::counter!(metrics::RECORDS_REJECTED, "reason" => reason.as_str()).increment(1);
        warn!(endpoint_id = %self.identity.eid, reason = %reason, detail = %e, "rejected USP record");
        let cap = shared.config.quarantine_payload_cap.min(payload.len());
        let at_ms = now_ms();
        let _ = shared.quarantine.send(QuarantineEvent {
            endpoint_id: self.identity.eid.clone(),
            client_id: self.client_id.clone(),
            topic: truncate(topic),
            reason: reason.as_str().to_owned(),
            usp_err_code: reason.usp_err_code(),
            detail: e.to_string(),
            size: payload.len(),
            payload_b64: base64::engine::general_purpose::STANDARD.encode(&payload[..cap]),
            truncated: cap < payload.len(),
            at: rfc3339_millis(at_ms),
            at_ms,
        });
    }

    /// Sends a publish to the router as an empty message on the quarantine topic: the router
    /// acknowledges it (PUBACK/PUBREC in order) and delivers it nowhere.
    fn retarget(&mut self, mut p: Publish) {
        p.topic = Bytes::from_static(QUARANTINE_TOPIC.as_bytes());
        p.payload = Bytes::new();
        p.retain = false;
        self.to_router.push(Packet::Publish(p, None));
    }

    fn on_subscribe(&mut self, s: Subscribe, props: Option<SubscribeProperties>) {
        let refused = if self.codec.is_v5() {
            SubscribeReasonCode::NotAuthorized
        } else {
            SubscribeReasonCode::Failure
        };
        let mut slots = Vec::with_capacity(s.filters.len());
        let mut allowed: Vec<Filter> = Vec::new();
        for f in s.filters {
            if rumqttd::protocol::valid_filter(&f.path)
                && self.shared.acl.may_subscribe(&self.identity, &f.path)
            {
                slots.push(None);
                allowed.push(f);
            } else {
                Counters::inc(&self.shared.counters.acl_denied_subscribe);
                ::metrics::counter!(metrics::ACL_DENIED, "op" => "subscribe").increment(1);
                debug!(endpoint_id = %self.identity.eid, filter = %truncate(&f.path), "subscription refused by ACL");
                slots.push(Some(refused));
            }
        }
        if allowed.is_empty() {
            let codes = slots.into_iter().map(|s| s.unwrap_or(refused)).collect();
            self.codec.write(
                Packet::SubAck(
                    SubAck {
                        pkid: s.pkid,
                        return_codes: codes,
                    },
                    None,
                ),
                &mut self.wbuf,
            );
            return;
        }
        if slots.iter().any(Option::is_some) {
            self.pending_subacks.insert(s.pkid, slots);
        }
        self.to_router.push(Packet::Subscribe(
            Subscribe {
                pkid: s.pkid,
                filters: allowed,
            },
            props,
        ));
    }

    /// rumqttd answers UNSUBSCRIBE only for filters it holds, one UNSUBACK per filter; we
    /// answer once, ourselves, and drop the router's. Filters the ACL would never have granted
    /// cannot be held, so they are answered "no subscription existed" without asking.
    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let mut reasons = Vec::with_capacity(u.filters.len());
        let mut own = Vec::new();
        for f in u.filters {
            if self.shared.acl.may_subscribe(&self.identity, &f) {
                reasons.push(UnsubAckReason::Success);
                own.push(f);
            } else {
                reasons.push(UnsubAckReason::NoSubscriptionExisted);
            }
        }
        if !own.is_empty() {
            self.to_router.push(Packet::Unsubscribe(
                Unsubscribe {
                    pkid: u.pkid,
                    filters: own,
                },
                None,
            ));
        }
        self.codec.write(
            Packet::UnsubAck(
                UnsubAck {
                    pkid: u.pkid,
                    reasons,
                },
                None,
            ),
            &mut self.wbuf,
        );
    }

    async fn on_notifications<S: AsyncWrite + Unpin>(
        &mut self,
        socket: &mut S,
        first: Notification,
    ) -> Result<(), End> {
        let mut unscheduled = false;
        let mut end = None;
        let mut next = Some(first);
        let mut n = 0;
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
            n += 1;
            if n >= MAX_BATCH || self.wbuf.len() >= MAX_BATCH_BYTES {
                break;
            }
            next = match self.link_rx.next().now_or_never() {
                Some(Ok(Some(x))) => Some(x),
                _ => None,
            };
        }
        if !self.wbuf.is_empty() && !self.flush_socket(socket).await {
            return Err(End::SocketClosed);
        }
        if unscheduled && self.link_rx.wake().await.is_err() {
            return Err(self.router_dropped());
        }
        end.map_or(Ok(()), Err)
    }

    fn on_ack(&mut self, p: Packet) {
        match p {
            Packet::ConnAck(..) | Packet::UnsubAck(..) => {}
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
    async fn finish<S: AsyncWrite + Unpin>(&mut self, socket: &mut S, end: End) {
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
                let _ = self.on_publish(Publish::new(w.topic, w.message, w.retain), props);
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
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), self.flush_socket(socket))
                    .await;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), socket.shutdown()).await;
        let mut sessions = self.shared.sessions.lock();
        if sessions.get(&self.client_id) == Some(&self.conn_no) {
            sessions.remove(&self.client_id);
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(256).collect()
}

/// The read room to ask for next, given that a read of `n` bytes had `room` bytes free.
fn next_read_hint(hint: usize, n: usize, room: usize) -> usize {
    if n >= room {
        (hint * 2).min(READ_MAX)
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
