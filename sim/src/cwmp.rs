//! CWMP (TR-069) mode: simulated CPEs that inform an ACS over HTTP, answer its RPCs, and
//! accept Connection Requests (HTTP GET with Digest authentication) on one shared listener,
//! with the same fault scenarios as the USP agents where CWMP can show them.
//!
//! Each CPE informs `1 BOOT` (and `0 BOOTSTRAP` the first time) at start, `2 PERIODIC` every
//! `periodic_interval`, `4 VALUE CHANGE` when its sampled values move, `6 CONNECTION REQUEST`
//! when woken, `1 BOOT` + `M Reboot` after a commanded Reboot and `8 DIAGNOSTICS COMPLETE`
//! after a requested IPPing. A channel change ends Wi-Fi interference; a Reboot ends a
//! memory leak or a silent device. A silent CPE sends nothing on its own but still answers
//! Connection Requests, so it can be remediated.

mod cpe;
mod http;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use uspwatch_cwmp::digest;

use crate::config::{FaultSpec, FleetConfig, Scenario};
use crate::error::{Error, Result};
use cpe::Cpe;

/// A CWMP fleet's settings.
#[derive(Debug, Clone)]
pub struct CwmpFleetConfig {
    /// The ACS URL, `http://ip:port/path`.
    pub acs_url: String,
    pub cpes: usize,
    /// Serial numbers are `CWMP<index>` from this index on.
    pub first_index: usize,
    pub oui: String,
    pub product_class: String,
    /// HTTP Basic credentials for the ACS; `{serial}` in the username is replaced.
    pub acs_username: Option<String>,
    pub acs_password: String,
    /// What the CPEs expect in a Connection Request.
    pub connection_request_username: String,
    pub connection_request_password: String,
    /// Where the Connection Request listener binds (port 0 picks one).
    pub connection_request_listen: SocketAddr,
    pub periodic_interval: Duration,
    pub sample_interval: Duration,
    /// Time a reboot takes.
    pub reboot_duration: Duration,
    /// The reboot-loop scenario's period.
    pub reboot_loop_period: Duration,
    pub faults: Vec<FaultSpec>,
    pub seed: u64,
}

impl Default for CwmpFleetConfig {
    fn default() -> Self {
        CwmpFleetConfig {
            acs_url: "http://127.0.0.1:7547/".into(),
            cpes: 10,
            first_index: 0,
            oui: "00256D".into(),
            product_class: "HGW".into(),
            acs_username: None,
            acs_password: String::new(),
            connection_request_username: "cr".into(),
            connection_request_password: "cr-secret".into(),
            connection_request_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            periodic_interval: Duration::from_secs(30),
            sample_interval: Duration::from_secs(5),
            reboot_duration: Duration::from_millis(500),
            reboot_loop_period: Duration::from_secs(15),
            faults: Vec::new(),
            seed: 1,
        }
    }
}

/// What one CPE did so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpeStatus {
    pub endpoint_id: String,
    /// Informs the ACS accepted.
    pub informs: u64,
    /// Sessions that ended with the ACS's `204`.
    pub sessions: u64,
    pub failed_sessions: u64,
    /// Event codes informed, with counts.
    pub events_sent: BTreeMap<String, u64>,
    /// RPC names received, in order.
    pub rpcs_received: Vec<String>,
    pub reboots: u64,
    /// Connection Requests accepted.
    pub connection_requests: u64,
    /// Connection Requests refused for bad credentials.
    pub connection_requests_refused: u64,
}

/// A running CWMP fleet.
pub struct CwmpFleet {
    cpes: Vec<(Arc<Mutex<CpeStatus>>, Vec<Scenario>)>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: CancellationToken,
    cr_addr: SocketAddr,
}

pub(crate) fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl CwmpFleet {
    /// Starts the Connection Request listener and every CPE.
    pub async fn start(cfg: CwmpFleetConfig, shutdown: CancellationToken) -> Result<CwmpFleet> {
        http::Client::new(&cfg.acs_url).map_err(|e| Error::Config(vec![e]))?;
        let shutdown = shutdown.child_token();
        let listener = TcpListener::bind(cfg.connection_request_listen)
            .await
            .map_err(|e| Error::Config(vec![format!("Connection Request listener: {e}")]))?;
        let cr_addr = listener
            .local_addr()
            .map_err(|e| Error::Config(vec![e.to_string()]))?;
        let assignment = crate::faults::assign(&FleetConfig {
            agents: cfg.cpes,
            first_index: cfg.first_index,
            seed: cfg.seed,
            faults: cfg.faults.clone(),
            ..FleetConfig::default()
        });
        let start = Instant::now();
        let mut wakers = BTreeMap::new();
        let mut cpes = Vec::new();
        let mut tasks = Vec::new();
        for index in cfg.first_index..cfg.first_index + cfg.cpes {
            let faults = assignment.get(&index).cloned().unwrap_or_default();
            let url = format!("http://{cr_addr}/cr/{index}");
            let cpe = Cpe::new(&cfg, index, &faults, url, start);
            let (wake_tx, wake_rx) = mpsc::channel(1);
            wakers.insert(index, (wake_tx, cpe.status.clone()));
            cpes.push((cpe.status.clone(), faults.iter().map(|f| f.0).collect()));
            tasks.push(tokio::spawn(run_cpe(
                cfg.clone(),
                cpe,
                wake_rx,
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(serve_connection_requests(
            listener,
            Arc::new(wakers),
            cfg.connection_request_username.clone(),
            cfg.connection_request_password.clone(),
            shutdown.clone(),
        )));
        Ok(CwmpFleet {
            cpes,
            tasks,
            shutdown,
            cr_addr,
        })
    }

    /// Every CPE's status.
    pub fn cpes(&self) -> Vec<CpeStatus> {
        self.cpes.iter().map(|(s, _)| s.lock().clone()).collect()
    }

    /// Endpoint IDs of the CPEs given `scenario`.
    pub fn faulty(&self, scenario: Scenario) -> Vec<String> {
        self.cpes
            .iter()
            .filter(|(_, f)| f.contains(&scenario))
            .map(|(s, _)| s.lock().endpoint_id.clone())
            .collect()
    }

    /// The Connection Request listener's address.
    pub fn connection_request_addr(&self) -> SocketAddr {
        self.cr_addr
    }

    /// Stops every CPE.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn run_cpe(
    cfg: CwmpFleetConfig,
    mut cpe: Cpe,
    mut wake: mpsc::Receiver<()>,
    shutdown: CancellationToken,
) {
    let Ok(mut client) = http::Client::new(&cfg.acs_url) else {
        return;
    };
    let authorization = cfg.acs_username.as_ref().map(|u| {
        use base64::Engine;
        let user = u.replace("{serial}", &format!("CWMP{:06}", cpe.index));
        let creds = format!("{user}:{}", cfg.acs_password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
    });
    let mut periodic = tokio::time::interval(cfg.periodic_interval);
    periodic.reset();
    let mut sample = tokio::time::interval(cfg.sample_interval);
    sample.reset();
    let mut reboot_loop = tokio::time::interval(cfg.reboot_loop_period);
    reboot_loop.reset();
    let mut retry_at: Option<Instant> = Some(Instant::now());
    loop {
        let due = retry_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(due), if retry_at.is_some() => {}
            _ = periodic.tick() => cpe.add_event("2 PERIODIC", ""),
            _ = sample.tick() => {
                if cpe.sample(Instant::now()) {
                    cpe.add_event("4 VALUE CHANGE", "");
                }
            }
            _ = reboot_loop.tick() => {
                if cpe.fault_active(Scenario::RebootLoop) {
                    cpe.start_boot();
                    cpe.status.lock().reboots += 1;
                }
            }
            Some(()) = wake.recv() => cpe.add_event("6 CONNECTION REQUEST", ""),
        }
        let woken = cpe.events.iter().any(|e| e.code == "6 CONNECTION REQUEST");
        if cpe.events.is_empty() || (cpe.fault_active(Scenario::Silent) && !woken) {
            retry_at = None;
            continue;
        }
        match cpe.session(&mut client, authorization.as_deref()).await {
            Ok(after) => {
                retry_at = None;
                if let Some(key) = after.reboot {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(cfg.reboot_duration) => {}
                    }
                    cpe.rebooted(&key);
                    retry_at = Some(Instant::now());
                }
                if after.diagnostics {
                    cpe.finish_diagnostics();
                    retry_at = Some(Instant::now());
                }
            }
            Err(e) => {
                debug!(endpoint_id = %cpe.eid, error = %e, "CWMP session failed; retrying");
                retry_at = Some(Instant::now() + Duration::from_millis(500));
            }
        }
    }
}

type Wakers = BTreeMap<usize, (mpsc::Sender<()>, Arc<Mutex<CpeStatus>>)>;

async fn serve_connection_requests(
    listener: TcpListener,
    wakers: Arc<Wakers>,
    username: String,
    password: String,
    shutdown: CancellationToken,
) {
    let creds = Arc::new((username, password));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(_) => continue,
            },
        };
        let (wakers, creds) = (wakers.clone(), creds.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                connection_request(stream, peer.ip(), &wakers, &creds),
            )
            .await;
        });
    }
}

/// One Connection Request connection: a Digest challenge for a request without a valid
/// answer, `200` (and a wake-up) for one with it.
async fn connection_request(
    mut s: TcpStream,
    _peer: IpAddr,
    wakers: &Wakers,
    creds: &(String, String),
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 8192 {
            return Ok(());
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let index = path
        .strip_prefix("/cr/")
        .and_then(|i| i.parse::<usize>().ok());
    let Some((waker, status)) = index.and_then(|i| wakers.get(&i)) else {
        return s
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .await;
    };
    if method != "GET" {
        return s
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            .await;
    }
    let auth = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| digest::parse_authorization(v));
    // The nonce is derived from the path and the current minute: stateless, and a captured
    // answer stops working within two minutes.
    let nonce = |minute: i64| format!("{:x}{minute:x}", fnv(path.as_bytes()));
    let minute = wall_ms() / 60_000;
    let ok = auth.as_ref().is_some_and(|a| {
        a.username == creds.0
            && a.uri == path
            && [minute, minute - 1]
                .iter()
                .any(|m| digest::verify(a, "uspwatch-sim", &nonce(*m), &creds.1, "GET"))
    });
    if ok {
        status.lock().connection_requests += 1;
        let _ = waker.try_send(());
        return s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await;
    }
    if auth.is_some() {
        status.lock().connection_requests_refused += 1;
    }
    let challenge = format!(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"uspwatch-sim\", qop=\"auth\", nonce=\"{}\", algorithm=MD5\r\nContent-Length: 0\r\n\r\n",
        nonce(minute)
    );
    s.write_all(challenge.as_bytes()).await
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
