//! Sequential reading of the log, from any sequence number, across segments.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::warn;

use super::format::{self, FRAME_HEADER, Frame, LogRecord};
use super::{Segment, Segments};
use crate::error::{Error, Result};
use crate::metrics as m;

struct Open {
    first_seq: u64,
    file: BufReader<File>,
    offset: u64,
}

/// Reads records in order. Only the durable part of each segment is read, so a reader
/// running beside the writer never sees a half-written entry.
pub struct LogReader {
    segs: Segments,
    next_seq: u64,
    cur: Option<Open>,
    stuck_at: Option<(u64, u64)>,
}

impl LogReader {
    pub(crate) fn new(segs: Segments, from_seq: u64) -> Self {
        LogReader {
            segs,
            next_seq: from_seq,
            cur: None,
            stuck_at: None,
        }
    }

    /// A reader over a log directory nobody is writing, from its oldest record (for tools
    /// and tests).
    pub fn open(dir: &Path) -> Result<Self> {
        let segs = super::list_segments(dir)?;
        Ok(Self::new(Arc::new(Mutex::new(segs)), 0))
    }

    /// A reader over a log directory from `from_seq`. It sees the segments as they are now:
    /// a tool following a live log opens a new one to see what was written since.
    pub fn open_from(dir: &Path, from_seq: u64) -> Result<Self> {
        let segs = super::list_segments(dir)?;
        Ok(Self::new(Arc::new(Mutex::new(segs)), from_seq))
    }

    /// The sequence number of the next record to read.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Reads up to `max` records; an empty result means nothing more is durable yet.
    pub fn read(&mut self, max: usize) -> Result<Vec<LogRecord>> {
        let mut out = Vec::new();
        while out.len() < max {
            let segs: Vec<Segment> = self.segs.lock().clone();
            let Some(idx) = self.locate(&segs)? else {
                break;
            };
            let seg = &segs[idx];
            let following = segs.get(idx + 1).map(|s| s.first_seq);
            let Some(cur) = self.cur.as_mut() else {
                break;
            };
            if cur.offset + FRAME_HEADER as u64 > seg.len {
                match following {
                    Some(f) => self.advance_to(f),
                    None => break,
                }
                continue;
            }
            match read_entry(cur, seg.len) {
                Ok(Some(rec)) => {
                    if rec.seq < self.next_seq {
                        continue;
                    }
                    self.next_seq = rec.seq + 1;
                    out.push(rec);
                }
                Ok(None) => {
                    let here = (cur.first_seq, cur.offset);
                    if self.stuck_at != Some(here) {
                        warn!(
                            segment = %seg.path.display(),
                            offset = cur.offset,
                            "corrupt entry in the event log; skipping the rest of this segment"
                        );
                        metrics::counter!(m::LOG_CORRUPT).increment(1);
                        self.stuck_at = Some(here);
                    }
                    match following {
                        Some(f) => self.advance_to(f),
                        None => {
                            // Reopen next time: the file position is past `offset` now.
                            self.cur = None;
                            break;
                        }
                    }
                }
                Err(e) => return Err(Error::log_io(&seg.path, e)),
            }
        }
        Ok(out)
    }

    fn advance_to(&mut self, first_seq: u64) {
        self.next_seq = self.next_seq.max(first_seq);
        self.cur = None;
    }

    /// Opens the segment holding `next_seq` if none is open; returns its index.
    fn locate(&mut self, segs: &[Segment]) -> Result<Option<usize>> {
        if let Some(cur) = &self.cur {
            if let Some(i) = segs.iter().position(|s| s.first_seq == cur.first_seq) {
                return Ok(Some(i));
            }
            self.cur = None;
        }
        let Some(first) = segs.first() else {
            return Ok(None);
        };
        if self.next_seq < first.first_seq {
            warn!(
                from_seq = self.next_seq,
                oldest = first.first_seq,
                "event log records were deleted by retention before being read"
            );
            self.next_seq = first.first_seq;
        }
        let Some(idx) = segs.iter().rposition(|s| s.first_seq <= self.next_seq) else {
            return Ok(None);
        };
        let seg = &segs[idx];
        let file = File::open(&seg.path).map_err(|e| Error::log_io(&seg.path, e))?;
        self.cur = Some(Open {
            first_seq: seg.first_seq,
            file: BufReader::with_capacity(256 * 1024, file),
            offset: 0,
        });
        Ok(Some(idx))
    }
}

/// Reads the entry at `cur.offset`; `Ok(None)` if it is corrupt or runs past `limit`.
fn read_entry(cur: &mut Open, limit: u64) -> std::io::Result<Option<LogRecord>> {
    let mut h = [0u8; FRAME_HEADER];
    cur.file.read_exact(&mut h)?;
    let Frame::Body { len, crc } = format::frame(h) else {
        return Ok(None);
    };
    let end = cur.offset + (FRAME_HEADER + len) as u64;
    if end > limit {
        return Ok(None);
    }
    let mut body = vec![0u8; len];
    cur.file.read_exact(&mut body)?;
    if crc32fast::hash(&body) != crc {
        return Ok(None);
    }
    let Some(rec) = format::decode_body(&body) else {
        return Ok(None);
    };
    cur.offset = end;
    Ok(Some(rec))
}
