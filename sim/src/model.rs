//! One simulated USP Agent as a sans-IO state machine: its TR-181 tree, subscriptions, faults,
//! pending Notifies and timers. The network driver ([`crate::agent`]) feeds it received Records
//! and the current time and carries out the [`Out`]puts; tests drive it directly.

mod diagnostics;
mod factory;
mod requests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tracing::debug;
use uspwatch_proto::pb::usp::{self, Msg, body, response};
use uspwatch_proto::{Limits, Message, builder, validate, wrap};

use crate::config::Scenario;
use crate::faults::{self, jitter, ranges};
use crate::status::{AgentStatus, Counters, FaultStatus, NotifyRecord, Wan};
use crate::tree::{PathPattern, Tree};

pub(crate) const SUB_TABLE: &str = "Device.LocalAgent.Subscription.";
const REQUEST_TABLE: &str = "Device.LocalAgent.Request.";
/// R-NOT.3: the retry interval stops growing after the 10th retry.
const MAX_BACKOFF_EXPONENT: u32 = 10;

/// Settings every agent of a fleet shares.
#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) controller_eid: String,
    pub(crate) controller_prefix: String,
    pub(crate) agent_prefix: String,
    pub(crate) periodic_interval: Duration,
    pub(crate) sample_interval: Duration,
    pub(crate) retry_min_wait: Duration,
    pub(crate) operation_duration: Duration,
    pub(crate) reboot_loop_period: Duration,
    pub(crate) wan_flap_period: Duration,
    pub(crate) track_notifies: bool,
    /// The fleet's start: fault onsets count from here.
    pub(crate) start: Instant,
    /// Distinguishes msg_ids of separate fleet runs (event ids must stay unique in a sink that
    /// outlives one run).
    pub(crate) run_id: String,
    pub(crate) seed: u64,
}

/// Where a Record goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Dest {
    /// The Controller's topic (`<controller_prefix>/<controller EID>`).
    Controller,
    /// A reply topic taken from the request.
    Reply(String),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Out {
    Publish {
        to: Dest,
        payload: Bytes,
    },
    /// Go offline and come back with a Boot!. `graceful` (a commanded reboot) sends a
    /// DisconnectRecord and MQTT DISCONNECT; otherwise the connection just drops (a crash).
    Reboot {
        graceful: bool,
    },
}

#[derive(Debug)]
struct Fault {
    scenario: Scenario,
    onset: Duration,
    active: bool,
    cleared: bool,
}

#[derive(Debug)]
struct Sub {
    id: String,
    enable: bool,
    notif_type: String,
    refs: Vec<PathPattern>,
    retry: bool,
}

#[derive(Debug)]
struct Pending {
    msg_id: String,
    payload: Bytes,
    first_sent: Instant,
    retries: u32,
    next_retry: Instant,
}

#[derive(Debug)]
struct AsyncOp {
    instance: u32,
    obj_path: &'static str,
    command_name: &'static str,
    command_key: String,
    input_args: BTreeMap<String, String>,
    due: Instant,
}

/// One simulated agent.
pub(crate) struct Agent {
    p: Arc<Params>,
    pub(crate) index: usize,
    pub(crate) eid: String,
    pub(crate) v5: bool,
    wan: Wan,
    tree: Tree,
    subs: Vec<Sub>,
    faults: Vec<Fault>,
    rng: SmallRng,
    seq: u64,
    online: bool,
    reply_topic: String,
    boot_at: Instant,
    pending_boot: Option<(&'static str, String)>,
    pending: Vec<Pending>,
    ops: Vec<AsyncOp>,
    next_request: u32,
    next_sample: Instant,
    next_periodic: Instant,
    next_flap: Option<Instant>,
    next_local_reboot: Option<Instant>,
    /// `Controller.1.PeriodicNotifInterval` once a Controller has set it.
    periodic_override: Option<Duration>,
    counters: Arc<Counters>,
    status: Arc<Mutex<AgentStatus>>,
}

impl Agent {
    pub(crate) fn new(
        p: Arc<Params>,
        index: usize,
        eid: String,
        v5: bool,
        assigned: &[(Scenario, Duration)],
        counters: Arc<Counters>,
        status: Arc<Mutex<AgentStatus>>,
    ) -> Agent {
        let mut rng =
            SmallRng::seed_from_u64(p.seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let wan = Wan::of_index(index);
        let tree = factory::tree(&p, &eid, index, wan, &mut rng);
        let now = Instant::now();
        // Spread the fleet's ticks over the interval so agents do not all fire at once.
        let phase = |d: Duration, rng: &mut SmallRng| d.mul_f64(rng.random_range(0.0..1.0));
        let next_sample = now + phase(p.sample_interval, &mut rng);
        let next_periodic = now + phase(p.periodic_interval, &mut rng);
        let reply_topic = format!("{}/{}", p.agent_prefix, eid);
        let mut a = Agent {
            p,
            index,
            eid,
            v5,
            wan,
            tree,
            subs: Vec::new(),
            faults: assigned
                .iter()
                .map(|(s, o)| Fault {
                    scenario: *s,
                    onset: *o,
                    active: false,
                    cleared: false,
                })
                .collect(),
            rng,
            seq: 0,
            online: false,
            reply_topic,
            boot_at: now,
            pending_boot: Some(("LocalReboot", String::new())),
            pending: Vec::new(),
            ops: Vec::new(),
            next_request: 1,
            next_sample,
            next_periodic,
            next_flap: None,
            next_local_reboot: None,
            periodic_override: None,
            counters,
            status,
        };
        a.rebuild_subs();
        a.publish_faults();
        a
    }

    /// The agent's own topic: where it subscribes and what it gives as its reply-to.
    pub(crate) fn agent_topic(&self) -> String {
        format!("{}/{}", self.p.agent_prefix, self.eid)
    }

    /// The MQTT session is up and the subscription granted: MQTTConnect record (R-MTP.6), then
    /// Boot! if this is a fresh boot, then every unacknowledged Notify again.
    pub(crate) fn on_connected(&mut self, now: Instant, reply_topic: &str) -> Vec<Out> {
        if !self.online {
            self.online = true;
            self.counters.set_connected(true);
            self.status.lock().connected = true;
        }
        self.reply_topic = reply_topic.to_string();
        let record = builder::mqtt_connect(
            &self.eid,
            &self.p.controller_eid,
            self.v5,
            &self.reply_topic,
        );
        let mut out = vec![Out::Publish {
            to: Dest::Controller,
            payload: Bytes::from(record.encode_to_vec()),
        }];
        let mut again = Vec::new();
        if !self.fault_active(Scenario::Silent) {
            for p in &mut self.pending {
                p.retries += 1;
                p.next_retry = now + backoff(&mut self.rng, self.p.retry_min_wait, p.retries);
                self.counters.retried();
                again.push(Out::Publish {
                    to: Dest::Controller,
                    payload: p.payload.clone(),
                });
            }
        }
        if let Some((cause, key)) = self.pending_boot.take() {
            self.boot(now, cause, key, &mut out);
        }
        out.extend(again);
        out
    }

    fn boot(&mut self, now: Instant, cause: &'static str, key: String, out: &mut Vec<Out>) {
        self.boot_at = now;
        self.tree.set("Device.DeviceInfo.UpTime", "0");
        if self.fault_active(Scenario::RebootLoop) {
            self.next_local_reboot = Some(now + self.reboot_loop_period());
        }
        let map = serde_json::json!({
            "Device.DeviceInfo.SoftwareVersion": self.tree.get("Device.DeviceInfo.SoftwareVersion"),
            "Device.DeviceInfo.ModelName": self.tree.get("Device.DeviceInfo.ModelName"),
        });
        let args = BTreeMap::from([
            ("CommandKey".to_string(), key),
            ("Cause".to_string(), cause.to_string()),
            ("FirmwareUpdated".to_string(), "false".to_string()),
            ("ParameterMap".to_string(), map.to_string()),
        ]);
        self.status.lock().boots += 1;
        out.extend(self.emit_event(now, "Device.", "Boot!", args));
        // The radio picks its channel at start-up, which is a change of the watched Channel:
        // the controller learns the current channel before it ever needs to move it.
        let channel = "Device.WiFi.Radio.1.Channel";
        if let Some(value) = self.tree.get(channel).map(str::to_string) {
            out.extend(
                self.emit(now, "ValueChange", channel, |msg_id, sub, send_resp| {
                    builder::value_change(msg_id, sub, send_resp, channel, &value)
                }),
            );
        }
    }

    /// The MQTT session ended (dropped, rebooting or shutting down).
    pub(crate) fn on_disconnected(&mut self) {
        if self.online {
            self.online = false;
            self.counters.set_connected(false);
            self.status.lock().connected = false;
        }
    }

    /// A Record arrived on the agent's topic. `reply` is the MQTT 5 Response Topic or the
    /// decoded MQTT 3.1.1 `/reply-to=` suffix.
    pub(crate) fn on_record(
        &mut self,
        now: Instant,
        payload: &[u8],
        reply: Option<String>,
    ) -> Vec<Out> {
        let decoded = match validate(payload, &Limits::default()) {
            Ok(d) => d,
            Err(e) => {
                debug!(endpoint_id = %self.eid, reason = e.reason().as_str(), "ignoring invalid USP record");
                self.counters.invalid();
                return Vec::new();
            }
        };
        if decoded.record.to_id != self.eid {
            debug!(endpoint_id = %self.eid, to_id = %decoded.record.to_id, "ignoring record addressed elsewhere");
            self.counters.invalid();
            return Vec::new();
        }
        let from = decoded.record.from_id.clone();
        let Some(Msg {
            header: Some(header),
            body: Some(body),
        }) = decoded.msg().cloned()
        else {
            return Vec::new();
        };
        match body.msg_body {
            Some(body::MsgBody::Request(r)) => {
                let reply = match reply {
                    Some(r) => Dest::Reply(r),
                    None => Dest::Reply(format!("{}/{}", self.p.controller_prefix, from)),
                };
                self.on_request(now, &from, &header.msg_id, r, reply)
            }
            Some(body::MsgBody::Response(usp::Response {
                resp_type: Some(response::RespType::NotifyResp(_)),
            })) => {
                self.on_notify_resp(now, &header.msg_id);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn on_notify_resp(&mut self, now: Instant, msg_id: &str) {
        let Some(i) = self.pending.iter().position(|p| p.msg_id == msg_id) else {
            return;
        };
        let p = self.pending.swap_remove(i);
        self.counters
            .acked(now.saturating_duration_since(p.first_sent));
        if self.p.track_notifies {
            let mut st = self.status.lock();
            if let Some(r) = st.notifies.iter_mut().rev().find(|r| r.msg_id == msg_id) {
                r.acked = true;
            }
        }
    }

    /// When [`Agent::on_timer`] next has something to do.
    pub(crate) fn next_deadline(&self) -> Instant {
        let mut d = self.next_sample.min(self.next_periodic);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                d = d.min(t);
            }
        };
        consider(self.next_flap);
        consider(self.next_local_reboot);
        for f in self.faults.iter().filter(|f| !f.active && !f.cleared) {
            consider(Some(self.p.start + f.onset));
        }
        for o in &self.ops {
            consider(Some(o.due));
        }
        if self.online && !self.fault_active(Scenario::Silent) {
            for p in &self.pending {
                consider(Some(p.next_retry));
            }
        }
        d
    }

    /// Runs everything due at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        self.activate_faults(now);
        if self.next_local_reboot.is_some_and(|t| t <= now) {
            self.next_local_reboot = None;
            self.begin_reboot(false, String::new());
            out.push(Out::Reboot { graceful: false });
            return out;
        }
        if self.next_sample <= now {
            self.next_sample = advance(self.next_sample, self.p.sample_interval, now);
            if self.online {
                self.sample(now, &mut out);
            }
        }
        if self.next_periodic <= now {
            let interval = self.periodic_interval();
            self.next_periodic = advance(self.next_periodic, interval, now);
            if self.online {
                out.extend(self.emit_event(
                    now,
                    "Device.LocalAgent.",
                    "Periodic!",
                    BTreeMap::new(),
                ));
            }
        }
        if self.next_flap.is_some_and(|t| t <= now) {
            self.next_flap = Some(now + self.flap_period());
            let next = if self.tree.get("Device.IP.Interface.1.Status") == Some("Up") {
                "Down"
            } else {
                "Up"
            };
            out.extend(self.change("Device.IP.Interface.1.Status", next.to_string(), now));
        }
        let due: Vec<AsyncOp> = {
            let (due, rest) = std::mem::take(&mut self.ops)
                .into_iter()
                .partition(|o| o.due <= now);
            self.ops = rest;
            due
        };
        for op in due {
            out.extend(self.complete_operation(now, op));
        }
        if self.online && !self.fault_active(Scenario::Silent) {
            for p in self.pending.iter_mut().filter(|p| p.next_retry <= now) {
                p.retries += 1;
                p.next_retry = now + backoff(&mut self.rng, self.p.retry_min_wait, p.retries);
                self.counters.retried();
                out.push(Out::Publish {
                    to: Dest::Controller,
                    payload: p.payload.clone(),
                });
            }
        }
        out
    }

    fn periodic_interval(&self) -> Duration {
        self.periodic_override.unwrap_or(self.p.periodic_interval)
    }

    fn activate_faults(&mut self, now: Instant) {
        let start = self.p.start;
        let mut changed = false;
        let mut newly = Vec::new();
        for f in self.faults.iter_mut().filter(|f| !f.active && !f.cleared) {
            if start + f.onset <= now {
                f.active = true;
                changed = true;
                newly.push(f.scenario);
            }
        }
        for s in newly {
            match s {
                Scenario::RebootLoop => {
                    self.next_local_reboot = Some(now + self.reboot_loop_period());
                }
                Scenario::WanFlap => {
                    self.next_flap = Some(now + self.flap_period().mul_f64(0.2));
                }
                _ => {}
            }
        }
        if changed {
            self.publish_faults();
        }
    }

    fn reboot_loop_period(&mut self) -> Duration {
        self.p
            .reboot_loop_period
            .mul_f64(self.rng.random_range(0.87..=1.13))
    }

    fn flap_period(&mut self) -> Duration {
        self.p
            .wan_flap_period
            .mul_f64(self.rng.random_range(0.9..=1.1))
    }

    pub(crate) fn fault_active(&self, s: Scenario) -> bool {
        self.faults.iter().any(|f| f.scenario == s && f.active)
    }

    fn clear_fault(&mut self, s: Scenario) {
        let mut changed = false;
        for f in self
            .faults
            .iter_mut()
            .filter(|f| f.scenario == s && f.active)
        {
            f.active = false;
            f.cleared = true;
            changed = true;
        }
        if changed {
            self.publish_faults();
        }
    }

    fn publish_faults(&self) {
        self.status.lock().faults = self
            .faults
            .iter()
            .map(|f| FaultStatus {
                scenario: f.scenario,
                onset: f.onset,
                active: f.active,
                cleared: f.cleared,
            })
            .collect();
    }

    /// Prepares a reboot: the driver then goes offline and reconnects with a Boot!.
    fn begin_reboot(&mut self, remote: bool, command_key: String) {
        let cause = if remote {
            "RemoteReboot"
        } else {
            "LocalReboot"
        };
        self.pending_boot = Some((cause, command_key));
        self.ops.clear();
        self.tree.remove_object(REQUEST_TABLE);
        if remote {
            self.clear_fault(Scenario::MemoryLeak);
            self.clear_fault(Scenario::Silent);
        }
        if !self.fault_active(Scenario::MemoryLeak) {
            let free = self.rng.random_range(ranges::FREE);
            self.tree
                .set("Device.DeviceInfo.MemoryStatus.Free", free.to_string());
        }
        // R-NOT.4: the retry count restarts after a reboot.
        for p in &mut self.pending {
            p.retries = 0;
        }
        self.counters.rebooted(remote);
    }

    fn int(&self, path: &str) -> Option<i64> {
        self.tree.get(path).and_then(|v| v.parse().ok())
    }

    /// One sample tick: every measured value moves, and each change is notified.
    fn sample(&mut self, now: Instant, out: &mut Vec<Out>) {
        let uptime = now.saturating_duration_since(self.boot_at).as_secs();
        self.tree
            .set("Device.DeviceInfo.UpTime", uptime.to_string());
        let signal = "Device.WiFi.AccessPoint.1.AssociatedDevice.1.SignalStrength";
        let prev = self.int(signal);
        let s = jitter(&mut self.rng, ranges::SIGNAL, prev);
        self.tree.set(signal, s.to_string());

        let mut values: Vec<(&'static str, i64)> = Vec::with_capacity(6);
        let mut next = |path: &'static str, normal, faulty, fault: Scenario, a: &mut Agent| {
            let range = if a.fault_active(fault) {
                faulty
            } else {
                normal
            };
            let prev = a.int(path);
            let v = jitter(&mut a.rng, range, prev);
            values.push((path, v));
        };
        next(
            "Device.WiFi.Radio.1.Stats.Noise",
            ranges::NOISE,
            ranges::NOISE_INTERFERENCE,
            Scenario::WifiInterference,
            self,
        );
        next(
            "Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.Value",
            ranges::TEMP,
            ranges::TEMP_HOT,
            Scenario::Overheating,
            self,
        );
        next(
            "Device.DeviceInfo.ProcessStatus.CPUUsage",
            ranges::CPU,
            ranges::CPU_LEAK,
            Scenario::MemoryLeak,
            self,
        );
        match self.wan {
            Wan::Dsl => next(
                "Device.DSL.Line.1.DownstreamNoiseMargin",
                ranges::DSL_MARGIN,
                ranges::DSL_MARGIN_BAD,
                Scenario::DslDegradation,
                self,
            ),
            Wan::Pon => next(
                "Device.Optical.Interface.1.OpticalSignalLevel",
                ranges::PON_RX,
                ranges::PON_RX_LOW,
                Scenario::PonLowPower,
                self,
            ),
        }
        let free_path = "Device.DeviceInfo.MemoryStatus.Free";
        let prev_free = self.int(free_path).unwrap_or(250_000);
        let free = if self.fault_active(Scenario::MemoryLeak) {
            faults::leak_step(&mut self.rng, prev_free)
        } else {
            jitter(&mut self.rng, ranges::FREE, Some(prev_free))
        };
        values.push((free_path, free));
        for (path, v) in values {
            out.extend(self.change(path, v.to_string(), now));
        }
    }

    /// Sets a parameter and notifies the ValueChange subscriptions that cover it.
    fn change(&mut self, path: &str, value: String, now: Instant) -> Vec<Out> {
        if !self.tree.set(path, value.clone()) {
            return Vec::new();
        }
        self.emit(now, "ValueChange", path, |msg_id, sub, send_resp| {
            builder::value_change(msg_id, sub, send_resp, path, &value)
        })
    }

    fn emit_event(
        &mut self,
        now: Instant,
        obj: &str,
        name: &str,
        args: BTreeMap<String, String>,
    ) -> Vec<Out> {
        let path = format!("{obj}{name}");
        self.emit(now, "Event", &path, |msg_id, sub, send_resp| {
            builder::event(msg_id, sub, send_resp, obj, name, args.clone())
        })
    }

    /// Sends one Notify per enabled subscription of `notif_type` whose ReferenceList covers
    /// `path`. A silent agent sends nothing; an offline one queues what needs a response.
    fn emit(
        &mut self,
        now: Instant,
        notif_type: &str,
        path: &str,
        make: impl Fn(&str, &str, bool) -> Msg,
    ) -> Vec<Out> {
        if self.fault_active(Scenario::Silent) {
            return Vec::new();
        }
        let matching: Vec<(String, bool)> = self
            .subs
            .iter()
            .filter(|s| s.enable && s.notif_type == notif_type)
            .filter(|s| s.refs.iter().any(|r| r.covers(&self.tree, path)))
            .map(|s| (s.id.clone(), s.retry))
            .collect();
        let mut out = Vec::new();
        for (sub, send_resp) in matching {
            self.seq += 1;
            let msg_id = format!("{}-{}", self.p.run_id, self.seq);
            let msg = make(&msg_id, &sub, send_resp);
            let payload =
                Bytes::from(wrap(&msg, &self.eid, &self.p.controller_eid).encode_to_vec());
            self.counters.sent(kind_label(notif_type), send_resp);
            if send_resp {
                if self.p.track_notifies {
                    self.status.lock().notifies.push(NotifyRecord {
                        msg_id: msg_id.clone(),
                        subscription_id: sub.clone(),
                        acked: false,
                    });
                }
                self.pending.push(Pending {
                    msg_id,
                    payload: payload.clone(),
                    first_sent: now,
                    retries: 0,
                    next_retry: now + backoff(&mut self.rng, self.p.retry_min_wait, 0),
                });
            }
            if self.online {
                out.push(Out::Publish {
                    to: Dest::Controller,
                    payload,
                });
            }
        }
        out
    }

    fn rebuild_subs(&mut self) {
        self.subs = self
            .tree
            .instances(SUB_TABLE)
            .into_iter()
            .map(|i| {
                let get = |p: &str| {
                    self.tree
                        .get(&format!("{SUB_TABLE}{i}.{p}"))
                        .unwrap_or_default()
                };
                Sub {
                    id: get("ID").to_string(),
                    enable: get("Enable") == "true",
                    notif_type: get("NotifType").to_string(),
                    refs: get("ReferenceList")
                        .split(',')
                        .filter_map(|r| PathPattern::parse(r.trim()).ok())
                        .collect(),
                    retry: get("NotifRetry") == "true",
                }
            })
            .collect();
    }

    /// The number of Notifies awaiting a NotifyResp.
    #[cfg(test)]
    pub(crate) fn unacked(&self) -> usize {
        self.pending.len()
    }
}

fn kind_label(notif_type: &str) -> &'static str {
    match notif_type {
        "ValueChange" => "value_change",
        "Event" => "event",
        "OperationComplete" => "operation_complete",
        _ => "other",
    }
}

/// Moves a periodic deadline past `now`, skipping ticks that were missed.
fn advance(mut t: Instant, every: Duration, now: Instant) -> Instant {
    while t <= now {
        t += every;
    }
    t
}

/// The wait before retry `n + 1` after `n` retries (R-NOT.2/3): uniformly random in
/// `[m·2^n, m·2^(n+1)]` with the default multiplier of 2000 (×2), the exponent capped at 10.
pub(crate) fn backoff(rng: &mut impl Rng, min_wait: Duration, retries: u32) -> Duration {
    let low = min_wait * 2u32.pow(retries.min(MAX_BACKOFF_EXPONENT - 1));
    low.mul_f64(rng.random_range(1.0..=2.0))
}

#[cfg(test)]
mod tests;
