//! The embedded durable log: append-only segment files of checksummed entries.
//!
//! It is the event store when no Kafka is configured, and the spool when Kafka is: either
//! way a record is acknowledged only after the write that holds it has been synced according
//! to the fsync policy. Segments are named after the sequence number of their first entry
//! (`00000000000000000042.seg`), so the directory listing alone orders them.
//!
//! On open, the newest segment is scanned: a torn or corrupt tail (a crash in the middle of
//! a write) is logged, counted and cut off; everything before it is kept. Older segments are
//! checked entry by entry as they are read.

mod format;
mod reader;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tracing::{info, warn};

pub use format::LogRecord;
pub use reader::LogReader;

use crate::config::{FsyncPolicy, LogConfig};
use crate::error::{Error, Result};
use crate::metrics as m;
use format::{FRAME_HEADER, Frame};

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

/// The single writer of a log directory.
pub(crate) struct LogWriter {
    dir: PathBuf,
    cfg: LogConfig,
    segs: Segments,
    file: File,
    cur_len: u64,
    next_seq: u64,
    buf: Vec<u8>,
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

/// Scans a segment; returns the end of its last good entry and the next sequence number.
fn scan(path: &Path, first_seq: u64) -> Result<(u64, u64)> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| Error::log_io(path, e))?;
    let (mut at, mut next) = (0usize, first_seq);
    while data.len() - at >= FRAME_HEADER {
        let mut h = [0u8; FRAME_HEADER];
        h.copy_from_slice(&data[at..at + FRAME_HEADER]);
        let Frame::Body { len, crc } = format::frame(h) else {
            break;
        };
        let Some(body) = data.get(at + FRAME_HEADER..at + FRAME_HEADER + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        match format::decode_body(body) {
            Some(r) if r.seq == next => next += 1,
            _ => break,
        }
        at += FRAME_HEADER + len;
    }
    Ok((at as u64, next))
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
        let (good, next_seq) = if exists {
            scan(&last.path, last.first_seq)?
        } else {
            (0, last.first_seq)
        };
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
        })
    }

    pub(crate) fn segments(&self) -> Segments {
        self.segs.clone()
    }

    /// The sequence number the next record gets (= number of records ever appended).
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Writes records (not yet synced); returns the first one's sequence number.
    pub(crate) fn append(&mut self, recs: &[Append<'_>]) -> Result<u64> {
        let first = self.next_seq;
        self.buf.clear();
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
        }
        self.write_buf()?;
        Ok(first)
    }

    fn write_buf(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            // Never leave a half-written entry in front of the next one.
            let _ = self.file.set_len(self.cur_len);
            return Err(Error::log_io(self.current_path(), e));
        }
        self.cur_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordTopic;

    fn cfg(dir: &Path, segment_bytes: u64) -> LogConfig {
        LogConfig {
            dir: dir.to_path_buf(),
            segment_bytes,
            ..LogConfig::default()
        }
    }

    fn rec(v: &[u8]) -> Append<'_> {
        Append {
            at_ms: 1,
            topic: RecordTopic::Events,
            key: "os::1-2",
            record_type: "value_change",
            value: v,
        }
    }

    fn read_all(dir: &Path) -> Vec<LogRecord> {
        let mut r = LogReader::open(dir).unwrap();
        let mut out = Vec::new();
        loop {
            let batch = r.read(100).unwrap();
            if batch.is_empty() {
                return out;
            }
            out.extend(batch);
        }
    }

    #[test]
    fn append_rotate_reopen_and_read() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path(), 4096);
        let mut w = LogWriter::open(&c).unwrap();
        let big = vec![b'x'; 1000];
        for _ in 0..10 {
            w.append(&[rec(&big)]).unwrap();
        }
        w.sync(true).unwrap();
        assert!(w.segments().lock().len() >= 3);
        drop(w);
        let mut w = LogWriter::open(&c).unwrap();
        assert_eq!(w.next_seq(), 10);
        w.append(&[rec(b"last")]).unwrap();
        w.sync(true).unwrap();
        let all = read_all(d.path());
        assert_eq!(all.len(), 11);
        assert!(all.iter().enumerate().all(|(i, r)| r.seq == i as u64));
        assert_eq!(&all[10].value[..], b"last");
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path(), 1 << 20);
        let mut w = LogWriter::open(&c).unwrap();
        w.append(&[rec(b"a"), rec(b"b"), rec(b"c")]).unwrap();
        w.sync(true).unwrap();
        drop(w);
        let seg = d.path().join(segment_name(0));
        let full = fs::metadata(&seg).unwrap().len();
        // Cut the last entry in half, as a crash in the middle of a write would.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(full - 5)
            .unwrap();
        let mut w = LogWriter::open(&c).unwrap();
        assert_eq!(w.next_seq(), 2);
        w.append(&[rec(b"d")]).unwrap();
        w.sync(true).unwrap();
        let vals: Vec<_> = read_all(d.path()).into_iter().map(|r| r.value).collect();
        assert_eq!(vals, [&b"a"[..], b"b", b"d"]);
    }

    #[test]
    fn corrupt_entry_in_old_segment_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path(), 4096);
        let mut w = LogWriter::open(&c).unwrap();
        let big = vec![b'y'; 1500];
        for _ in 0..6 {
            w.append(&[rec(&big)]).unwrap();
        }
        w.sync(true).unwrap();
        drop(w);
        // Flip a byte in the second entry of the first segment.
        let seg = d.path().join(segment_name(0));
        let mut data = fs::read(&seg).unwrap();
        let second = data.len() / 2 + 10;
        data[second] ^= 0xff;
        fs::write(&seg, data).unwrap();
        let seqs: Vec<_> = read_all(d.path()).into_iter().map(|r| r.seq).collect();
        assert_eq!(seqs[0], 0);
        assert!(!seqs.contains(&1), "{seqs:?}");
        assert_eq!(seqs.last(), Some(&5));
    }

    #[test]
    fn retention_keeps_undelivered_segments() {
        let d = tempfile::tempdir().unwrap();
        let mut c = cfg(d.path(), 4096);
        c.retention.max_bytes = 4096;
        let mut w = LogWriter::open(&c).unwrap();
        let big = vec![b'z'; 1500];
        for _ in 0..12 {
            w.append(&[rec(&big)]).unwrap();
        }
        w.sync(true).unwrap();
        let before = w.segments().lock().len();
        w.retain(0);
        assert_eq!(w.segments().lock().len(), before);
        w.retain(u64::MAX);
        let segs = w.segments().lock().clone();
        assert!(segs.len() < before);
        assert!(segs.iter().map(|s| s.len).sum::<u64>() <= 4096 + 4096);
        let first = read_all(d.path())[0].seq;
        assert_eq!(first, segs[0].first_seq);
    }
}
