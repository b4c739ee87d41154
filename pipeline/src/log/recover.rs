//! Finding the next intact entry after a damaged one.
//!
//! A damaged entry (a flipped bit, an oversized or torn frame left by an older version, a
//! region the disk lost) must not hide the acknowledged entries behind it. Recovery looks,
//! byte by byte, for the next offset where a whole entry checks out: a plausible header, a
//! body that fits, a matching CRC, a body that decodes, and a sequence number at or after
//! the one expected. The sequence bound makes a false match in random bytes practically
//! impossible and keeps the search cheap: a candidate's body is read and checksummed only
//! when its header and sequence number already fit.

use std::io::{self, Read, Seek, SeekFrom};

use super::format::{self, FRAME_HEADER, Frame, LogRecord, MIN_FRAME};

/// How far past the expected sequence number a candidate may be, beyond the entries that
/// could have fitted in the damaged bytes. Generous: failed writes of older versions used up
/// sequence numbers without writing entries.
const SEQ_SLACK: u64 = 1 << 20;
/// Bytes examined per read while searching.
const WINDOW: usize = 64 * 1024;
/// Bytes of a candidate looked at before its body: the header and the sequence number.
const PEEK: usize = FRAME_HEADER + 8;

/// An intact entry and the offset just past it.
pub(crate) struct Entry {
    pub(crate) rec: LogRecord,
    pub(crate) end: u64,
}

/// The entry at `at`, if it is whole and intact and ends by `limit`.
pub(crate) fn entry_at<R: Read + Seek>(
    r: &mut R,
    at: u64,
    limit: u64,
) -> io::Result<Option<Entry>> {
    if at.saturating_add(MIN_FRAME as u64) > limit {
        return Ok(None);
    }
    let mut h = [0u8; FRAME_HEADER];
    r.seek(SeekFrom::Start(at))?;
    r.read_exact(&mut h)?;
    let Frame::Body { len, crc } = format::frame(h) else {
        return Ok(None);
    };
    body_at(r, at, len, crc, limit)
}

fn body_at<R: Read + Seek>(
    r: &mut R,
    at: u64,
    len: usize,
    crc: u32,
    limit: u64,
) -> io::Result<Option<Entry>> {
    let end = at.saturating_add((FRAME_HEADER + len) as u64);
    if end > limit {
        return Ok(None);
    }
    let mut body = vec![0u8; len];
    r.seek(SeekFrom::Start(at + FRAME_HEADER as u64))?;
    r.read_exact(&mut body)?;
    if crc32fast::hash(&body) != crc {
        return Ok(None);
    }
    Ok(format::decode_body(&body).map(|rec| Entry { rec, end }))
}

/// The offset of the first intact entry in `(damaged, limit)` whose sequence number is at
/// least `expect`, and the entry, or `None` if the rest up to `limit` holds none. Leaves
/// `r` positioned just past the entry found.
pub(crate) fn next_entry<R: Read + Seek>(
    r: &mut R,
    damaged: u64,
    limit: u64,
    expect: u64,
) -> io::Result<Option<(u64, Entry)>> {
    let mut buf = vec![0u8; WINDOW + PEEK];
    let mut pos = damaged + 1;
    while pos.saturating_add(MIN_FRAME as u64) <= limit {
        let n = usize::try_from(limit - pos).map_or(buf.len(), |left| left.min(buf.len()));
        r.seek(SeekFrom::Start(pos))?;
        r.read_exact(&mut buf[..n])?;
        let candidates = n.saturating_sub(PEEK) + 1;
        for i in 0..candidates {
            let Some(peek) = buf[..n].get(i..i + PEEK) else {
                break;
            };
            let at = pos + i as u64;
            let mut h = [0u8; FRAME_HEADER];
            h.copy_from_slice(&peek[..FRAME_HEADER]);
            let Frame::Body { len, crc } = format::frame(h) else {
                continue;
            };
            let mut s = [0u8; 8];
            s.copy_from_slice(&peek[FRAME_HEADER..]);
            let seq = u64::from_le_bytes(s);
            let fits = (at - damaged) / MIN_FRAME as u64 + 1 + SEQ_SLACK;
            if seq < expect || seq - expect > fits {
                continue;
            }
            if let Some(e) = body_at(r, at, len, crc, limit)?
                && e.rec.seq == seq
            {
                return Ok(Some((at, e)));
            }
        }
        pos += candidates as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::RecordTopic;

    fn entry(out: &mut Vec<u8>, seq: u64, value: &[u8]) {
        format::encode(
            out,
            seq,
            1,
            RecordTopic::Events,
            "os::1-2",
            "value_change",
            value,
        );
    }

    #[test]
    fn finds_the_entry_after_garbage_and_ignores_stale_sequence_numbers() {
        let mut data = Vec::new();
        entry(&mut data, 4, b"old");
        let garbage_at = data.len() as u64;
        data.extend_from_slice(&[0x5a; 1000]);
        // An intact entry with a sequence number already passed is not where reading resumes.
        let stale_at = data.len();
        entry(&mut data, 3, b"stale");
        let good_at = data.len() as u64;
        entry(&mut data, 9, b"next");
        let limit = data.len() as u64;
        let mut c = Cursor::new(&data[..]);
        let (at, e) = next_entry(&mut c, garbage_at, limit, 5)
            .unwrap()
            .expect("found");
        assert!(stale_at < at as usize);
        assert_eq!(
            (at, e.rec.seq, &e.rec.value[..]),
            (good_at, 9, &b"next"[..])
        );
        assert_eq!(e.end, limit);
        assert!(next_entry(&mut c, good_at, limit, 10).unwrap().is_none());
        // An entry cut short by `limit` is not intact.
        assert!(
            next_entry(&mut c, garbage_at, limit - 1, 5)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            entry_at(&mut c, good_at, limit).unwrap().unwrap().rec.seq,
            9
        );
        assert!(entry_at(&mut c, garbage_at, limit).unwrap().is_none());
    }

    #[test]
    fn searches_across_window_boundaries() {
        let mut data = vec![0u8; WINDOW * 2 + 3];
        let good_at = data.len() as u64;
        entry(&mut data, 0, b"far");
        let mut c = Cursor::new(&data[..]);
        let (at, e) = next_entry(&mut c, 0, data.len() as u64, 0)
            .unwrap()
            .expect("found");
        assert_eq!((at, e.rec.seq), (good_at, 0));
    }
}
