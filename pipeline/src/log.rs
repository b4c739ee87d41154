//! The embedded durable log: append-only segment files of checksummed entries.
//!
//! It is the event store when no Kafka is configured, and the spool when Kafka is: either
//! way a record is acknowledged only after the write that holds it has been synced according
//! to the fsync policy. Segments are named after the sequence number of their first entry
//! (`00000000000000000042.seg`), so the directory listing alone orders them.
//!
//! The writer never leaves a partial entry in front of the next one: a failed write is cut
//! back, and if even that fails the writer refuses (and so never acknowledges) anything more
//! until a truncate succeeds. A record too large for the format is refused before it is
//! written. Sequence numbers stay gapless: records whose write failed give theirs back.
//!
//! On open, the newest segment is scanned. A damaged entry followed by intact ones (a flipped
//! bit, a frame an older version left behind) is skipped, logged and counted, and every
//! acknowledged record after it is kept: recovery looks for the next intact entry rather than
//! stopping at the first bad one (see `recover`). Only a damaged tail with nothing intact
//! after it — a crash in the middle of a write, never acknowledged — is cut off. Readers skip
//! damaged entries the same way in every segment.

#[cfg(test)]
mod faults;
mod format;
mod reader;
mod recover;
#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tracing::{error, info, warn};

pub use format::LogRecord;
pub use reader::LogReader;

use crate::config::{FsyncPolicy, LogConfig};
use crate::error::{Error, Result};
use crate::metrics as m;
use format::MAX_BODY;

/// A segment file as readers may see it: `len` is how much of it is durable.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) first_seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
}

pub(crate) type Segments = Arc<Mutex<Vec<Segment>>>;

/// One record to append.
pub(crate) struct Append<'a> {
    pub(crate) at_ms: i64,
    pub(crate) topic: crate::RecordTopic,
    pub(crate) key: &'a str,
    pub(crate) record_type: &'a str,
    pub(crate) value: &'a [u8],
}

/// Refuses a record whose entry would be larger than any reader accepts.
pub(crate) fn check_size(key: &str, record_type: &str, value: &[u8]) -> Result<()> {
    let bytes = format::body_len(key, record_type, value);
    if bytes > MAX_BODY {
        return Err(Error::RecordTooLarge {
            bytes,
            max: MAX_BODY,
        });
    }
    Ok(())
}

/// The single writer of a log directory.
pub(crate) struct LogWriter {
    dir: PathBuf,
    cfg: LogConfig,
    segs: Segments,
    file: File,
    cur_len: u64,
    next_seq: u64,
    buf: Vec<u8>,
    /// Records encoded in `buf` and not yet written.
    buf_records: u64,
    /// A failed write could not be cut back, so the file may hold a partial entry past
    /// `cur_len`: nothing more is written until a truncate succeeds.
    damaged: bool,
    #[cfg(test)]
    pub(crate) faults: Arc<faults::Faults>,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

pub(crate) fn list_segments(dir: &Path) -> Result<Vec<Segment>> {
    let mut out = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| Error::log_io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::log_io(dir, e))?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let len = entry
            .metadata()
            .map_err(|e| Error::log_io(entry.path(), e))?
            .len();
        out.push(Segment {
            first_seq: first,
            path: entry.path(),
            len,
        });
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// What the scan of a segment found.
struct Scan {
    /// The end of the last intact entry: the segment's length after recovery.
    good_end: u64,
    next_seq: u64,
    /// Damaged regions with intact entries after them: (offset, bytes, records lost).
    skipped: Vec<(u64, u64, u64)>,
}

/// Scans a segment entry by entry, stepping over damaged regions to the next intact entry.
fn scan(path: &Path, first_seq: u64) -> Result<Scan> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| Error::log_io(path, e))?;
    let limit = data.len() as u64;
    let mut c = Cursor::new(&data[..]);
    let (mut at, mut next) = (0u64, first_seq);
    let mut skipped = Vec::new();
    let io = |e| Error::log_io(path, e);
    while at < limit {
        let entry = match recover::entry_at(&mut c, at, limit).map_err(io)? {
            Some(e) if e.rec.seq >= next => e,
            _ => match recover::next_entry(&mut c, at, limit, next).map_err(io)? {
                Some((found, e)) => {
                    skipped.push((at, found - at, e.rec.seq - next));
                    e
                }
                None => break,
            },
        };
        next = entry.rec.seq + 1;
        at = entry.end;
    }
    Ok(Scan {
        good_end: at,
        next_seq: next,
        skipped,
    })
}

impl LogWriter {
    /// Opens (or creates) the log directory, cutting off a torn tail of the newest segment.
    pub(crate) fn open(cfg: &LogConfig) -> Result<Self> {
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| Error::log_io(&dir, e))?;
        let mut segs = list_segments(&dir)?;
        if segs.is_empty() {
            segs.push(Segment {
                first_seq: 0,
                path: dir.join(segment_name(0)),
                len: 0,
            });
        }
        let Some(last) = segs.last_mut() else {
            return Err(Error::Closed);
        };
        let exists = last.path.exists();
        let found = if exists {
            scan(&last.path, last.first_seq)?
        } else {
            Scan {
                good_end: 0,
                next_seq: last.first_seq,
                skipped: Vec::new(),
            }
        };
        let (good, next_seq) = (found.good_end, found.next_seq);
        for &(offset, bytes, records) in &found.skipped {
            warn!(
                segment = %last.path.display(),
                offset,
                skipped_bytes = bytes,
                lost_records = records,
                "event log has a damaged entry; keeping the intact records after it"
            );
            metrics::counter!(m::LOG_CORRUPT).increment(1);
            metrics::counter!(m::LOG_SKIPPED_BYTES, "stage" => "open").increment(bytes);
            metrics::counter!(m::LOG_SKIPPED_RECORDS, "stage" => "open").increment(records);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&last.path)
            .map_err(|e| Error::log_io(&last.path, e))?;
        if good < last.len {
            warn!(
                segment = %last.path.display(),
                kept_bytes = good,
                dropped_bytes = last.len - good,
                next_seq,
                "event log has a torn or corrupt tail; cutting it off"
            );
            metrics::counter!(m::LOG_CORRUPT).increment(1);
            file.set_len(good)
                .map_err(|e| Error::log_io(&last.path, e))?;
            file.sync_all().map_err(|e| Error::log_io(&last.path, e))?;
        }
        last.len = good;
        if !exists {
            sync_dir(&dir)?;
        }
        info!(dir = %dir.display(), segments = segs.len(), next_seq, "event log opened");
        Ok(LogWriter {
            dir,
            cfg: cfg.clone(),
            cur_len: good,
            segs: Arc::new(Mutex::new(segs)),
            file,
            next_seq,
            buf: Vec::with_capacity(64 * 1024),
            buf_records: 0,
            damaged: false,
            #[cfg(test)]
            faults: Arc::default(),
        })
    }

    pub(crate) fn segments(&self) -> Segments {
        self.segs.clone()
    }

    /// The sequence number the next record gets (= number of records ever appended).
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Writes records (not yet synced); returns the first one's sequence number. Refuses the
    /// whole batch, writing nothing, if one record is too large.
    pub(crate) fn append(&mut self, recs: &[Append<'_>]) -> Result<u64> {
        for r in recs {
            check_size(r.key, r.record_type, r.value)?;
        }
        self.repair()?;
        let first = self.next_seq;
        self.buf.clear();
        self.buf_records = 0;
        for r in recs {
            if self.cur_len + self.buf.len() as u64 >= self.cfg.segment_bytes {
                self.write_buf()?;
                self.rotate()?;
            }
            format::encode(
                &mut self.buf,
                self.next_seq,
                r.at_ms,
                r.topic,
                r.key,
                r.record_type,
                r.value,
            );
            self.next_seq += 1;
            self.buf_records += 1;
        }
        self.write_buf()?;
        Ok(first)
    }

    fn write_buf(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self.write_file();
        let records = std::mem::take(&mut self.buf_records);
        let bytes = self.buf.len() as u64;
        self.buf.clear();
        if let Err(e) = written {
            // The next records take these sequence numbers: the log stays gapless.
            self.next_seq -= records;
            let path = self.current_path();
            // Never leave a partial entry in front of the next one.
            if let Err(te) = self.truncate_file(self.cur_len) {
                error!(segment = %path.display(), error = %te, "cannot cut back a failed event log write; refusing records until it can");
                self.damaged = true;
            }
            return Err(Error::log_io(path, e));
        }
        self.cur_len += bytes;
        Ok(())
    }

    /// After a failed cut-back: tries again, and checks the file really ends where the last
    /// good entry does before anything more is written.
    fn repair(&mut self) -> Result<()> {
        if !self.damaged {
            return Ok(());
        }
        let path = self.current_path();
        let len = self
            .truncate_file(self.cur_len)
            .and_then(|()| self.file.metadata())
            .map_err(|e| Error::log_io(&path, e))?
            .len();
        if len != self.cur_len {
            return Err(Error::LogUnavailable(format!(
                "{} is {len} bytes after cutting it back to {}",
                path.display(),
                self.cur_len
            )));
        }
        self.damaged = false;
        info!(segment = %path.display(), "event log write failure cut back; accepting records again");
        Ok(())
    }

    fn write_file(&mut self) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(r) = self.faults.write(&mut self.file, &self.buf) {
            return r;
        }
        self.file.write_all(&self.buf)
    }

    fn truncate_file(&self, len: u64) -> std::io::Result<()> {
        #[cfg(test)]
        self.faults.truncate()?;
        self.file.set_len(len)
    }

    fn current_path(&self) -> PathBuf {
        self.segs
            .lock()
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| self.dir.clone())
    }

    /// Makes everything appended durable (per policy: `fsync`) and visible to readers.
    pub(crate) fn sync(&mut self, fsync: bool) -> Result<()> {
        if fsync {
            self.file
                .sync_data()
                .map_err(|e| Error::log_io(self.current_path(), e))?;
            metrics::counter!(m::LOG_FSYNCS).increment(1);
        }
        if let Some(last) = self.segs.lock().last_mut() {
            last.len = self.cur_len;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let durable = self.cfg.fsync != FsyncPolicy::Never;
        self.sync(durable)?;
        let path = self.dir.join(segment_name(self.next_seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::log_io(&path, e))?;
        if durable {
            sync_dir(&self.dir)?;
        }
        self.file = file;
        self.cur_len = 0;
        self.segs.lock().push(Segment {
            first_seq: self.next_seq,
            path,
            len: 0,
        });
        Ok(())
    }

    /// Deletes closed segments past the size or age limit, oldest first, but never one
    /// holding a record at or after `keep_from` (not yet delivered to Kafka).
    pub(crate) fn retain(&mut self, keep_from: u64) {
        let now = SystemTime::now();
        let mut segs = self.segs.lock();
        let mut total: u64 = segs.iter().map(|s| s.len).sum();
        while segs.len() > 1 {
            let (oldest, next_first) = (&segs[0], segs[1].first_seq);
            if next_first > keep_from {
                break;
            }
            let age = fs::metadata(&oldest.path)
                .and_then(|md| md.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or(Duration::ZERO);
            if total <= self.cfg.retention.max_bytes && age <= self.cfg.retention.max_age {
                break;
            }
            if let Err(e) = fs::remove_file(&oldest.path) {
                warn!(segment = %oldest.path.display(), error = %e, "could not delete an old log segment");
                break;
            }
            info!(segment = %oldest.path.display(), bytes = oldest.len, "deleted an old log segment");
            total -= oldest.len;
            segs.remove(0);
        }
        metrics::gauge!(m::LOG_BYTES).set(total as f64);
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::log_io(dir, e))
}
