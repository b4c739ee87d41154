//! The load generator. It runs in a child process (`uspwatch bench --worker <spec>`) so the
//! gateway's memory and file descriptors are measured and limited apart from the agents'.
//! It reports on stdout, one JSON object per line, and takes commands on stdin.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::Packet;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use uspwatch_proto::pb::usp::{self, body::MsgBody, response::RespType};
use uspwatch_proto::time::{micros_u64, millis_u64};
use uspwatch_proto::{Message, Payload, builder, wrap};

use super::client::{Conn, source_addr};
use super::hist::{Hist, Snapshot};

/// Where agents live in the topic tree and who they report to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub broker: SocketAddr,
    pub controller_eid: String,
    pub controller_topic: String,
    pub agent_prefix: String,
    pub eid_prefix: String,
    /// Number of 127.0.0.x source addresses to spread agents over.
    pub sources: usize,
}

impl Target {
    fn eid(&self, i: usize) -> String {
        format!("{}{i:06}", self.eid_prefix)
    }
}

/// What an agent waits for before its next Notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gate {
    /// The USP NotifyResp (the controller made the event durable).
    NotifyResp,
    /// The MQTT PUBACK (plain broker, nobody answers).
    PubAck,
}

/// One worker's job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Spec {
    /// `agents` agents send ValueChange Notifies for `duration_ms`, each with at most
    /// `window` unanswered; `rate` caps the total per second (0 = as fast as answered).
    Ingest {
        target: Target,
        first: usize,
        agents: usize,
        window: usize,
        rate: u64,
        duration_ms: u64,
        gate: Gate,
        path: String,
        /// Bytes of each Notify's value; 0 = a short number.
        #[serde(default)]
        value_size: usize,
    },
    /// `agents` idle agents connect at `connect_rate` per second; on the stdin line `storm`
    /// all drop and reconnect spread over `storm_window_ms`.
    Idle {
        target: Target,
        first: usize,
        agents: usize,
        connect_rate: u64,
        storm_window_ms: u64,
    },
    /// `reps` agents connect; one after another, each sends a Notify crossing the rule
    /// threshold and waits (up to `timeout_ms`) for the Set command the rule sends back.
    Fault {
        target: Target,
        first: usize,
        reps: usize,
        path: String,
        value: String,
        timeout_ms: u64,
    },
    /// A stock rumqttd in this process, for the connection baseline: prints its address, and
    /// its RSS for every stdin line `rss`, until stdin closes.
    PlainBroker {
        max_connections: usize,
        controller_prefix: String,
        controller_topic: String,
    },
}

/// Lines a worker prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Report {
    /// Every agent has tried to connect.
    Connected {
        up: u64,
        errors: u64,
        elapsed_ms: u64,
    },
    /// Ingest finished.
    Ingested {
        sent: u64,
        answered: u64,
        errors: u64,
        elapsed_ms: u64,
        latency: Snapshot,
    },
    /// The reconnect storm finished.
    Recovered {
        up: u64,
        errors: u64,
        elapsed_ms: u64,
    },
    /// The stock broker listens.
    Listening { addr: SocketAddr },
    /// Resident set size of the worker process.
    Rss { kib: u64 },
    /// The fault repetitions finished.
    Faults {
        latency: Snapshot,
        timeouts: u64,
        errors: u64,
    },
}

fn emit(r: &Report) {
    if let Ok(line) = serde_json::to_string(r) {
        println!("{line}");
    }
}

const KEEP_ALIVE: u16 = 60;
/// Connection attempts in progress at once.
const CONNECT_PARALLELISM: usize = 256;
/// How long after its scheduled time an agent keeps retrying to connect.
const RETRY_FOR: Duration = Duration::from_secs(60);

pub async fn run(spec: Spec) -> anyhow::Result<()> {
    match spec {
        Spec::Ingest {
            target,
            first,
            agents,
            window,
            rate,
            duration_ms,
            gate,
            path,
            value_size,
        } => {
            let value = (value_size > 0).then(|| Arc::new("v".repeat(value_size)));
            ingest(
                Arc::new(target),
                first,
                agents,
                window.max(1),
                rate,
                Duration::from_millis(duration_ms),
                gate,
                (Arc::new(path), value),
            )
            .await
        }
        Spec::Idle {
            target,
            first,
            agents,
            connect_rate,
            storm_window_ms,
        } => {
            idle(
                Arc::new(target),
                first,
                agents,
                connect_rate.max(1),
                Duration::from_millis(storm_window_ms),
            )
            .await
        }
        Spec::Fault {
            target,
            first,
            reps,
            path,
            value,
            timeout_ms,
        } => {
            fault(
                target,
                first,
                reps,
                &path,
                &value,
                Duration::from_millis(timeout_ms),
            )
            .await
        }
        Spec::PlainBroker {
            max_connections,
            controller_prefix,
            controller_topic,
        } => {
            let plain =
                super::baseline::start(max_connections, &controller_prefix, &controller_topic)
                    .await?;
            emit(&Report::Listening { addr: plain.addr });
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim() == "rss" {
                    emit(&Report::Rss {
                        kib: super::proc::rss_kib(),
                    });
                }
            }
            Ok(())
        }
    }
}

/// Connects agents `first..first+n` at up to `rate` per second; `None` for failures.
async fn connect_all(
    t: &Arc<Target>,
    first: usize,
    n: usize,
    rate: u64,
    subscribe: bool,
    spread_over: Option<Duration>,
) -> (Vec<Option<Conn>>, u64, Duration) {
    let start = Instant::now();
    let ramp = spread_over.unwrap_or(Duration::from_secs_f64(n as f64 / rate as f64));
    let deadline = start + ramp + RETRY_FOR;
    let gate = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
    let mut tasks = Vec::with_capacity(n);
    for k in 0..n {
        let at = match spread_over {
            Some(w) => start + w.mul_f64(k as f64 / n.max(1) as f64),
            None => start + Duration::from_secs_f64(k as f64 / rate as f64),
        };
        tokio::time::sleep_until(at).await;
        let permit = gate.clone().acquire_owned().await;
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let i = first + k;
            let eid = t.eid(i);
            let topic = format!("{}/{eid}", t.agent_prefix);
            // A refused or reset connect is retried with a capped backoff, as a device would,
            // until the deadline.
            let mut attempt = 0u32;
            loop {
                let sub = subscribe.then_some(topic.as_str());
                match Conn::open(source_addr(i, t.sources), t.broker, &eid, KEEP_ALIVE, sub).await {
                    Ok(c) => return (Some(c), attempt),
                    Err(_) if Instant::now() < deadline => {
                        let backoff = Duration::from_millis(250 << attempt.min(3));
                        // Spread retries so failed agents do not return in lockstep.
                        let jitter = Duration::from_millis((i as u64 * 7919) % 250);
                        tokio::time::sleep(backoff + jitter).await;
                        attempt += 1;
                    }
                    Err(_) => return (None, attempt + 1),
                }
            }
        }));
    }
    let mut conns = Vec::with_capacity(n);
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok((c, retries)) => {
                errors += u64::from(retries);
                conns.push(c);
            }
            Err(_) => {
                errors += 1;
                conns.push(None);
            }
        }
    }
    (conns, errors, start.elapsed())
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    answered: AtomicU64,
    errors: AtomicU64,
}

/// How long an agent's warm-up exchange may take before the agent counts as failed.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(60);

#[allow(clippy::too_many_arguments)]
async fn ingest(
    t: Arc<Target>,
    first: usize,
    agents: usize,
    window: usize,
    rate: u64,
    duration: Duration,
    gate: Gate,
    (path, value): (Arc<String>, Option<Arc<String>>),
) -> anyhow::Result<()> {
    let (conns, errors, took) = connect_all(&t, first, agents, 2000, true, None).await;
    let up = conns.iter().filter(|c| c.is_some()).count() as u64;
    let hist = Arc::new(Hist::default());
    let counters = Arc::new(Counters::default());
    // One unmeasured exchange per agent first: the broker's first publish to a topic scans
    // every subscribed filter, a one-time cost per agent topic that is not steady state.
    let warm: Vec<_> = conns
        .into_iter()
        .enumerate()
        .filter_map(|(k, c)| Some((k, c?)))
        .map(|(k, c)| {
            let (t, path) = (t.clone(), path.clone());
            tokio::spawn(async move {
                let mut agent = IngestAgent {
                    eid: t.eid(first + k),
                    conn: c,
                    outstanding: VecDeque::with_capacity(window),
                };
                let ok = tokio::time::timeout(WARM_UP_TIMEOUT, agent.warm_up(&t, &path, gate))
                    .await
                    .is_ok_and(|r| r.is_ok());
                (k, agent, ok)
            })
        })
        .collect();
    let mut agents = Vec::with_capacity(warm.len());
    for w in warm {
        match w.await {
            Ok((k, agent, true)) => agents.push((k, agent)),
            _ => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // Reported after the warm-up, so the gateway's counters start from here.
    emit(&Report::Connected {
        up,
        errors,
        elapsed_ms: millis_u64(took),
    });
    let start = Instant::now();
    let end = start + duration;
    // Per agent, one Notify every `interval` when a total rate is asked for.
    let interval = (rate > 0).then(|| Duration::from_secs_f64(up.max(1) as f64 / rate as f64));
    let mut tasks = Vec::new();
    for (k, agent) in agents {
        let (t, hist, counters) = (t.clone(), hist.clone(), counters.clone());
        let (path, value) = (path.clone(), value.clone());
        // Spread the agents' first sends over one interval so a fixed rate is smooth.
        let offset = interval.map_or(Duration::ZERO, |i| i.mul_f64(k as f64 / up.max(1) as f64));
        tasks.push(tokio::spawn(async move {
            if agent
                .run(
                    &t,
                    (&path, value.as_deref()),
                    window,
                    interval,
                    start + offset,
                    end,
                    gate,
                    &hist,
                    &counters,
                )
                .await
                .is_err()
            {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    emit(&Report::Ingested {
        sent: counters.sent.load(Ordering::Relaxed),
        answered: counters.answered.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        elapsed_ms: millis_u64(start.elapsed()),
        latency: hist.snapshot(),
    });
    Ok(())
}

struct IngestAgent {
    eid: String,
    conn: Conn,
    /// (msg id number, packet id, sent at), oldest first.
    outstanding: VecDeque<(u64, u16, Instant)>,
}

impl IngestAgent {
    #[allow(clippy::too_many_arguments)]
    async fn run(
        mut self,
        t: &Target,
        (path, value): (&str, Option<&String>),
        window: usize,
        interval: Option<Duration>,
        first_send: Instant,
        end: Instant,
        gate: Gate,
        hist: &Hist,
        counters: &Counters,
    ) -> anyhow::Result<()> {
        let reply = format!("{}/{}", t.agent_prefix, self.eid);
        let mut next_id: u64 = 0;
        let mut next_send = first_send;
        // After `end`, answers still arriving within a grace period are counted.
        let grace = end + Duration::from_secs(5);
        loop {
            let now = Instant::now();
            if now >= end && (self.outstanding.is_empty() || now >= grace) {
                break;
            }
            while now < end && self.outstanding.len() < window && next_send <= now {
                next_id += 1;
                let small = (next_id % 100).to_string();
                let msg = builder::value_change(
                    &next_id.to_string(),
                    "bench",
                    gate == Gate::NotifyResp,
                    path,
                    value.map_or(&small, |v| v),
                );
                let payload = Bytes::from(wrap(&msg, &self.eid, &t.controller_eid).encode_to_vec());
                let pkid = self.conn.queue_usp(&t.controller_topic, payload, &reply)?;
                self.outstanding.push_back((next_id, pkid, Instant::now()));
                counters.sent.fetch_add(1, Ordering::Relaxed);
                if let Some(i) = interval {
                    next_send += i;
                }
            }
            self.conn.flush().await?;
            let wake = if now >= end {
                grace
            } else if interval.is_some() && self.outstanding.len() < window {
                next_send.min(end)
            } else {
                end
            };
            tokio::select! {
                p = self.conn.read() => self.on_packet(p?, gate, hist, counters),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        Ok(())
    }

    /// Sends Notify 0 and waits for its answer, recording nothing.
    async fn warm_up(&mut self, t: &Target, path: &str, gate: Gate) -> anyhow::Result<()> {
        let reply = format!("{}/{}", t.agent_prefix, self.eid);
        let msg = builder::value_change("0", "bench", gate == Gate::NotifyResp, path, "0");
        let payload = Bytes::from(wrap(&msg, &self.eid, &t.controller_eid).encode_to_vec());
        let pkid = self.conn.queue_usp(&t.controller_topic, payload, &reply)?;
        self.outstanding.push_back((0, pkid, Instant::now()));
        self.conn.flush().await?;
        let (hist, counters) = (Hist::default(), Counters::default());
        while !self.outstanding.is_empty() {
            let p = self.conn.read().await?;
            self.on_packet(p, gate, &hist, &counters);
            self.conn.flush().await?;
        }
        Ok(())
    }

    fn on_packet(&mut self, p: Packet, gate: Gate, hist: &Hist, counters: &Counters) {
        let done = match (gate, p) {
            (Gate::PubAck, Packet::PubAck(a)) => self
                .outstanding
                .iter()
                .position(|(_, pkid, _)| *pkid == a.pkid),
            (Gate::NotifyResp, Packet::Publish(p)) => notify_resp_id(&p.payload)
                .and_then(|id| self.outstanding.iter().position(|(mid, _, _)| *mid == id)),
            _ => None,
        };
        if let Some(pos) = done
            && let Some((_, _, at)) = self.outstanding.remove(pos)
        {
            hist.record(micros_u64(at.elapsed()));
            counters.answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn decode_msg(payload: &[u8]) -> Option<usp::Msg> {
    match uspwatch_proto::decode(payload).ok()?.payload {
        Payload::Msg(m) => Some(m),
        _ => None,
    }
}

/// The msg id of a NotifyResp, as the number the agent gave its Notify.
fn notify_resp_id(payload: &[u8]) -> Option<u64> {
    let m = decode_msg(payload)?;
    let is_resp = matches!(
        m.body.as_ref()?.msg_body.as_ref()?,
        MsgBody::Response(usp::Response {
            resp_type: Some(RespType::NotifyResp(_))
        })
    );
    if !is_resp {
        return None;
    }
    m.header?.msg_id.parse().ok()
}

async fn idle(
    t: Arc<Target>,
    first: usize,
    agents: usize,
    connect_rate: u64,
    storm_window: Duration,
) -> anyhow::Result<()> {
    let (conns, errors, took) = connect_all(&t, first, agents, connect_rate, true, None).await;
    let up = conns.iter().filter(|c| c.is_some()).count() as u64;
    emit(&Report::Connected {
        up,
        errors,
        elapsed_ms: millis_u64(took),
    });
    let keep = hold(conns);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() != "storm" {
            continue;
        }
        // Every agent drops at once (sockets closed without DISCONNECT, as in a power cut)...
        keep.abort();
        let (conns, errors, took) =
            connect_all(&t, first, agents, connect_rate, true, Some(storm_window)).await;
        let up = conns.iter().filter(|c| c.is_some()).count() as u64;
        emit(&Report::Recovered {
            up,
            errors,
            elapsed_ms: millis_u64(took),
        });
        // ...and the returned ones stay until the parent closes stdin.
        let keep = hold(conns);
        while let Ok(Some(_)) = lines.next_line().await {}
        keep.abort();
        return Ok(());
    }
    keep.abort();
    Ok(())
}

/// Keeps idle connections alive (keep-alive pings, answering nothing) until aborted, which
/// drops every socket at once.
fn hold(conns: Vec<Option<Conn>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        for mut c in conns.into_iter().flatten() {
            set.spawn(async move {
                let mut ping =
                    tokio::time::interval(Duration::from_secs(u64::from(KEEP_ALIVE) / 2));
                ping.tick().await;
                loop {
                    tokio::select! {
                        _ = ping.tick() => {
                            if c.queue_ping().is_err() || c.flush().await.is_err() {
                                return;
                            }
                        }
                        p = c.read() => {
                            if p.is_err() || c.flush().await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
    })
}

async fn fault(
    t: Target,
    first: usize,
    reps: usize,
    path: &str,
    value: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let t = Arc::new(t);
    let (conns, errors, took) = connect_all(&t, first, reps, 500, true, None).await;
    emit(&Report::Connected {
        up: conns.iter().filter(|c| c.is_some()).count() as u64,
        errors,
        elapsed_ms: millis_u64(took),
    });
    let hist = Hist::default();
    let (mut timeouts, mut errs) = (0, 0);
    for (k, c) in conns.into_iter().enumerate() {
        let Some(mut c) = c else {
            errs += 1;
            continue;
        };
        let eid = t.eid(first + k);
        let reply = format!("{}/{eid}", t.agent_prefix);
        let msg = builder::value_change("fault-1", "bench", true, path, value);
        let payload = Bytes::from(wrap(&msg, &eid, &t.controller_eid).encode_to_vec());
        let sent = Instant::now();
        c.queue_usp(&t.controller_topic, payload, &reply)?;
        c.flush().await?;
        let got = tokio::time::timeout(timeout, async {
            loop {
                let p = c.read().await?;
                c.flush().await?;
                let Packet::Publish(p) = p else { continue };
                let Some(m) = decode_msg(&p.payload) else {
                    continue;
                };
                let is_set = matches!(
                    m.body.as_ref().and_then(|b| b.msg_body.as_ref()),
                    Some(MsgBody::Request(usp::Request {
                        req_type: Some(usp::request::ReqType::Set(_))
                    }))
                );
                if is_set {
                    let elapsed = sent.elapsed();
                    // Answer, so the controller's request completes and frees its slot.
                    let msg_id = m.header.map(|h| h.msg_id).unwrap_or_default();
                    let resp = builder::response(
                        &msg_id,
                        RespType::SetResp(usp::SetResp {
                            updated_obj_results: Vec::new(),
                        }),
                    );
                    let payload = Bytes::from(wrap(&resp, &eid, &t.controller_eid).encode_to_vec());
                    c.queue_usp(&t.controller_topic, payload, &reply)?;
                    c.flush().await?;
                    return anyhow::Ok(elapsed);
                }
            }
        })
        .await;
        match got {
            Ok(Ok(d)) => hist.record(micros_u64(d)),
            Ok(Err(_)) => errs += 1,
            Err(_) => timeouts += 1,
        }
    }
    emit(&Report::Faults {
        latency: hist.snapshot(),
        timeouts,
        errors: errs,
    });
    Ok(())
}
