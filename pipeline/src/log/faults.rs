//! I/O failures injected into the writer, so tests can take the paths a full or failing disk
//! takes.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

/// The line a parked writer prints before it blocks (a test then kills the process).
pub(crate) const PARKED: &str = "log-writer-parked";

#[derive(Default)]
pub(crate) struct Faults {
    /// The next write stores this many bytes of its buffer and then fails.
    short_write: Mutex<Option<usize>>,
    /// The next write stores this many bytes, prints [`PARKED`] and never returns.
    park: Mutex<Option<usize>>,
    /// How many truncates fail from now on.
    failing_truncates: AtomicU32,
}

impl Faults {
    pub(crate) fn short_write(&self, keep: usize) {
        *self.short_write.lock() = Some(keep);
    }

    pub(crate) fn park_mid_write(&self, keep: usize) {
        *self.park.lock() = Some(keep);
    }

    pub(crate) fn fail_truncates(&self, n: u32) {
        self.failing_truncates.store(n, Ordering::SeqCst);
    }

    /// `Some` when the write is taken over by a fault.
    pub(crate) fn write(&self, file: &mut File, buf: &[u8]) -> Option<io::Result<()>> {
        if let Some(keep) = self.short_write.lock().take() {
            let r = file
                .write_all(&buf[..keep.min(buf.len())])
                .and(Err(io::Error::other("injected: no space left on device")));
            return Some(r);
        }
        if let Some(keep) = self.park.lock().take() {
            let r = file.write_all(&buf[..keep.min(buf.len())]);
            println!("{PARKED}");
            let _ = io::stdout().flush();
            if r.is_ok() {
                loop {
                    std::thread::park();
                }
            }
            return Some(r);
        }
        None
    }

    pub(crate) fn truncate(&self) -> io::Result<()> {
        let left = self.failing_truncates.load(Ordering::SeqCst);
        if left > 0 {
            self.failing_truncates.store(left - 1, Ordering::SeqCst);
            return Err(io::Error::other("injected: truncate failed"));
        }
        Ok(())
    }
}
