//! The asynchronous front of the embedded log: one writer task that batches appends, syncs
//! once per batch (group commit) and then acknowledges every record of the batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::config::{FsyncPolicy, LogConfig};
use crate::error::{Error, Result};
use crate::log::{Append, LogReader, LogWriter, Segments, check_size};
use crate::sink::OutRecord;

/// Appends waiting for the writer. Full = callers wait (backpressure up to the Notify path).
const QUEUE: usize = 8192;
/// Most records written (and synced) together.
const MAX_BATCH: usize = 4096;
const RETENTION_EVERY: Duration = Duration::from_secs(30);

type Done = oneshot::Sender<Result<u64, String>>;

/// Resolves with the record's sequence number once it is durable.
pub(crate) type Durable = oneshot::Receiver<Result<u64, String>>;

/// Handle to the log writer task.
#[derive(Clone)]
pub(crate) struct LogHandle {
    tx: mpsc::Sender<(OutRecord, Done)>,
    segs: Segments,
    shared: Arc<Shared>,
}

struct Shared {
    /// Every record with a lower sequence number is durable.
    durable: AtomicU64,
    /// The writer's next sequence number after its last batch (written, durable or not).
    written: AtomicU64,
    /// Records handed to `append` that the writer has not taken yet.
    queued: AtomicU64,
    /// Retention never deletes records at or after this.
    keep_from: AtomicU64,
    healthy: AtomicBool,
    progress: Notify,
}

impl LogHandle {
    /// Opens the log and starts its writer task.
    pub(crate) fn start(
        cfg: &LogConfig,
        keep_from: u64,
        shutdown: CancellationToken,
    ) -> Result<(LogHandle, JoinHandle<()>)> {
        Ok(Self::start_writer(
            LogWriter::open(cfg)?,
            cfg,
            keep_from,
            shutdown,
        ))
    }

    pub(crate) fn start_writer(
        writer: LogWriter,
        cfg: &LogConfig,
        keep_from: u64,
        shutdown: CancellationToken,
    ) -> (LogHandle, JoinHandle<()>) {
        let shared = Arc::new(Shared {
            durable: AtomicU64::new(writer.next_seq()),
            written: AtomicU64::new(writer.next_seq()),
            queued: AtomicU64::new(0),
            keep_from: AtomicU64::new(keep_from),
            healthy: AtomicBool::new(true),
            progress: Notify::new(),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let handle = LogHandle {
            tx,
            segs: writer.segments(),
            shared: shared.clone(),
        };
        let task = tokio::spawn(run(writer, cfg.clone(), rx, shared, shutdown));
        (handle, task)
    }

    /// Queues a record (in call order); the returned receiver resolves once it is durable.
    /// A record too large for the log is refused here, before anything can acknowledge it.
    pub(crate) async fn append(&self, rec: OutRecord) -> Result<Durable> {
        check_size(&rec.key, &rec.record_type, &rec.value)?;
        let (done, rx) = oneshot::channel();
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.send((rec, done)).await.is_err() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Closed);
        }
        Ok(rx)
    }

    /// The sequence number the next record queued now would get, counting records still
    /// queued. Records whose write fails give their numbers back, so this can go down.
    pub(crate) fn end(&self) -> u64 {
        // `queued` is read before `written`: the writer updates `written` before it lowers
        // `queued`, so a racing read can only overstate the end, never understate it.
        let queued = self.shared.queued.load(Ordering::Acquire);
        self.shared.written.load(Ordering::Acquire) + queued
    }

    /// The next sequence number that is not yet durable.
    pub(crate) fn durable(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Resolves when more records become durable (or after a short while).
    pub(crate) async fn wait_written(&self) {
        let _ =
            tokio::time::timeout(Duration::from_millis(100), self.shared.progress.notified()).await;
    }

    pub(crate) fn set_keep_from(&self, seq: u64) {
        self.shared.keep_from.store(seq, Ordering::Release);
    }

    pub(crate) fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    pub(crate) fn reader(&self, from_seq: u64) -> LogReader {
        LogReader::new(self.segs.clone(), from_seq)
    }
}

type Batch = Vec<(OutRecord, Done)>;

async fn run(
    writer: LogWriter,
    cfg: LogConfig,
    mut rx: mpsc::Receiver<(OutRecord, Done)>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut task = WriterTask {
        writer: Some(writer),
        cfg,
        shared,
        unsynced: Vec::new(),
        sync_due: None,
        last_sync: Instant::now(),
        next_retention: Instant::now(),
    };
    while let Some(batch) = next_batch(&mut rx, &shutdown, task.wake_at()).await {
        if !task.step(batch).await {
            break;
        }
    }
}

/// Waits for records, or until `wake_at` (an empty batch: time to sync or apply retention);
/// `None` once the writer should stop.
async fn next_batch(
    rx: &mut mpsc::Receiver<(OutRecord, Done)>,
    shutdown: &CancellationToken,
    wake_at: Instant,
) -> Option<Batch> {
    let first = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return None,
        r = rx.recv() => Some(r?),
        _ = tokio::time::sleep_until(wake_at) => None,
    };
    let mut batch = Vec::new();
    if let Some(r) = first {
        batch.push(r);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
    }
    Some(batch)
}

/// The writer task's state between batches.
struct WriterTask {
    /// Lent to a blocking thread while a batch is written.
    writer: Option<LogWriter>,
    cfg: LogConfig,
    shared: Arc<Shared>,
    /// Written but not yet synced (fsync = "interval").
    unsynced: Vec<(u64, Done)>,
    sync_due: Option<Instant>,
    last_sync: Instant,
    next_retention: Instant,
}

impl WriterTask {
    fn wake_at(&self) -> Instant {
        let far = Instant::now() + RETENTION_EVERY;
        self.sync_due.unwrap_or(far).min(self.next_retention)
    }

    /// Writes (and, per policy, syncs) one batch off the runtime, then acknowledges or fails
    /// what it can. False once the writer is gone.
    async fn step(&mut self, batch: Batch) -> bool {
        let now = Instant::now();
        let fsync = match self.cfg.fsync {
            FsyncPolicy::Always => !batch.is_empty(),
            FsyncPolicy::Never => false,
            FsyncPolicy::Interval => {
                (!self.unsynced.is_empty() || !batch.is_empty())
                    && now >= self.last_sync + self.cfg.fsync_interval
            }
        };
        let retain = now >= self.next_retention;
        let keep_from = self.shared.keep_from.load(Ordering::Acquire);
        let Some(w) = self.writer.take() else {
            return false;
        };
        let joined =
            tokio::task::spawn_blocking(move || write_batch(w, batch, fsync, retain, keep_from))
                .await;
        let (w, batch, res) = match joined {
            Ok(x) => x,
            Err(e) => {
                error!(error = %e, "event log writer panicked; the log stops accepting records");
                self.shared.healthy.store(false, Ordering::Release);
                return false;
            }
        };
        if retain {
            self.next_retention = Instant::now() + RETENTION_EVERY;
        }
        if fsync {
            self.last_sync = now;
        }
        self.shared.written.store(w.next_seq(), Ordering::Release);
        self.shared
            .queued
            .fetch_sub(batch.len() as u64, Ordering::AcqRel);
        match res {
            Ok(first) => self.written(first, w.next_seq(), batch, fsync),
            Err(e) => self.failed(&e, batch),
        }
        self.writer = Some(w);
        true
    }

    /// A batch is written from sequence number `first`: acknowledges everything written so
    /// far once it is durable under the policy.
    fn written(&mut self, first: u64, next_seq: u64, batch: Batch, fsync: bool) {
        self.shared.healthy.store(true, Ordering::Release);
        for (i, (_, done)) in batch.into_iter().enumerate() {
            self.unsynced.push((first + i as u64, done));
        }
        let durable_now = match self.cfg.fsync {
            FsyncPolicy::Interval => fsync,
            _ => true,
        };
        if durable_now {
            self.shared.durable.store(next_seq, Ordering::Release);
            for (seq, done) in self.unsynced.drain(..) {
                let _ = done.send(Ok(seq));
            }
            self.sync_due = None;
            self.shared.progress.notify_waiters();
        } else if !self.unsynced.is_empty() {
            self.sync_due = Some(self.last_sync + self.cfg.fsync_interval);
        }
    }

    /// Nothing written and not yet durable is acknowledged: the agents retry.
    fn failed(&mut self, e: &Error, batch: Batch) {
        warn!(error = %e, records = batch.len(), "event log write failed; records not acknowledged");
        self.shared.healthy.store(false, Ordering::Release);
        let msg = e.to_string();
        for (_, done) in batch {
            let _ = done.send(Err(msg.clone()));
        }
        for (_, done) in self.unsynced.drain(..) {
            let _ = done.send(Err(msg.clone()));
        }
        self.sync_due = None;
    }
}

/// The blocking part of a step: append, sync, and retention when due or after a rotation.
fn write_batch(
    mut w: LogWriter,
    batch: Batch,
    fsync: bool,
    retain: bool,
    keep_from: u64,
) -> (LogWriter, Batch, Result<u64>) {
    let recs: Vec<Append<'_>> = batch
        .iter()
        .map(|(r, _)| Append {
            at_ms: r.at_ms,
            topic: r.topic,
            key: &r.key,
            record_type: &r.record_type,
            value: &r.value,
        })
        .collect();
    let segs_before = w.segments().lock().len();
    let res = if recs.is_empty() {
        Ok(w.next_seq())
    } else {
        w.append(&recs)
    };
    drop(recs);
    let res = res.and_then(|first| w.sync(fsync).map(|()| first));
    if retain || w.segments().lock().len() != segs_before {
        w.retain(keep_from);
    }
    (w, batch, res)
}
