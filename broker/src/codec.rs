//! rumqttd's MQTT codecs, guarded for hostile input.
//!
//! The codecs are rumqttd's, but a few paths in them assume a well-behaved peer (the v5
//! reader has `unreachable!()` for server-to-client packet types, the v4 writer for packets
//! with properties). Client packet types are filtered before decoding, properties are
//! stripped before v3.1.1 writes, and both directions run under `catch_unwind` so a codec
//! bug costs one connection, never the process.
//!
//! Before rumqttd sees a packet, its fixed header is checked here: the flags each packet type
//! must carry (SUBSCRIBE, UNSUBSCRIBE and PUBREL `0010`, PUBLISH QoS < 3, all others `0000`),
//! the whole packet's size against the Maximum Packet Size (rumqttd counts only the remaining
//! length), and a CONNECT's reserved flag.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::BytesMut;
use rumqttd::protocol::{
    DisconnectReasonCode, Error as ProtoError, Packet, Protocol, v4::V4, v5::V5,
};

/// Why no packet could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Larger than the negotiated maximum.
    TooLarge(usize),
    /// Not MQTT, or not a packet a client may send.
    Malformed(String),
    /// A CONNECT for another protocol level.
    WrongVersion(u8),
    /// The peer closed the socket.
    Closed,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge(n) => write!(f, "packet of {n} bytes is over the limit"),
            ReadError::Malformed(why) => write!(f, "malformed packet: {why}"),
            ReadError::WrongVersion(l) => write!(f, "CONNECT for protocol level {l}"),
            ReadError::Closed => f.write_str("connection closed"),
        }
    }
}

/// One connection's codec.
#[derive(Clone)]
pub(crate) enum Codec {
    V4(V4),
    V5(V5),
}

impl Codec {
    pub(crate) fn is_v5(&self) -> bool {
        matches!(self, Codec::V5(_))
    }

    /// Reads one packet if `buf` holds a complete one.
    pub(crate) fn read(
        &mut self,
        buf: &mut BytesMut,
        max: usize,
    ) -> Result<Option<Packet>, ReadError> {
        if check_frame(buf, max)?.is_none() {
            return Ok(None);
        }
        let result = catch_unwind(AssertUnwindSafe(|| match self {
            Codec::V4(c) => c.read_mut(buf, max),
            Codec::V5(c) => c.read_mut(buf, max),
        }));
        match result {
            Ok(Ok(p)) => Ok(Some(p)),
            Ok(Err(ProtoError::InsufficientBytes(_))) => Ok(None),
            Ok(Err(ProtoError::PayloadSizeLimitExceeded(n))) => Err(ReadError::TooLarge(n)),
            Ok(Err(ProtoError::InvalidProtocolLevel(l))) => Err(ReadError::WrongVersion(l)),
            Ok(Err(e)) => Err(ReadError::Malformed(e.to_string())),
            Err(_) => Err(ReadError::Malformed("undecodable packet".into())),
        }
    }

    /// Appends one packet to `buf`; `false` when it cannot be encoded (it is then skipped).
    pub(crate) fn write(&self, packet: Packet, buf: &mut BytesMut) -> bool {
        let mark = buf.len();
        let result = catch_unwind(AssertUnwindSafe(|| match self {
            Codec::V4(c) => match strip_properties(packet) {
                Some(p) => c.write(p, buf).is_ok(),
                None => true,
            },
            // rumqttd's v5 writer gives a DISCONNECT without properties a remaining length of
            // 1 and then a property length byte too, which clients read as a malformed packet.
            Codec::V5(_) if matches!(packet, Packet::Disconnect(_, None)) => {
                if let Packet::Disconnect(d, None) = packet {
                    match disconnect_code(d.reason_code) {
                        0 => buf.extend_from_slice(&[0xe0, 0x00]),
                        // Reason code and an explicit empty property length: valid MQTT 5,
                        // and what strict readers (rumqttc) expect.
                        code => buf.extend_from_slice(&[0xe0, 0x02, code, 0x00]),
                    }
                }
                true
            }
            Codec::V5(c) => c.write(packet, buf).is_ok(),
        }));
        let ok = matches!(result, Ok(true));
        if !ok {
            buf.truncate(mark);
        }
        ok
    }
}

/// Checks the fixed header of the packet at the start of `buf`. `Ok(None)`: more bytes are
/// needed; `Ok(Some(len))`: a whole packet of `len` bytes is buffered and its header is valid.
pub(crate) fn check_frame(buf: &[u8], max: usize) -> Result<Option<usize>, ReadError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (kind, flags) = (first >> 4, first & 0x0f);
    let flags_ok = match kind {
        // CONNECT, PUBACK, PUBREC, PUBCOMP, PINGREQ, DISCONNECT
        1 | 4 | 5 | 7 | 12 | 14 => flags == 0,
        // PUBLISH: QoS 3 is malformed, and so is DUP on QoS 0 (MQTT-3.3.1-2)
        3 => {
            let qos = (flags >> 1) & 0b11;
            qos != 3 && !(qos == 0 && flags & 0b1000 != 0)
        }
        // PUBREL, SUBSCRIBE, UNSUBSCRIBE (MQTT-3.6.1-1, 3.8.1-1, 3.10.1-1)
        6 | 8 | 10 => flags == 0b0010,
        // Server-to-client packet types and reserved ones.
        _ => return Err(ReadError::Malformed(format!("packet type {kind}"))),
    };
    if !flags_ok {
        return Err(ReadError::Malformed(format!(
            "packet type {kind} with fixed-header flags {flags:04b}"
        )));
    }
    let mut remaining: usize = 0;
    let mut header_len = None;
    // At most four length bytes, 7 bits each.
    for (i, (b, shift)) in buf.iter().skip(1).zip([0u32, 7, 14, 21]).enumerate() {
        remaining |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            header_len = Some(i.saturating_add(2));
            break;
        }
    }
    let Some(header_len) = header_len else {
        return if buf.len() >= 5 {
            Err(ReadError::Malformed("remaining length over 4 bytes".into()))
        } else {
            Ok(None)
        };
    };
    let frame = header_len.saturating_add(remaining);
    if frame > max {
        return Err(ReadError::TooLarge(frame));
    }
    if buf.len() < frame {
        return Ok(None);
    }
    if kind == 1 {
        check_connect_flags(buf.get(header_len..frame).unwrap_or_default())?;
    }
    Ok(Some(frame))
}

/// The CONNECT flags byte: reserved bit 0 clear (MQTT-3.1.2-3); without the will flag, no will
/// QoS or will retain (MQTT-3.1.2-11/13); will QoS 3 is malformed (MQTT-3.1.2-14).
fn check_connect_flags(body: &[u8]) -> Result<(), ReadError> {
    let name_len = match body {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => return Err(ReadError::Malformed("CONNECT too short".into())),
    };
    // protocol name, then the level byte, then the flags
    let Some(&flags) = body.get(name_len.saturating_add(3)) else {
        return Err(ReadError::Malformed("CONNECT too short".into()));
    };
    let will = flags & 0b100 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0b10_0000 != 0;
    if flags & 1 != 0 {
        return Err(ReadError::Malformed("CONNECT reserved flag is set".into()));
    }
    if will_qos == 3 || (!will && (will_qos != 0 || will_retain)) {
        return Err(ReadError::Malformed(
            "CONNECT will flags are invalid".into(),
        ));
    }
    Ok(())
}

/// QoS and packet id of the PUBLISH at the start of `buf`, for QoS 1 and 2 (rumqttd keeps both
/// private in its `Publish`).
pub(crate) fn publish_id(buf: &[u8]) -> Option<(u8, u16)> {
    let first = *buf.first()?;
    let qos = (first >> 1) & 0b11;
    if first >> 4 != 3 || qos == 0 {
        return None;
    }
    let len_bytes = buf.iter().skip(1).take(4).position(|b| b & 0x80 == 0)?;
    let topic_at = len_bytes.checked_add(2)?;
    let topic_len = usize::from(u16::from_be_bytes([
        *buf.get(topic_at)?,
        *buf.get(topic_at.checked_add(1)?)?,
    ]));
    let pkid_at = topic_at.checked_add(2)?.checked_add(topic_len)?;
    let pkid = u16::from_be_bytes([*buf.get(pkid_at)?, *buf.get(pkid_at.checked_add(1)?)?]);
    Some((qos, pkid))
}

/// The MQTT 5 DISCONNECT reason code byte.
fn disconnect_code(reason: DisconnectReasonCode) -> u8 {
    use DisconnectReasonCode as D;
    match reason {
        D::NormalDisconnection => 0x00,
        D::DisconnectWithWillMessage => 0x04,
        D::UnspecifiedError => 0x80,
        D::MalformedPacket => 0x81,
        D::ProtocolError => 0x82,
        D::ImplementationSpecificError => 0x83,
        D::NotAuthorized => 0x87,
        D::ServerBusy => 0x89,
        D::ServerShuttingDown => 0x8b,
        D::KeepAliveTimeout => 0x8d,
        D::SessionTakenOver => 0x8e,
        D::TopicFilterInvalid => 0x8f,
        D::TopicNameInvalid => 0x90,
        D::ReceiveMaximumExceeded => 0x93,
        D::TopicAliasInvalid => 0x94,
        D::PacketTooLarge => 0x95,
        D::MessageRateTooHigh => 0x96,
        D::QuotaExceeded => 0x97,
        D::AdministrativeAction => 0x98,
        D::PayloadFormatInvalid => 0x99,
        D::RetainNotSupported => 0x9a,
        D::QoSNotSupported => 0x9b,
        D::UseAnotherServer => 0x9c,
        D::ServerMoved => 0x9d,
        D::SharedSubscriptionNotSupported => 0x9e,
        D::ConnectionRateExceeded => 0x9f,
        D::MaximumConnectTime => 0xa0,
        D::SubscriptionIdentifiersNotSupported => 0xa1,
        D::WildcardSubscriptionsNotSupported => 0xa2,
    }
}

/// MQTT 3.1.1 has no properties and no server DISCONNECT.
fn strip_properties(p: Packet) -> Option<Packet> {
    Some(match p {
        Packet::Publish(x, _) => Packet::Publish(x, None),
        Packet::PubAck(x, _) => Packet::PubAck(x, None),
        Packet::PubRec(x, _) => Packet::PubRec(x, None),
        Packet::PubRel(x, _) => Packet::PubRel(x, None),
        Packet::PubComp(x, _) => Packet::PubComp(x, None),
        Packet::SubAck(x, _) => Packet::SubAck(x, None),
        Packet::UnsubAck(x, _) => Packet::UnsubAck(x, None),
        Packet::ConnAck(x, _) => Packet::ConnAck(x, None),
        Packet::Disconnect(..) => return None,
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_packet_types_and_garbage_are_errors_not_panics() {
        for bytes in [
            &[0x20u8, 0x02, 0x00, 0x00][..],
            &[0x90, 0x03, 0x00, 0x01, 0x00],
            &[0xb0, 0x02, 0x00, 0x01],
            &[0xff, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
        ] {
            for mut c in [Codec::V4(V4), Codec::V5(V5)] {
                let mut buf = BytesMut::from(bytes);
                assert!(c.read(&mut buf, 1024).is_err(), "{bytes:?}");
            }
        }
    }

    #[test]
    fn fixed_header_flags_and_connect_reserved_flag_are_checked() {
        let connect = |flags: u8| {
            vec![
                0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, flags, 0x00, 0x1e, 0x00,
                0x00, 0x00,
            ]
        };
        for (bytes, ok) in [
            (connect(0x02), true),
            (connect(0x03), false),
            (connect(0x12), false),
            (connect(0x2e), true),
            (vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], true),
            (vec![0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], false),
            (vec![0xa0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], false),
            (vec![0x36, 0x03, 0x00, 0x01, b'a'], false),
            (vec![0x38, 0x03, 0x00, 0x01, b'a'], false),
            (vec![0xc1, 0x00], false),
        ] {
            assert_eq!(check_frame(&bytes, 1024).is_ok(), ok, "{bytes:02x?}");
        }
    }

    #[test]
    fn publish_ids_are_read_from_the_fixed_and_variable_header() {
        assert_eq!(
            publish_id(&[0x32, 0x07, 0x00, 0x01, b'a', 0x12, 0x34, b'x', b'y']),
            Some((1, 0x1234))
        );
        assert_eq!(publish_id(&[0x30, 0x03, 0x00, 0x01, b'a']), None);
        assert_eq!(publish_id(&[0x34, 0x07, 0x00]), None);
    }

    #[test]
    fn server_disconnects_are_well_formed() {
        use rumqttd::protocol::Disconnect;
        let mut buf = BytesMut::new();
        let d = |reason_code| Packet::Disconnect(Disconnect { reason_code }, None);
        assert!(Codec::V5(V5).write(d(DisconnectReasonCode::PacketTooLarge), &mut buf));
        assert!(Codec::V5(V5).write(d(DisconnectReasonCode::NormalDisconnection), &mut buf));
        assert_eq!(&buf[..], &[0xe0, 0x02, 0x95, 0x00, 0xe0, 0x00]);
    }

    #[test]
    fn the_whole_packet_counts_against_the_maximum() {
        // remaining length 1022 + 3 header bytes = 1025 > 1024
        let mut buf = vec![0x30u8, 0xfe, 0x07];
        buf.resize(1025, 0);
        assert!(matches!(
            check_frame(&buf, 1024),
            Err(ReadError::TooLarge(1025))
        ));
        assert!(matches!(check_frame(&buf, 1025), Ok(Some(1025))));
    }

    #[test]
    fn oversize_is_reported_before_the_bytes_arrive() {
        let mut buf = BytesMut::from(&[0x30u8, 0x80, 0x80, 0x40][..]);
        assert!(matches!(
            Codec::V5(V5).read(&mut buf, 1024),
            Err(ReadError::TooLarge(_))
        ));
    }

    #[test]
    fn random_packets_never_panic() {
        // xorshift: deterministic, no extra dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = bytes.first_mut() {
                // Client packet types with valid flags, so the decoders themselves are
                // exercised.
                let kind = [1u8, 3, 4, 5, 6, 7, 8, 10, 12, 14][(next() % 10) as usize];
                let flags = match kind {
                    3 => ((next() % 3) as u8) << 1 | (*first & 1),
                    6 | 8 | 10 => 0b0010,
                    _ => 0,
                };
                *first = kind << 4 | flags;
            }
            if bytes.len() > 1 {
                bytes[1] = (len - 2) as u8 & 0x7f;
            }
            for mut c in [Codec::V4(V4), Codec::V5(V5)] {
                let mut buf = BytesMut::from(&bytes[..]);
                while let Ok(Some(_)) = c.read(&mut buf, 1024) {}
            }
        }
    }
}
