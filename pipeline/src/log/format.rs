//! On-disk entry format. Every entry is framed so that a torn or corrupt tail can be told
//! apart from good data:
//!
//! ```text
//! len: u32 LE | crc32(body): u32 LE | body (len bytes)
//! body = seq: u64 LE | at_ms: i64 LE | topic: u8 | rtype_len: u8 | rtype | key_len: u16 LE | key | value
//! ```

use bytes::Bytes;

use crate::RecordTopic;

/// Bytes before the body.
pub(crate) const FRAME_HEADER: usize = 8;
/// Largest body either side accepts: the writer refuses a record that would need more
/// (before it is acknowledged), so a reader may treat a header claiming more as corruption.
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;
const FIXED: usize = 8 + 8 + 1 + 1 + 2;
/// The smallest possible entry: every entry occupies at least this many bytes.
pub(crate) const MIN_FRAME: usize = FRAME_HEADER + FIXED;

/// The body length `encode` will write for these fields.
pub(crate) fn body_len(key: &str, record_type: &str, value: &[u8]) -> usize {
    FIXED + record_type.len().min(u8::MAX as usize) + key.len().min(u16::MAX as usize) + value.len()
}

/// One stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// Position in the log, from 0, without gaps.
    pub seq: u64,
    /// When it was accepted, ms since the Unix epoch.
    pub at_ms: i64,
    pub topic: RecordTopic,
    /// Kafka key (the endpoint id for device records).
    pub key: String,
    /// The `record_type` header (e.g. `value_change`, `connected`).
    pub record_type: String,
    /// The JSON value.
    pub value: Bytes,
}

/// Appends one framed entry to `out`.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    seq: u64,
    at_ms: i64,
    topic: RecordTopic,
    key: &str,
    record_type: &str,
    value: &[u8],
) {
    let body_len = body_len(key, record_type, value);
    let rtype = &record_type.as_bytes()[..record_type.len().min(u8::MAX as usize)];
    let key = &key.as_bytes()[..key.len().min(u16::MAX as usize)];
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&at_ms.to_le_bytes());
    out.push(topic.code());
    out.push(rtype.len() as u8);
    out.extend_from_slice(rtype);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What a frame header says.
pub(crate) enum Frame {
    /// A body of this length with this checksum follows.
    Body { len: usize, crc: u32 },
    /// The length is impossible: the data here is not an entry.
    Corrupt,
}

pub(crate) fn frame(header: [u8; FRAME_HEADER]) -> Frame {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(FIXED..=MAX_BODY).contains(&len) {
        Frame::Corrupt
    } else {
        Frame::Body { len, crc }
    }
}

/// Decodes a body whose checksum was verified; `None` if its inner lengths do not fit.
pub(crate) fn decode_body(b: &[u8]) -> Option<LogRecord> {
    let seq = u64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
    let at_ms = i64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
    let topic = RecordTopic::from_code(*b.get(16)?)?;
    let rlen = *b.get(17)? as usize;
    let record_type = std::str::from_utf8(b.get(18..18 + rlen)?).ok()?.to_string();
    let at = 18 + rlen;
    let klen = u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize;
    let key = std::str::from_utf8(b.get(at + 2..at + 2 + klen)?)
        .ok()?
        .to_string();
    let value = Bytes::copy_from_slice(b.get(at + 2 + klen..)?);
    Some(LogRecord {
        seq,
        at_ms,
        topic,
        key,
        record_type,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checksum() {
        let mut out = Vec::new();
        encode(
            &mut out,
            7,
            1234,
            RecordTopic::Presence,
            "os::1-2",
            "connected",
            b"{}",
        );
        let Frame::Body { len, crc } = frame(out[..8].try_into().unwrap()) else {
            panic!("corrupt");
        };
        assert_eq!(len, out.len() - FRAME_HEADER);
        assert_eq!(crc, crc32fast::hash(&out[8..]));
        let r = decode_body(&out[8..]).unwrap();
        assert_eq!(r.seq, 7);
        assert_eq!(r.at_ms, 1234);
        assert_eq!(r.topic, RecordTopic::Presence);
        assert_eq!(r.key, "os::1-2");
        assert_eq!(r.record_type, "connected");
        assert_eq!(&r.value[..], b"{}");
        assert!(matches!(frame([0xff; 8]), Frame::Corrupt));
        assert!(decode_body(&out[8..20]).is_none());
    }
}
