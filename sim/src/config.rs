//! Fleet configuration: how many agents, which broker, which MQTT versions, timings and faults.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A simulated fleet.
///
/// TOML shape (every key optional; defaults shown):
/// ```toml
/// broker = "127.0.0.1:1883"
/// # broker_v311 = "127.0.0.1:1884"
/// agents = 100
/// mqtt = "mixed"
/// first_index = 1
/// eid_prefix = "os::00256D-SIM"
/// controller_eid = "self::uspwatch"
/// agent_prefix = "usp/agent"
/// controller_prefix = "usp/controller"
/// periodic_interval = "10s"
/// sample_interval = "5s"
/// notify_retry_min_wait = "5s"
/// reboot_delay = "2s"
/// operation_duration = "1s"
/// reboot_loop_period = "15s"
/// wan_flap_period = "10s"
/// connect_rate = 500
/// seed = 1
/// track_notifies = true
/// faults = ["wifi_interference:0.1@20s", "silent:0.05@30s"]
/// ```
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// MQTT 5 broker address, `host:port`. Default `127.0.0.1:1883`.
    pub broker: String,
    /// Separate MQTT 3.1.1 listener, `host:port`, for brokers that use one. Default none: the
    /// 3.1.1 agents use `broker` too.
    pub broker_v311: Option<String>,
    /// Number of agents. Default 100.
    pub agents: usize,
    /// MQTT version of the agents: `5`, `3.1.1` or `mixed`. Default `mixed`.
    pub mqtt: MqttMode,
    /// Index of the first agent; the Endpoint ID is `eid_prefix` + the index in 6 digits.
    /// Default 1.
    pub first_index: usize,
    /// Endpoint ID prefix. Default `os::00256D-SIM`.
    pub eid_prefix: String,
    /// The Controller the agents report to. Default `self::uspwatch`.
    pub controller_eid: String,
    /// Agents subscribe to `<agent_prefix>/<EID>`. Default `usp/agent`.
    pub agent_prefix: String,
    /// Agents publish to `<controller_prefix>/<controller EID>`. Default `usp/controller`.
    pub controller_prefix: String,
    /// MQTT username (all agents). Default none.
    pub username: Option<String>,
    /// MQTT password (all agents). Default none.
    pub password: Option<String>,
    /// `Device.LocalAgent.Periodic!` interval. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub periodic_interval: Duration,
    /// How often the measured values (noise, memory, CPU, …) are sampled. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
    /// `USPNotifRetryMinimumWaitInterval` (R-NOT.2): the first retry waits between this and
    /// twice this. Default 5 s (the spec's default).
    #[serde(with = "humantime_serde")]
    pub notify_retry_min_wait: Duration,
    /// How long a rebooting agent stays offline. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub reboot_delay: Duration,
    /// How long an asynchronous command (IPPing, diagnostics) runs. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub operation_duration: Duration,
    /// Time between the local reboots of a `reboot_loop` agent (±13 %). Default 15 s.
    #[serde(with = "humantime_serde")]
    pub reboot_loop_period: Duration,
    /// Time between the WAN status toggles of a `wan_flap` agent (±10 %). Default 10 s.
    #[serde(with = "humantime_serde")]
    pub wan_flap_period: Duration,
    /// Agents started per second, so a big fleet does not hit the broker at once. Default 500.
    pub connect_rate: u32,
    /// Seed for fault assignment and every simulated value. Default 1.
    pub seed: u64,
    /// Keep each agent's list of sent Notify msg_ids for [`crate::Fleet::agents`]. Turn off for
    /// long load runs where the lists would grow without bound. Default true.
    pub track_notifies: bool,
    /// Fault scenarios, e.g. `["wifi_interference:0.1@20s"]`. Default none.
    pub faults: Vec<FaultSpec>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            broker: "127.0.0.1:1883".into(),
            broker_v311: None,
            agents: 100,
            mqtt: MqttMode::Mixed,
            first_index: 1,
            eid_prefix: "os::00256D-SIM".into(),
            controller_eid: "self::uspwatch".into(),
            agent_prefix: "usp/agent".into(),
            controller_prefix: "usp/controller".into(),
            username: None,
            password: None,
            periodic_interval: Duration::from_secs(10),
            sample_interval: Duration::from_secs(5),
            notify_retry_min_wait: Duration::from_secs(5),
            reboot_delay: Duration::from_secs(2),
            operation_duration: Duration::from_secs(1),
            reboot_loop_period: Duration::from_secs(15),
            wan_flap_period: Duration::from_secs(10),
            connect_rate: 500,
            seed: 1,
            track_notifies: true,
            faults: Vec::new(),
        }
    }
}

impl fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetConfig")
            .field("broker", &self.broker)
            .field("broker_v311", &self.broker_v311)
            .field("agents", &self.agents)
            .field("mqtt", &self.mqtt)
            .field("first_index", &self.first_index)
            .field("eid_prefix", &self.eid_prefix)
            .field("controller_eid", &self.controller_eid)
            .field("agent_prefix", &self.agent_prefix)
            .field("controller_prefix", &self.controller_prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("periodic_interval", &self.periodic_interval)
            .field("sample_interval", &self.sample_interval)
            .field("notify_retry_min_wait", &self.notify_retry_min_wait)
            .field("reboot_delay", &self.reboot_delay)
            .field("operation_duration", &self.operation_duration)
            .field("reboot_loop_period", &self.reboot_loop_period)
            .field("wan_flap_period", &self.wan_flap_period)
            .field("connect_rate", &self.connect_rate)
            .field("seed", &self.seed)
            .field("track_notifies", &self.track_notifies)
            .field("faults", &self.faults)
            .finish()
    }
}

impl FleetConfig {
    /// Checks the configuration and reports every problem at once.
    pub fn validate(&self) -> Result<()> {
        let mut errs = Vec::new();
        if let Err(e) = parse_host_port(&self.broker) {
            errs.push(format!("broker: {e}"));
        }
        if let Some(b) = &self.broker_v311
            && let Err(e) = parse_host_port(b)
        {
            errs.push(format!("broker_v311: {e}"));
        }
        if self.first_index + self.agents > 1_000_000 {
            errs.push("first_index + agents must stay below 1000000 (6-digit index)".into());
        }
        for (name, id) in [
            ("controller_eid", &self.controller_eid),
            ("eid_prefix", &format!("{}000001", self.eid_prefix)),
        ] {
            if let Err(e) = uspwatch_proto::validate_endpoint_id(id) {
                errs.push(format!("{name}: {e}"));
            }
        }
        for (name, p) in [
            ("agent_prefix", &self.agent_prefix),
            ("controller_prefix", &self.controller_prefix),
        ] {
            if p.is_empty() || p.contains(['+', '#']) || p.ends_with('/') {
                errs.push(format!(
                    "{name}: {p:?} must be a non-empty topic without wildcards or trailing /"
                ));
            }
        }
        for (name, d) in [
            ("periodic_interval", self.periodic_interval),
            ("sample_interval", self.sample_interval),
            ("notify_retry_min_wait", self.notify_retry_min_wait),
            ("reboot_loop_period", self.reboot_loop_period),
            ("wan_flap_period", self.wan_flap_period),
        ] {
            if d < Duration::from_millis(10) {
                errs.push(format!("{name}: {d:?} is below the 10ms minimum"));
            }
        }
        if self.connect_rate == 0 {
            errs.push("connect_rate: must be at least 1".into());
        }
        if self.password.is_some() && self.username.is_none() {
            errs.push("password: set without a username".into());
        }
        for f in &self.faults {
            if !(0.0..=1.0).contains(&f.fraction) || f.fraction.is_nan() {
                errs.push(format!("faults: {f}: fraction must be within 0..=1"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(errs))
        }
    }
}

pub(crate) fn parse_host_port(s: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{s:?} has an invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    Ok((host.to_string(), port))
}

/// Which MQTT version the agents speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MqttMode {
    /// MQTT 5 for every agent.
    #[serde(rename = "5")]
    V5,
    /// MQTT 3.1.1 for every agent.
    #[serde(rename = "3.1.1")]
    V311,
    /// Alternating in pairs of indices (0–1 MQTT 5, 2–3 MQTT 3.1.1, …), so DSL (even) and PON
    /// (odd) agents occur with both versions.
    #[default]
    #[serde(rename = "mixed")]
    Mixed,
}

impl MqttMode {
    /// Whether the agent with this index speaks MQTT 5.
    pub fn is_v5(self, index: usize) -> bool {
        match self {
            MqttMode::V5 => true,
            MqttMode::V311 => false,
            MqttMode::Mixed => (index / 2).is_multiple_of(2),
        }
    }
}

impl FromStr for MqttMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "5" | "v5" | "5.0" => Ok(MqttMode::V5),
            "3.1.1" | "311" | "v311" | "4" | "v4" => Ok(MqttMode::V311),
            "mixed" => Ok(MqttMode::Mixed),
            _ => Err(Error::UnknownMqttMode(s.to_string())),
        }
    }
}

impl fmt::Display for MqttMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MqttMode::V5 => "5",
            MqttMode::V311 => "3.1.1",
            MqttMode::Mixed => "mixed",
        })
    }
}

/// A fault scenario (see the simulator/rule-pack contract for the values each produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Wi-Fi noise rises to -65…-55 dBm until the channel is changed.
    WifiInterference,
    /// `Device.IP.Interface.1.Status` toggles Up/Down every ~10 s.
    WanFlap,
    /// A local reboot every ~15 s; nothing the controller does fixes it.
    RebootLoop,
    /// Free memory falls ~5 % of Total per sample, CPU 90+ %; a Reboot fixes it.
    MemoryLeak,
    /// Temperature 90…100 °C.
    Overheating,
    /// No notifications at all while connected; a Reboot fixes it.
    Silent,
    /// DSL downstream noise margin 10…30 (0.1 dB); DSL agents (even index) only.
    DslDegradation,
    /// Optical RX power -29000…-27500 (0.001 dBm); PON agents (odd index) only.
    PonLowPower,
    /// IPPing reports 3–5 failures of 5, or fails with 7022.
    DiagFailure,
}

impl Scenario {
    /// Every scenario, in assignment order.
    pub const ALL: [Scenario; 9] = [
        Scenario::WifiInterference,
        Scenario::WanFlap,
        Scenario::RebootLoop,
        Scenario::MemoryLeak,
        Scenario::Overheating,
        Scenario::Silent,
        Scenario::DslDegradation,
        Scenario::PonLowPower,
        Scenario::DiagFailure,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::WifiInterference => "wifi_interference",
            Scenario::WanFlap => "wan_flap",
            Scenario::RebootLoop => "reboot_loop",
            Scenario::MemoryLeak => "memory_leak",
            Scenario::Overheating => "overheating",
            Scenario::Silent => "silent",
            Scenario::DslDegradation => "dsl_degradation",
            Scenario::PonLowPower => "pon_low_power",
            Scenario::DiagFailure => "diag_failure",
        }
    }
}

impl FromStr for Scenario {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.as_str() == s.trim())
            .ok_or_else(|| Error::UnknownScenario(s.to_string()))
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scenario {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scenario {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A scenario applied to a fraction of the fleet from an onset time on (relative to the
/// fleet's start). Written `scenario:fraction@onset`, e.g. `wifi_interference:0.1@20s`;
/// `@onset` may be left out (0 s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultSpec {
    pub scenario: Scenario,
    /// Share of the eligible agents (0…1). `dsl_degradation` is drawn from DSL agents only and
    /// `pon_low_power` from PON agents only; every other scenario from the whole fleet.
    pub fraction: f64,
    pub onset: Duration,
}

impl FaultSpec {
    /// Parses a comma-separated list such as `wifi_interference:0.1@20s,silent:0.05@30s`.
    pub fn parse_list(s: &str) -> Result<Vec<FaultSpec>> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl FromStr for FaultSpec {
    type Err = Error;
    fn from_str(spec: &str) -> Result<Self> {
        let bad = |reason: &str| Error::FaultSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (head, onset) = match spec.split_once('@') {
            Some((h, o)) => (
                h,
                humantime_serde::re::humantime::parse_duration(o.trim())
                    .map_err(|e| bad(&format!("onset: {e}")))?,
            ),
            None => (spec, Duration::ZERO),
        };
        let (name, fraction) = head
            .split_once(':')
            .ok_or_else(|| bad("expected scenario:fraction[@onset]"))?;
        let scenario = name.trim().parse()?;
        let fraction: f64 = fraction
            .trim()
            .parse()
            .map_err(|_| bad("fraction is not a number"))?;
        if !(0.0..=1.0).contains(&fraction) {
            return Err(bad("fraction must be within 0..=1"));
        }
        Ok(FaultSpec {
            scenario,
            fraction,
            onset,
        })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}@{}",
            self.scenario,
            self.fraction,
            humantime_serde::re::humantime::format_duration(self.onset)
        )
    }
}

impl Serialize for FaultSpec {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FaultSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_spec_round_trips() {
        let f: FaultSpec = "wifi_interference:0.1@20s".parse().unwrap();
        assert_eq!(f.scenario, Scenario::WifiInterference);
        assert_eq!(f.fraction, 0.1);
        assert_eq!(f.onset, Duration::from_secs(20));
        assert_eq!(f.to_string().parse::<FaultSpec>().unwrap(), f);
        let g: FaultSpec = "silent:1".parse().unwrap();
        assert_eq!(g.onset, Duration::ZERO);
    }

    #[test]
    fn fault_list_and_errors() {
        let l = FaultSpec::parse_list("wan_flap:0.2@1m, reboot_loop:0.05@30s,").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].onset, Duration::from_secs(60));
        for bad in [
            "nope:0.1",
            "silent",
            "silent:2",
            "silent:x",
            "silent:0.1@soon",
        ] {
            assert!(bad.parse::<FaultSpec>().is_err(), "{bad}");
        }
        for s in Scenario::ALL {
            assert_eq!(s.as_str().parse::<Scenario>().unwrap(), s);
        }
    }

    #[test]
    fn mqtt_mode_names() {
        assert_eq!("5".parse::<MqttMode>().unwrap(), MqttMode::V5);
        assert_eq!("3.1.1".parse::<MqttMode>().unwrap(), MqttMode::V311);
        assert_eq!("mixed".parse::<MqttMode>().unwrap(), MqttMode::Mixed);
        assert!("6".parse::<MqttMode>().is_err());
        let v5: Vec<bool> = (1..=5).map(|i| MqttMode::Mixed.is_v5(i)).collect();
        assert_eq!(v5, [true, false, false, true, true]);
    }

    #[test]
    fn validate_reports_every_problem() {
        let c = FleetConfig {
            broker: "nohost".into(),
            controller_eid: "bad".into(),
            connect_rate: 0,
            ..Default::default()
        };
        let Err(Error::Config(errs)) = c.validate() else {
            panic!("expected config errors")
        };
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(FleetConfig::default().validate().is_ok());
    }

    #[test]
    fn serde_shape() {
        let c = FleetConfig {
            faults: FaultSpec::parse_list("silent:0.5@30s").unwrap(),
            ..Default::default()
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["periodic_interval"], "10s");
        assert_eq!(v["mqtt"], "mixed");
        assert_eq!(v["faults"][0], "silent:0.5@30s");
        assert_eq!(serde_json::from_value::<FleetConfig>(v).unwrap(), c);
        let partial: FleetConfig =
            serde_json::from_value(serde_json::json!({"agents": 3, "mqtt": "3.1.1"})).unwrap();
        assert_eq!((partial.agents, partial.mqtt), (3, MqttMode::V311));
        assert!(serde_json::from_value::<FleetConfig>(serde_json::json!({"agentz": 3})).is_err());
    }

    #[test]
    fn password_is_redacted() {
        let c = FleetConfig {
            username: Some("u".into()),
            password: Some("hunter2".into()),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
