//! Progress of a bench run on stderr: which scenario runs (`[2/5]`) and for how long, redrawn
//! in place each second on a terminal; one line per scenario otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Numbers the scenarios of one run.
pub struct Steps {
    done: usize,
    total: usize,
}

impl Steps {
    pub fn new(total: usize) -> Steps {
        Steps { done: 0, total }
    }

    /// Announces the next scenario; its ticker stops when the returned guard is dropped.
    pub fn next(&mut self, name: &str) -> Ticker {
        self.done += 1;
        let label = format!("bench [{}/{}] {name}", self.done, self.total);
        let stop = CancellationToken::new();
        if std::io::stderr().is_terminal() {
            let s = stop.clone();
            let started = Instant::now();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = s.cancelled() => break,
                        _ = tick.tick() => {
                            let mut err = std::io::stderr().lock();
                            let _ = write!(err, "\r{label} … {}s", started.elapsed().as_secs());
                            let _ = err.flush();
                        }
                    }
                }
                eprintln!();
            });
        } else {
            eprintln!("{label}");
        }
        Ticker(stop)
    }
}

pub struct Ticker(CancellationToken);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
