//! Waiting with a deadline, free ports and bounded child processes: every wait in the root
//! integration tests goes through here, so no test can hang and every timeout says what it
//! was waiting for.

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use uspwatch::Gateway;
use uspwatch_broker::ListenerKind;

/// How often the polling helpers look again.
const POLL: Duration = Duration::from_millis(200);

/// Polls `probe` until it returns `Ok`, and returns that value; panics with `what` and the
/// last `Err` once `timeout` has passed.
pub async fn eventually<T, E: Debug, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("{what}: not within {timeout:?}; last state: {e:#?}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// `eventually` for a synchronous probe.
pub async fn eventually_sync<T, E: Debug>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    eventually(what, timeout, || std::future::ready(probe())).await
}

/// A negative check: `probe` keeps returning `Ok` for the whole of `period` (a bounded wait,
/// so something arriving late is still seen); panics with the first `Err`.
pub async fn holds_for<E: Debug>(
    what: &str,
    period: Duration,
    mut probe: impl FnMut() -> Result<(), E>,
) {
    let until = Instant::now() + period;
    loop {
        if let Err(e) = probe() {
            panic!("{what}: {e:#?}");
        }
        if Instant::now() >= until {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A loopback port nobody listens on right now, for peers that cannot bind port 0 and report
/// what they got (Prometheus, chromedriver).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The bound address of one of the gateway's MQTT listeners.
pub fn listener(gw: &Gateway, kind: ListenerKind) -> Option<SocketAddr> {
    gw.broker
        .local_addrs()
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, a)| a)
}

/// A child process that is killed when the guard is dropped (a failed assertion included),
/// so no test leaves a process behind.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Waits for the child to exit; kills it and panics when it runs longer than `timeout`.
    pub fn wait_timeout(&mut self, what: &str, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.0.kill();
                    let _ = self.0.wait();
                    panic!("{what}: still running after {timeout:?}, killed");
                }
                Ok(None) => std::thread::sleep(POLL),
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
