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
use crate::log::{Append, LogReader, LogWriter, Segments};
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
    /// Retention never deletes records at or after this.
    keep_from: AtomicU64,
    healthy: AtomicBool,
    written: Notify,
}

impl LogHandle {
    /// Opens the log and starts its writer task.
    pub(crate) fn start(
        cfg: &LogConfig,
        keep_from: u64,
        shutdown: CancellationToken,
    ) -> Result<(LogHandle, JoinHandle<()>)> {
        let writer = LogWriter::open(cfg)?;
        let shared = Arc::new(Shared {
            durable: AtomicU64::new(writer.next_seq()),
            keep_from: AtomicU64::new(keep_from),
            healthy: AtomicBool::new(true),
            written: Notify::new(),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let handle = LogHandle {
            tx,
            segs: writer.segments(),
            shared: shared.clone(),
        };
        let task = tokio::spawn(run(writer, cfg.clone(), rx, shared, shutdown));
        Ok((handle, task))
    }

    /// Queues a record (in call order); the returned receiver resolves once it is durable.
    pub(crate) async fn append(&self, rec: OutRecord) -> Result<Durable> {
        let (done, rx) = oneshot::channel();
        self.tx.send((rec, done)).await.map_err(|_| Error::Closed)?;
        Ok(rx)
    }

    /// The next sequence number that is not yet durable.
    pub(crate) fn durable(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Resolves when more records become durable (or after a short while).
    pub(crate) async fn wait_written(&self) {
        let _ =
            tokio::time::timeout(Duration::from_millis(100), self.shared.written.notified()).await;
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

async fn run(
    writer: LogWriter,
    cfg: LogConfig,
    mut rx: mpsc::Receiver<(OutRecord, Done)>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut writer = Some(writer);
    // Written but not yet synced (fsync = "interval"), with the time the oldest was written.
    let mut unsynced: Vec<(u64, Done)> = Vec::new();
    let mut sync_due: Option<Instant> = None;
    let mut last_sync = Instant::now();
    let mut next_retention = Instant::now();
    loop {
        let far = Instant::now() + RETENTION_EVERY;
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = rx.recv() => match r {
                Some(r) => Some(r),
                None => break,
            },
            _ = tokio::time::sleep_until(sync_due.unwrap_or(far).min(next_retention)) => None,
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
        let now = Instant::now();
        let fsync = match cfg.fsync {
            FsyncPolicy::Always => !batch.is_empty(),
            FsyncPolicy::Never => false,
            FsyncPolicy::Interval => {
                (!unsynced.is_empty() || !batch.is_empty()) && now >= last_sync + cfg.fsync_interval
            }
        };
        let retain = now >= next_retention;
        let keep_from = shared.keep_from.load(Ordering::Acquire);
        let Some(mut w) = writer.take() else { break };
        let joined = tokio::task::spawn_blocking(move || {
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
        })
        .await;
        let (w, batch, res) = match joined {
            Ok(x) => x,
            Err(e) => {
                error!(error = %e, "event log writer panicked; the log stops accepting records");
                shared.healthy.store(false, Ordering::Release);
                break;
            }
        };
        if retain {
            next_retention = Instant::now() + RETENTION_EVERY;
        }
        if fsync {
            last_sync = now;
        }
        match res {
            Ok(first) => {
                shared.healthy.store(true, Ordering::Release);
                let written = w.next_seq();
                for (i, (_, done)) in batch.into_iter().enumerate() {
                    unsynced.push((first + i as u64, done));
                }
                let durable_now = match cfg.fsync {
                    FsyncPolicy::Interval => fsync,
                    _ => true,
                };
                if durable_now {
                    shared.durable.store(written, Ordering::Release);
                    for (seq, done) in unsynced.drain(..) {
                        let _ = done.send(Ok(seq));
                    }
                    sync_due = None;
                    shared.written.notify_waiters();
                } else if !unsynced.is_empty() {
                    sync_due = Some(last_sync + cfg.fsync_interval);
                }
            }
            Err(e) => {
                warn!(error = %e, records = batch.len(), "event log write failed; records not acknowledged");
                shared.healthy.store(false, Ordering::Release);
                let msg = e.to_string();
                for (_, done) in batch {
                    let _ = done.send(Err(msg.clone()));
                }
                for (_, done) in unsynced.drain(..) {
                    let _ = done.send(Err(msg.clone()));
                }
                sync_due = None;
            }
        }
        writer = Some(w);
    }
}
