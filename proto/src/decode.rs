//! Decoding and validation of USP Records and Msgs.
//!
//! Protobuf decoding alone accepts too much: absent required fields decode as defaults and a
//! repeated oneof member silently replaces the earlier one. [`validate`] adds the TR-369 rules
//! on top, so what passes is a Record a Controller can act on.

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
    if bytes.len() > limits.max_record_size {
        return Err(Error::TooLarge {
            size: bytes.len(),
            limit: limits.max_record_size,
        });
    }
    let record = Record::decode(bytes).map_err(|e| Error::Undecodable(e.to_string()))?;
    let members = count_fields(bytes, |f| (7..=13).contains(&f));
    if members > 1 {
        return Err(Error::MultipleRecordTypes(members));
    }
    validate_header(&record)?;
    let payload = match payload_bytes(&record)? {
        PayloadBytes::Plain(b) => {
            let msg = decode_msg(&b)?;
            check_msg_oneofs(&b)?;
            validate_msg(&msg)?;
            Payload::Msg(msg)
        }
        PayloadBytes::Opaque(o) => Payload::Opaque(o),
        PayloadBytes::None => Payload::None,
    };
    Ok(Decoded { record, payload })
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

enum PayloadBytes {
    Plain(Bytes),
    Opaque(Opaque),
    None,
}

fn payload_bytes(record: &Record) -> Result<PayloadBytes> {
    let tls = record.payload_security == PayloadSecurity::Tls12 as i32;
    match &record.record_type {
        Some(record::RecordType::NoSessionContext(n)) => {
            if n.payload.is_empty() {
                Err(Error::EmptyPayload)
            } else if tls {
                Ok(PayloadBytes::Opaque(Opaque::Tls12))
            } else {
                Ok(PayloadBytes::Plain(n.payload.clone()))
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
                Ok(PayloadBytes::Plain(s.payload[0].clone()))
            } else {
                Ok(PayloadBytes::Plain(Bytes::from(s.payload.concat())))
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
    let header = msg.header.as_ref().ok_or(Error::MissingHeader)?;
    if header.msg_id.is_empty() {
        return Err(Error::MissingMsgId);
    }
    let body = msg
        .body
        .as_ref()
        .ok_or(Error::MissingBody)?
        .msg_body
        .as_ref()
        .ok_or(Error::EmptyBody)?;
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

/// Rejects a Msg whose body or request/response oneof is set more than once on the wire
/// (protobuf would silently keep the last one).
fn check_msg_oneofs(msg: &[u8]) -> Result<()> {
    let mut bodies = 0;
    let mut inner = 0;
    for body in submessages(msg, 2) {
        bodies += count_fields(body, |f| (1..=3).contains(&f));
        for field in [1, 2] {
            for r in submessages(body, field) {
                inner += count_fields(r, |f| (1..=11).contains(&f));
            }
        }
    }
    if bodies > 1 {
        return Err(Error::MultipleBodies(bodies));
    }
    if inner > 1 {
        return Err(Error::MultipleBodies(inner));
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

fn submessages(buf: &[u8], field: u32) -> Vec<&[u8]> {
    let mut out = Vec::new();
    walk(buf, |f, b| {
        if f == field {
            out.push(b);
        }
    });
    out
}
