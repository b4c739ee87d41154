//! rumqttd's MQTT codecs, guarded for hostile input.
//!
//! The codecs are rumqttd's, but a few paths in them assume a well-behaved peer (the v5
//! reader has `unreachable!()` for server-to-client packet types, the v4 writer for packets
//! with properties). Client packet types are filtered before decoding, properties are
//! stripped before v3.1.1 writes, and both directions run under `catch_unwind` so a codec
//! bug costs one connection, never the process.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::BytesMut;
use rumqttd::protocol::{Error as ProtoError, Packet, Protocol, v4::V4, v5::V5};

/// Why no packet could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Larger than the negotiated maximum.
    TooLarge(usize),
    /// Not MQTT, or not a packet a client may send.
    Malformed(String),
    /// A CONNECT for another protocol level.
    WrongVersion(u8),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge(n) => write!(f, "packet of {n} bytes is over the limit"),
            ReadError::Malformed(why) => write!(f, "malformed packet: {why}"),
            ReadError::WrongVersion(l) => write!(f, "CONNECT for protocol level {l}"),
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
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        // Packet types a client may send: CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP,
        // SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT.
        if !matches!(first >> 4, 1 | 3..=8 | 10 | 12 | 14) {
            return Err(ReadError::Malformed(format!("packet type {}", first >> 4)));
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
            Codec::V5(c) => c.write(packet, buf).is_ok(),
        }));
        let ok = matches!(result, Ok(true));
        if !ok {
            buf.truncate(mark);
        }
        ok
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
                // Mostly client packet types, so the decoders themselves are exercised.
                *first = (*first & 0x0f)
                    | ([1u8, 3, 4, 5, 6, 7, 8, 10, 12, 14][(next() % 10) as usize] << 4);
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
