//! Starting, observing and stopping a fleet of simulated agents.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::agent::{self, Shared};
use crate::config::{FleetConfig, Scenario, parse_host_port};
use crate::error::{Error, Result};
use crate::faults;
use crate::link::Endpoint;
use crate::metrics as m;
use crate::model::{Agent, Params};
use crate::status::{AgentStatus, Counters, FleetStats, MqttVersion, Wan};

/// How long [`Fleet::stop`] waits for agents to disconnect cleanly.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running fleet of simulated USP Agents, each a real MQTT client.
pub struct Fleet {
    counters: Arc<Counters>,
    statuses: Vec<Arc<Mutex<AgentStatus>>>,
    faulty: BTreeMap<Scenario, Vec<String>>,
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

impl Fleet {
    /// Validates the configuration and starts every agent (at `connect_rate` per second).
    /// Agents stop when `shutdown` is cancelled or on [`Fleet::stop`].
    pub async fn start(config: FleetConfig, shutdown: CancellationToken) -> Result<Fleet> {
        config.validate()?;
        let (host5, port5) = parse_host_port(&config.broker).map_err(|e| Error::Config(vec![e]))?;
        let (host4, port4) = match &config.broker_v311 {
            Some(b) => parse_host_port(b).map_err(|e| Error::Config(vec![e]))?,
            None => (host5.clone(), port5),
        };
        let start = Instant::now();
        let run_id = uspwatch_proto::time::now_ms();
        let params = Arc::new(Params {
            controller_eid: config.controller_eid.clone(),
            controller_prefix: config.controller_prefix.clone(),
            agent_prefix: config.agent_prefix.clone(),
            periodic_interval: config.periodic_interval,
            sample_interval: config.sample_interval,
            retry_min_wait: config.notify_retry_min_wait,
            operation_duration: config.operation_duration,
            reboot_loop_period: config.reboot_loop_period,
            wan_flap_period: config.wan_flap_period,
            track_notifies: config.track_notifies,
            start,
            run_id: format!("{run_id:x}"),
            seed: config.seed,
        });
        let shared = Arc::new(Shared {
            controller_eid: config.controller_eid.clone(),
            controller_topic: format!("{}/{}", config.controller_prefix, config.controller_eid),
            reboot_delay: config.reboot_delay,
        });
        let credentials = config
            .username
            .clone()
            .map(|u| (u, config.password.clone().unwrap_or_default()));
        let assignment = faults::assign(&config);
        let counters = Arc::new(Counters::default());
        let stop = shutdown.child_token();
        let mut faulty: BTreeMap<Scenario, Vec<String>> = BTreeMap::new();
        let mut statuses = Vec::with_capacity(config.agents);
        let mut tasks = JoinSet::new();
        metrics::gauge!(m::AGENTS).increment(config.agents as f64);
        for n in 0..config.agents {
            let index = config.first_index + n;
            let eid = format!("{}{index:06}", config.eid_prefix);
            let v5 = config.mqtt.is_v5(index);
            let assigned = assignment.get(&index).cloned().unwrap_or_default();
            for (s, _) in &assigned {
                faulty.entry(*s).or_default().push(eid.clone());
            }
            let status = Arc::new(Mutex::new(AgentStatus {
                eid: eid.clone(),
                index,
                mqtt: if v5 {
                    MqttVersion::V5
                } else {
                    MqttVersion::V311
                },
                wan: Wan::of_index(index),
                connected: false,
                boots: 0,
                faults: Vec::new(),
                commands: Vec::new(),
                notifies: Vec::new(),
            }));
            let model = Agent::new(
                params.clone(),
                index,
                eid.clone(),
                v5,
                &assigned,
                counters.clone(),
                status.clone(),
            );
            let (host, port) = if v5 { (&host5, port5) } else { (&host4, port4) };
            let ep = Endpoint {
                host: host.clone(),
                port,
                v5,
                client_id: eid,
                credentials: credentials.clone(),
            };
            let delay = Duration::from_secs_f64(n as f64 / f64::from(config.connect_rate));
            tasks.spawn(agent::run(model, ep, shared.clone(), delay, stop.clone()));
            statuses.push(status);
        }
        info!(
            agents = config.agents,
            broker = %config.broker,
            mqtt = %config.mqtt,
            faulty = assignment.len(),
            "simulated fleet started"
        );
        Ok(Fleet {
            counters,
            statuses,
            faulty,
            tasks,
            stop,
        })
    }

    /// Fleet-wide totals.
    pub fn stats(&self) -> FleetStats {
        self.counters.snapshot(self.statuses.len())
    }

    /// Every agent's status, in index order.
    pub fn agents(&self) -> Vec<AgentStatus> {
        self.statuses.iter().map(|s| s.lock().clone()).collect()
    }

    /// One agent's status by Endpoint ID.
    pub fn agent(&self, eid: &str) -> Option<AgentStatus> {
        self.statuses
            .iter()
            .map(|s| s.lock())
            .find(|s| s.eid == eid)
            .map(|s| s.clone())
    }

    /// Endpoint IDs of the agents assigned `scenario` (deterministic with the seed).
    pub fn faulty(&self, scenario: Scenario) -> Vec<String> {
        self.faulty.get(&scenario).cloned().unwrap_or_default()
    }

    /// Waits until every agent is connected at the same time.
    pub async fn wait_all_connected(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let agents = self.statuses.len();
        loop {
            let connected = self.counters.connected.load(Relaxed);
            if connected >= agents {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotConnected {
                    connected,
                    agents,
                    timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Disconnects every agent cleanly (DisconnectRecord, then MQTT DISCONNECT) and waits for
    /// their tasks to end.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_TIMEOUT, all).await.is_err() {
            self.tasks.abort_all();
        }
        metrics::gauge!(m::AGENTS).decrement(self.statuses.len() as f64);
        info!(agents = self.statuses.len(), "simulated fleet stopped");
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
