//! Decoding and validation of USP Records and Msgs.
//!
//! Protobuf decoding alone accepts too much: absent required fields decode as defaults and a
//! repeated oneof member silently replaces the earlier one. [`validate`] adds the TR-369 rules
//! on top, so what passes is a Record a Controller can act on.

use std::borrow::Cow;

use bytes::Bytes;
use prost::Message;

use crate::endpoint::validate_endpoint_id;
use crate::error::{Error, Result};
use crate::pb::usp::{Msg, body, request, response};
use crate::pb::usp_record::{
    Record, record, record::PayloadSecurity, session_context_record::PayloadSarState,
};

/// Validation limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest Record accepted, in bytes. TR-369 sets no maximum; OB-USPA caps at 5 MiB.
    pub max_record_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_size: 1024 * 1024,
        }
    }
}

/// Why a Record's payload was not decoded into a Msg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opaque {
    /// End-to-end encrypted (`payload_security = TLS12`): only the endpoints can read it.
    Tls12,
    /// Part of a segmented Msg in a session context: meaningful only once reassembled.
    Segmented,
}

/// What a Record carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A plaintext Msg, decoded.
    Msg(Msg),
    /// A payload that is routed as-is.
    Opaque(Opaque),
    /// A Record type without a payload (MQTT/STOMP/WebSocket/UDS connect, disconnect).
    None,
}

/// A decoded Record and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub record: Record,
    pub payload: Payload,
}

impl Decoded {
    /// The decoded Msg, if the Record carried a plaintext one.
    pub fn msg(&self) -> Option<&Msg> {
        match &self.payload {
            Payload::Msg(m) => Some(m),
            _ => None,
        }
    }

    /// The record_type member's name, e.g. `no_session_context` (a bounded metric label).
    pub fn record_type(&self) -> &'static str {
        match &self.record.record_type {
            Some(record::RecordType::NoSessionContext(_)) => "no_session_context",
            Some(record::RecordType::SessionContext(_)) => "session_context",
            Some(record::RecordType::WebsocketConnect(_)) => "websocket_connect",
            Some(record::RecordType::MqttConnect(_)) => "mqtt_connect",
            Some(record::RecordType::StompConnect(_)) => "stomp_connect",
            Some(record::RecordType::Disconnect(_)) => "disconnect",
            Some(record::RecordType::UdsConnect(_)) => "uds_connect",
            None => "none",
        }
    }
}

/// Decodes a Record and, where it is plaintext and unsegmented, its Msg. Structural only:
/// see [`validate`] for the TR-369 rules.
pub fn decode(bytes: &[u8]) -> Result<Decoded> {
    let record = Record::decode(bytes).map_err(|e| Error::Undecodable(e.to_string()))?;
    let payload = match payload_bytes(&record)? {
        PayloadBytes::Plain(b) => Payload::Msg(decode_msg(&b)?),
        PayloadBytes::Opaque(o) => Payload::Opaque(o),
        PayloadBytes::None => Payload::None,
    };
    Ok(Decoded { record, payload })
}

/// Decodes and validates a Record: size, exactly one record_type, version, endpoint IDs,
/// payload presence, and for a plaintext payload the Msg rules of [`validate_msg`].
pub fn validate(bytes: &[u8], limits: &Limits) -> Result<Decoded> {
    check_size(bytes, limits)?;
    let mut record = Record::default();
    record
        .merge(bytes)
        .map_err(|e| Error::Undecodable(e.to_string()))?;
    validate_record(bytes, record)
}

/// [`validate`] for a Record already held in a [`Bytes`] buffer (as MQTT stacks hand them
/// over): the decoded payload shares the buffer instead of being copied.
pub fn validate_bytes(bytes: &Bytes, limits: &Limits) -> Result<Decoded> {
    check_size(bytes, limits)?;
    let mut record = Record::default();
    record
        .merge(bytes.clone())
        .map_err(|e| Error::Undecodable(e.to_string()))?;
    validate_record(bytes, record)
}

fn check_size(bytes: &[u8], limits: &Limits) -> Result<()> {
    if bytes.len() > limits.max_record_size {
        return Err(Error::TooLarge {
            size: bytes.len(),
            limit: limits.max_record_size,
        });
    }
    Ok(())
}

fn validate_record(bytes: &[u8], record: Record) -> Result<Decoded> {
    let members = count_fields(bytes, |f| (7..=13).contains(&f));
    if members > 1 {
        return Err(Error::MultipleRecordTypes(members));
    }
    validate_header(&record)?;
    // Built in place: Records and Msgs are a few hundred bytes each, and on the broker's
    // per-message path every avoided move counts.
    let mut decoded = Decoded {
        record,
        payload: Payload::None,
    };
    match payload_bytes(&decoded.record)? {
        PayloadBytes::Plain(b) => {
            let mut msg = Msg::default();
            msg.merge(&*b)
                .map_err(|e| Error::MsgUndecodable(e.to_string()))?;
            check_msg_oneofs(&b)?;
            validate_msg(&msg)?;
            decoded.payload = Payload::Msg(msg);
        }
        PayloadBytes::Opaque(o) => decoded.payload = Payload::Opaque(o),
        PayloadBytes::None => {}
    }
    Ok(decoded)
}

fn validate_header(record: &Record) -> Result<()> {
    if record.version.is_empty() {
        return Err(Error::MissingVersion);
    }
    if !version_ok(&record.version) {
        return Err(Error::InvalidVersion(truncate(&record.version)));
    }
    if record.to_id.is_empty() {
        return Err(Error::MissingToId);
    }
    validate_endpoint_id(&record.to_id).map_err(|e| Error::InvalidToId(e.to_string()))?;
    if record.from_id.is_empty() {
        return Err(Error::MissingFromId);
    }
    validate_endpoint_id(&record.from_id).map_err(|e| Error::InvalidFromId(e.to_string()))?;
    if PayloadSecurity::try_from(record.payload_security).is_err() {
        return Err(Error::UnknownPayloadSecurity(record.payload_security));
    }
    match &record.record_type {
        None => Err(Error::NoRecordType),
        Some(record::RecordType::MqttConnect(c)) => {
            if c.subscribed_topic.is_empty() {
                Err(Error::InvalidConnectRecord("empty subscribed_topic".into()))
            } else if c.subscribed_topic.contains(['+', '#']) {
                Err(Error::InvalidConnectRecord(format!(
                    "wildcard topic {:?}",
                    truncate(&c.subscribed_topic)
                )))
            } else {
                Ok(())
            }
        }
        Some(_) => Ok(()),
    }
}

fn version_ok(v: &str) -> bool {
    let Some((major, minor)) = v.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

// Borrowed from the Record where possible: cloning a `Bytes` that prost built from a slice
// would allocate a shared header on every Record.
enum PayloadBytes<'a> {
    Plain(Cow<'a, [u8]>),
    Opaque(Opaque),
    None,
}

fn payload_bytes(record: &Record) -> Result<PayloadBytes<'_>> {
    let tls = record.payload_security == PayloadSecurity::Tls12 as i32;
    match &record.record_type {
        Some(record::RecordType::NoSessionContext(n)) => {
            if n.payload.is_empty() {
                Err(Error::EmptyPayload)
            } else if tls {
                Ok(PayloadBytes::Opaque(Opaque::Tls12))
            } else {
                Ok(PayloadBytes::Plain(Cow::Borrowed(&n.payload)))
            }
        }
        Some(record::RecordType::SessionContext(s)) => {
            if s.payload.iter().all(|p| p.is_empty()) {
                return Err(Error::EmptyPayload);
            }
            let unsegmented = s.payload_sar_state == PayloadSarState::None as i32
                && s.payloadrec_sar_state == PayloadSarState::None as i32;
            if tls {
                Ok(PayloadBytes::Opaque(Opaque::Tls12))
            } else if !unsegmented {
                Ok(PayloadBytes::Opaque(Opaque::Segmented))
            } else if s.payload.len() == 1 {
                Ok(PayloadBytes::Plain(Cow::Borrowed(&s.payload[0])))
            } else {
                Ok(PayloadBytes::Plain(Cow::Owned(s.payload.concat())))
            }
        }
        _ => Ok(PayloadBytes::None),
    }
}

fn decode_msg(b: &[u8]) -> Result<Msg> {
    Msg::decode(b).map_err(|e| Error::MsgUndecodable(e.to_string()))
}

/// The `MsgType` that matches a Msg's body, as (enum value, name).
pub fn msg_type_of(body: &body::MsgBody) -> (i32, &'static str) {
    use crate::pb::usp::header::MsgType as T;
    let t = match body {
        body::MsgBody::Error(_) => T::Error,
        body::MsgBody::Request(r) => match &r.req_type {
            Some(request::ReqType::Get(_)) => T::Get,
            Some(request::ReqType::GetSupportedDm(_)) => T::GetSupportedDm,
            Some(request::ReqType::GetInstances(_)) => T::GetInstances,
            Some(request::ReqType::Set(_)) => T::Set,
            Some(request::ReqType::Add(_)) => T::Add,
            Some(request::ReqType::Delete(_)) => T::Delete,
            Some(request::ReqType::Operate(_)) => T::Operate,
            Some(request::ReqType::Notify(_)) => T::Notify,
            Some(request::ReqType::GetSupportedProtocol(_)) => T::GetSupportedProto,
            Some(request::ReqType::Register(_)) => T::Register,
            Some(request::ReqType::Deregister(_)) => T::Deregister,
            None => return (-1, "EMPTY_REQUEST"),
        },
        body::MsgBody::Response(r) => match &r.resp_type {
            Some(response::RespType::GetResp(_)) => T::GetResp,
            Some(response::RespType::GetSupportedDmResp(_)) => T::GetSupportedDmResp,
            Some(response::RespType::GetInstancesResp(_)) => T::GetInstancesResp,
            Some(response::RespType::SetResp(_)) => T::SetResp,
            Some(response::RespType::AddResp(_)) => T::AddResp,
            Some(response::RespType::DeleteResp(_)) => T::DeleteResp,
            Some(response::RespType::OperateResp(_)) => T::OperateResp,
            Some(response::RespType::NotifyResp(_)) => T::NotifyResp,
            Some(response::RespType::GetSupportedProtocolResp(_)) => T::GetSupportedProtoResp,
            Some(response::RespType::RegisterResp(_)) => T::RegisterResp,
            Some(response::RespType::DeregisterResp(_)) => T::DeregisterResp,
            None => return (-1, "EMPTY_RESPONSE"),
        },
    };
    (t as i32, t.as_str_name())
}

/// Checks the Msg rules: a header with a msg_id, exactly one body member, a msg_type that
/// agrees with the body, and a Notify that carries a notification.
pub fn validate_msg(msg: &Msg) -> Result<()> {
    let Some(header) = msg.header.as_ref() else {
        return Err(Error::MissingHeader);
    };
    if header.msg_id.is_empty() {
        return Err(Error::MissingMsgId);
    }
    let Some(body) = msg.body.as_ref() else {
        return Err(Error::MissingBody);
    };
    let Some(body) = body.msg_body.as_ref() else {
        return Err(Error::EmptyBody);
    };
    let (expected, body_name) = msg_type_of(body);
    if expected < 0 {
        return Err(Error::EmptyBody);
    }
    if header.msg_type != expected {
        let header_name = crate::pb::usp::header::MsgType::try_from(header.msg_type)
            .map(|t| t.as_str_name())
            .unwrap_or("UNKNOWN");
        return Err(Error::MsgTypeMismatch {
            header: header_name,
            body: body_name,
        });
    }
    if let body::MsgBody::Request(r) = body
        && let Some(request::ReqType::Notify(n)) = &r.req_type
        && n.notification.is_none()
    {
        return Err(Error::EmptyNotify);
    }
    Ok(())
}

/// Rejects a Msg whose body, request/response or notification oneof is set more than once on
/// the wire (protobuf would silently keep the last one).
fn check_msg_oneofs(msg: &[u8]) -> Result<()> {
    let (mut bodies, mut inner, mut notifications) = (0, 0, 0);
    walk(msg, |field, body| {
        if field != 2 {
            return;
        }
        walk(body, |field, member| match field {
            1 | 2 => {
                bodies += 1;
                walk(member, |f, m| {
                    if (1..=11).contains(&f) {
                        inner += 1;
                    }
                    // Request.notify = 8: its notification oneof is fields 3..=8.
                    if field == 1 && f == 8 {
                        notifications += count_fields(m, |n| (3..=8).contains(&n));
                    }
                });
            }
            3 => bodies += 1,
            _ => {}
        });
    });
    for n in [bodies, inner, notifications] {
        if n > 1 {
            return Err(Error::MultipleBodies(n));
        }
    }
    Ok(())
}

// A minimal protobuf wire walker over already-decoded (hence well-formed) bytes. It only
// counts top-level fields; malformed input simply ends the walk.
fn walk<'a>(mut buf: &'a [u8], mut f: impl FnMut(u32, &'a [u8])) {
    while !buf.is_empty() {
        let Some((key, n)) = varint(buf) else { return };
        buf = &buf[n..];
        let field = (key >> 3) as u32;
        match key & 7 {
            0 => match varint(buf) {
                Some((_, n)) => {
                    f(field, &[]);
                    buf = &buf[n..];
                }
                None => return,
            },
            1 if buf.len() >= 8 => {
                f(field, &[]);
                buf = &buf[8..];
            }
            2 => {
                let Some((len, n)) = varint(buf) else { return };
                let Some(end) = usize::try_from(len).ok().and_then(|l| n.checked_add(l)) else {
                    return;
                };
                if end > buf.len() {
                    return;
                }
                f(field, &buf[n..end]);
                buf = &buf[end..];
            }
            5 if buf.len() >= 4 => {
                f(field, &[]);
                buf = &buf[4..];
            }
            _ => return,
        }
    }
}

fn varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn count_fields(buf: &[u8], pred: impl Fn(u32) -> bool) -> usize {
    let mut n = 0;
    walk(buf, |f, _| {
        if pred(f) {
            n += 1;
        }
    });
    n
}
