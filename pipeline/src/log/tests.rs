//! The writer's and the recovery's guarantees: nothing acknowledged is lost to a failed
//! write, a failed truncate, an oversized record, a damaged entry or a killed process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::RecordTopic;
use crate::spool::LogHandle;

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
    // Only the damaged entry is lost; the one after it in the same segment is read.
    let seqs: Vec<_> = read_all(d.path()).into_iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [0, 2, 3, 4, 5]);
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

fn values(dir: &Path) -> Vec<Vec<u8>> {
    read_all(dir)
        .into_iter()
        .map(|r| r.value.to_vec())
        .collect()
}

fn assert_gapless(dir: &Path) {
    let seqs: Vec<u64> = read_all(dir).into_iter().map(|r| r.seq).collect();
    let want: Vec<u64> = (0..seqs.len() as u64).collect();
    assert_eq!(seqs, want);
}

fn only_segment(dir: &Path) -> PathBuf {
    dir.join(segment_name(0))
}

#[test]
fn damaged_entry_does_not_hide_the_acknowledged_records_after_it() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path(), 1 << 20);
    let mut w = LogWriter::open(&c).unwrap();
    w.append(&[rec(b"a"), rec(b"b"), rec(b"c")]).unwrap();
    w.sync(true).unwrap();
    drop(w);
    let seg = only_segment(d.path());
    let mut data = fs::read(&seg).unwrap();
    let len = data.len();
    // A flipped bit in the middle entry's value.
    data[len / 2] ^= 0x10;
    fs::write(&seg, &data).unwrap();

    let mut w = LogWriter::open(&c).unwrap();
    assert_eq!(w.next_seq(), 3, "the entry after the damage still counts");
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        len as u64,
        "nothing cut off"
    );
    w.append(&[rec(b"d")]).unwrap();
    w.sync(true).unwrap();
    let got: Vec<_> = read_all(d.path())
        .into_iter()
        .map(|r| (r.seq, r.value.to_vec()))
        .collect();
    assert_eq!(
        got,
        [(0, b"a".to_vec()), (2, b"c".to_vec()), (3, b"d".to_vec())]
    );
}

#[test]
fn oversized_frame_from_an_older_writer_does_not_hide_later_records() {
    let d = tempfile::tempdir().unwrap();
    let seg = only_segment(d.path());
    let mut data = Vec::new();
    let enc = |out: &mut Vec<u8>, seq, v: &[u8]| {
        format::encode(out, seq, 1, RecordTopic::Events, "k", "value_change", v)
    };
    enc(&mut data, 0, b"before");
    // What an older writer produced for a record larger than any reader accepts.
    enc(&mut data, 1, &vec![b'x'; MAX_BODY + 1]);
    enc(&mut data, 2, b"after-1");
    enc(&mut data, 3, b"after-2");
    fs::write(&seg, &data).unwrap();

    let w = LogWriter::open(&cfg(d.path(), 64 << 20)).unwrap();
    assert_eq!(w.next_seq(), 4);
    drop(w);
    assert_eq!(values(d.path()), [&b"before"[..], b"after-1", b"after-2"]);
}

#[test]
fn oversized_record_is_refused_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let mut w = LogWriter::open(&cfg(d.path(), 1 << 20)).unwrap();
    w.append(&[rec(b"a")]).unwrap();
    let size = fs::metadata(only_segment(d.path())).unwrap().len();
    let huge = vec![b'x'; MAX_BODY];
    match w.append(&[rec(b"b"), rec(&huge)]) {
        Err(Error::RecordTooLarge { bytes, max }) => assert!(bytes > max),
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert_eq!(w.next_seq(), 1);
    assert_eq!(fs::metadata(only_segment(d.path())).unwrap().len(), size);
    w.append(&[rec(b"c")]).unwrap();
    w.sync(true).unwrap();
    assert_eq!(values(d.path()), [&b"a"[..], b"c"]);
}

#[tokio::test]
async fn oversized_record_is_refused_by_the_handle_before_it_is_queued() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path(), 1 << 20);
    let (h, task) = LogHandle::start(&c, 0, CancellationToken::new()).unwrap();
    let rec = |v: Vec<u8>| crate::sink::OutRecord {
        topic: RecordTopic::Events,
        key: "os::1-2".into(),
        record_type: "value_change".into(),
        value: v.into(),
        at_ms: 1,
    };
    assert!(matches!(
        h.append(rec(vec![b'x'; MAX_BODY])).await,
        Err(Error::RecordTooLarge { .. })
    ));
    assert_eq!(h.end(), 0);
    let ok = h.append(rec(b"fits".to_vec())).await.unwrap();
    assert_eq!(ok.await.unwrap(), Ok(0));
    assert!(h.healthy());
    task.abort();
}

#[test]
fn failed_write_is_cut_back_and_gives_its_sequence_numbers_back() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path(), 1 << 20);
    let mut w = LogWriter::open(&c).unwrap();
    w.append(&[rec(b"a")]).unwrap();
    w.sync(true).unwrap();
    let size = fs::metadata(only_segment(d.path())).unwrap().len();
    w.faults.short_write(11);
    assert!(matches!(
        w.append(&[rec(b"lost-1"), rec(b"lost-2")]),
        Err(Error::LogIo { .. })
    ));
    assert_eq!(fs::metadata(only_segment(d.path())).unwrap().len(), size);
    assert_eq!(w.append(&[rec(b"b")]).unwrap(), 1);
    w.sync(true).unwrap();
    drop(w);
    let w = LogWriter::open(&c).unwrap();
    assert_eq!(w.next_seq(), 2);
    assert_eq!(values(d.path()), [&b"a"[..], b"b"]);
    assert_gapless(d.path());
}

#[test]
fn failed_truncate_stops_writing_until_a_truncate_succeeds() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path(), 1 << 20);
    let mut w = LogWriter::open(&c).unwrap();
    w.append(&[rec(b"a")]).unwrap();
    w.sync(true).unwrap();
    let size = fs::metadata(only_segment(d.path())).unwrap().len();
    // The write fails half way and so do the next two attempts to cut it back.
    w.faults.short_write(11);
    w.faults.fail_truncates(2);
    assert!(w.append(&[rec(b"lost")]).is_err());
    assert_eq!(
        fs::metadata(only_segment(d.path())).unwrap().len(),
        size + 11,
        "a partial entry is on disk"
    );
    // Not written, so never acknowledged, while the partial entry is still there.
    assert!(w.append(&[rec(b"refused")]).is_err());
    assert_eq!(
        fs::metadata(only_segment(d.path())).unwrap().len(),
        size + 11
    );
    // The truncate works again: the partial entry goes and writing resumes behind "a".
    assert_eq!(w.append(&[rec(b"b")]).unwrap(), 1);
    w.sync(true).unwrap();
    drop(w);
    let w = LogWriter::open(&c).unwrap();
    assert_eq!(w.next_seq(), 2);
    assert_eq!(values(d.path()), [&b"a"[..], b"b"]);
    assert_gapless(d.path());
}

#[tokio::test]
async fn failed_truncate_fails_the_acknowledgements_and_the_readiness() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path(), 1 << 20);
    let w = LogWriter::open(&c).unwrap();
    let faults = w.faults.clone();
    let (h, task) = LogHandle::start_writer(w, &c, 0, CancellationToken::new());
    let rec = |v: &str| crate::sink::OutRecord {
        topic: RecordTopic::Events,
        key: "os::1-2".into(),
        record_type: "value_change".into(),
        value: v.to_string().into(),
        at_ms: 1,
    };
    assert_eq!(h.append(rec("a")).await.unwrap().await.unwrap(), Ok(0));
    faults.short_write(5);
    faults.fail_truncates(1);
    assert!(h.append(rec("lost")).await.unwrap().await.unwrap().is_err());
    assert!(!h.healthy());
    // Repaired on the next batch: acknowledged with the sequence number "lost" gave back.
    assert_eq!(h.append(rec("b")).await.unwrap().await.unwrap(), Ok(1));
    assert!(h.healthy());
    assert_eq!(h.end(), 2);
    task.abort();
}

/// The child side of the kill tests: appends numbered records through the writer task and
/// prints `ack <seq> <n>` once each is acknowledged, parking in the middle of a write when
/// asked to.
const CHILD_DIR: &str = "USPWATCH_LOG_KILL_CHILD_DIR";
const CHILD_PARK: &str = "USPWATCH_LOG_KILL_CHILD_PARK";
const KILL_TEST: &str = "log::tests::sigkill_mid_write_loses_no_acknowledged_record";

fn child_value(n: u64) -> Vec<u8> {
    // Sizes vary so kills land in entries of every length, up to several write calls.
    let pad = usize::try_from(n * 7919 % 200_000).unwrap();
    let mut v = format!("{{\"n\":{n},\"pad\":\"").into_bytes();
    v.extend(std::iter::repeat_n(b'p', pad));
    v.extend_from_slice(b"\"}");
    v
}

fn child_main(dir: &Path) {
    let park = std::env::var(CHILD_PARK)
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = cfg(dir, 1 << 20);
        let w = LogWriter::open(&c).unwrap();
        let faults = w.faults.clone();
        let (h, _task) = LogHandle::start_writer(w, &c, 0, CancellationToken::new());
        let mut n = h.end();
        loop {
            if park.is_some_and(|p| n >= p) {
                faults.park_mid_write(37);
            }
            let mut acks = Vec::new();
            for _ in 0..8 {
                let rec = crate::sink::OutRecord {
                    topic: RecordTopic::Events,
                    key: format!("k{n}"),
                    record_type: "value_change".into(),
                    value: child_value(n).into(),
                    at_ms: 1,
                };
                acks.push((n, h.append(rec).await.unwrap()));
                n += 1;
            }
            for (n, ack) in acks {
                let seq = ack.await.unwrap().unwrap();
                println!("ack {seq} {n}");
            }
        }
    });
}

/// Kills the child if the test fails before it does.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the child writer on `dir` and SIGKILLs it once `enough` says so. Returns the
/// acknowledged (seq, n) pairs and whether the child parked mid-write.
fn run_child_and_kill(
    dir: &Path,
    park_at: Option<u64>,
    enough: impl Fn(usize) -> bool,
) -> (Vec<(u64, u64)>, bool) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([KILL_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(p) = park_at {
        cmd.env(CHILD_PARK, p.to_string());
    }
    let mut child = Killed(cmd.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut acked = Vec::new();
    let mut parked = false;
    while !(parked || (park_at.is_none() && enough(acked.len()))) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("child stalled after {} acks", acked.len()));
        if line == faults::PARKED {
            parked = true;
        } else if let Some(rest) = line.strip_prefix("ack ") {
            let (seq, n) = rest.split_once(' ').unwrap();
            acked.push((seq.parse().unwrap(), n.parse().unwrap()));
        }
    }
    // SIGKILL: no destructor, no flush, no shutdown of the writer task.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // Acks printed before the kill but not yet read.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        if let Some(rest) = line.strip_prefix("ack ") {
            let (seq, n) = rest.split_once(' ').unwrap();
            acked.push((seq.parse().unwrap(), n.parse().unwrap()));
        }
    }
    (acked, parked)
}

fn newest_segment(dir: &Path) -> PathBuf {
    list_segments(dir).unwrap().pop().unwrap().path
}

#[test]
fn sigkill_mid_write_loses_no_acknowledged_record() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child_main(Path::new(&dir));
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    // Killed while parked in the middle of a write, twice, and at arbitrary moments.
    for round in 0..4u64 {
        let park_at = (round % 2 == 0).then_some(acked.len() as u64 + 20);
        let (got, parked) = run_child_and_kill(d.path(), park_at, |n| n >= 30);
        assert_eq!(parked, park_at.is_some());
        acked.extend(got);
        let seg = newest_segment(d.path());
        let before = fs::metadata(&seg).unwrap().len();
        let w = LogWriter::open(&cfg(d.path(), 1 << 20)).unwrap();
        if parked {
            assert_eq!(
                fs::metadata(&seg).unwrap().len(),
                before - 37,
                "the torn entry is cut off"
            );
        }
        let next = w.next_seq();
        drop(w);
        let all = read_all(d.path());
        assert_gapless(d.path());
        assert_eq!(all.len() as u64, next);
        for &(seq, n) in &acked {
            let r = all
                .get(usize::try_from(seq).unwrap())
                .unwrap_or_else(|| panic!("acknowledged record {seq} lost in round {round}"));
            assert_eq!(r.key, format!("k{n}"));
            assert_eq!(&r.value[..], &child_value(n)[..]);
        }
    }
    assert!(acked.len() >= 80, "{} records acknowledged", acked.len());
}
