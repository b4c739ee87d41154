//! Sequential reading of the log, from any sequence number, across segments.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::warn;

use super::format::{self, FRAME_HEADER, Frame, LogRecord};
use super::{Segment, Segments, recover};
use crate::error::{Error, Result};
use crate::metrics as m;

struct Open {
    first_seq: u64,
    file: BufReader<File>,
    offset: u64,
    /// The sequence number the entry at `offset` should carry.
    expect: u64,
}

/// Where reading goes on after a damaged entry.
enum Step {
    Record(LogRecord),
    NextSegment,
    Wait,
}

/// Reads records in order. Only the durable part of each segment is read, so a reader
/// running beside the writer never sees a half-written entry. A damaged entry is stepped
/// over to the next intact one (logged and counted), never taken as the end of a segment.
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
            let rec = match read_entry(cur, seg.len).map_err(|e| Error::log_io(&seg.path, e))? {
                Some(rec) => rec,
                None => match self.step_over_damage(seg, following)? {
                    Step::Record(rec) => rec,
                    Step::NextSegment => continue,
                    Step::Wait => break,
                },
            };
            if rec.seq < self.next_seq {
                continue;
            }
            self.next_seq = rec.seq + 1;
            out.push(rec);
        }
        Ok(out)
    }

    /// The entry at the current offset is damaged: resumes at the next intact entry of this
    /// segment, else at the next segment. In the newest segment with nothing intact after the
    /// damage yet, waits (the writer only appends after intact entries, so this is damage
    /// from an earlier run that recovery on open did not see, or the disk failing).
    fn step_over_damage(&mut self, seg: &Segment, following: Option<u64>) -> Result<Step> {
        let Some(cur) = self.cur.as_mut() else {
            return Ok(Step::Wait);
        };
        let io = |e| Error::log_io(&seg.path, e);
        let found =
            recover::next_entry(&mut cur.file, cur.offset, seg.len, cur.expect).map_err(io)?;
        let (skipped_bytes, lost_records, next) = match (&found, following) {
            (Some((at, e)), _) => (at - cur.offset, e.rec.seq - cur.expect, "entry"),
            (None, Some(f)) => (
                seg.len - cur.offset,
                f.saturating_sub(cur.expect),
                "segment",
            ),
            (None, None) => {
                let here = (cur.first_seq, cur.offset);
                if self.stuck_at != Some(here) {
                    warn!(
                        segment = %seg.path.display(),
                        offset = cur.offset,
                        "damaged entry at the end of the event log; waiting for intact entries after it"
                    );
                    metrics::counter!(m::LOG_CORRUPT).increment(1);
                    self.stuck_at = Some(here);
                }
                cur.file.seek(SeekFrom::Start(cur.offset)).map_err(io)?;
                return Ok(Step::Wait);
            }
        };
        warn!(
            segment = %seg.path.display(),
            offset = cur.offset,
            skipped_bytes,
            lost_records,
            "damaged entry in the event log; resuming at the next intact {next}"
        );
        metrics::counter!(m::LOG_CORRUPT).increment(1);
        metrics::counter!(m::LOG_SKIPPED_BYTES, "stage" => "read").increment(skipped_bytes);
        metrics::counter!(m::LOG_SKIPPED_RECORDS, "stage" => "read").increment(lost_records);
        self.stuck_at = None;
        match (found, following) {
            (Some((_, e)), _) => {
                cur.offset = e.end;
                cur.expect = e.rec.seq + 1;
                Ok(Step::Record(e.rec))
            }
            (None, Some(f)) => {
                self.advance_to(f);
                Ok(Step::NextSegment)
            }
            (None, None) => Ok(Step::Wait),
        }
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
            expect: seg.first_seq,
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
    cur.expect = cur.expect.max(rec.seq + 1);
    Ok(Some(rec))
}
