//! Broker configuration: listeners, limits, identity sources, topic layout and router sizing.
//!
//! TOML shape (every key optional; the values shown are the defaults):
//!
//! ```toml
//! [broker]
//! max_connections = 10000
//! max_packet_size = 1048576        # bytes; advertised as Maximum Packet Size in MQTT 5 CONNACK
//! max_record_size = 1048576        # bytes; larger USP Records are quarantined as too_large
//! max_client_id_len = 256
//! connect_timeout = "10s"          # TCP/TLS accept to CONNECT
//! keep_alive_min = "5s"
//! keep_alive_max = "20m"
//! credentials_file = "/etc/uspwatch/credentials.toml"   # default: none
//! allow_anonymous = false
//! retain_usp = false               # strip RETAIN on USP topics
//! quarantine_payload_cap = 4096    # bytes of a rejected Record kept in a QuarantineEvent
//! event_capacity = 4096            # presence/quarantine broadcast depth
//! local_link_capacity = 4096       # deliveries queued per local link
//! write_timeout = "30s"            # a connection that cannot drain its writes this long is closed
//! ingress_rate = 100               # publishes per second per agent Endpoint ID (0 = no limit)
//! ingress_burst = 500              # publishes an agent may send at once before the rate applies
//! ingress_byte_rate = 1048576      # payload bytes per second per agent Endpoint ID (0 = no limit)
//! ingress_byte_burst = 4194304     # bytes at once; at least max_packet_size
//!
//! [broker.listeners]
//! v5 = "0.0.0.0:1883"
//! v311 = "0.0.0.0:1884"
//! # tls_v5 = "0.0.0.0:8883"
//! # tls_v311 = "0.0.0.0:8884"
//!
//! [broker.tls]                     # required when a TLS listener is set
//! cert_file = "server.pem"
//! key_file = "server.key"
//! client_ca_file = "ca.pem"        # optional: verify client certificates against it
//! require_client_cert = false
//!
//! [broker.topics]
//! agent_prefix = "usp/agent"
//! controller_prefix = "usp/controller"
//! bulk_data_topics = []            # MQTT filters whose non-USP payloads pass untouched
//!
//! [broker.router]
//! max_segment_size = 16384         # bytes per in-memory log segment, per subscribed filter
//! max_segment_count = 2
//! controller_segment_size = 4194304
//! controller_segment_count = 4
//! max_outgoing_packet_count = 200
//!
//! [broker.login]                   # password checks (argon2) and failure back-off
//! max_concurrent_checks = 8        # argon2 verifications running at once
//! queue_timeout = "3s"             # longest wait for a check slot, then "server busy"
//! free_failures_per_source = 20    # failed logins from one IP (IPv6: /64) before back-off
//! free_failures_per_username = 5   # failed logins for one username before back-off
//! backoff_initial = "1s"           # first back-off; doubles with every further failure
//! backoff_max = "60s"
//! failure_memory = "15m"           # failures are forgotten after this long without one
//! max_tracked = 65536              # sources and usernames remembered (each table)
//! ```
//!
//! Memory bound of the router's logs: every distinct subscribed filter keeps at most
//! `segment_size × (segment_count + 1)` bytes of the traffic it matched; controller filters
//! use the `controller_*` pair.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything the broker needs to start. See the module docs for the TOML shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Addresses to listen on; each listener speaks one MQTT version.
    pub listeners: ListenersConfig,
    /// Server certificate and client CA for the TLS listeners.
    pub tls: Option<TlsConfig>,
    /// Most concurrent client connections (default 10000). Further sockets are closed at accept.
    pub max_connections: usize,
    /// Largest MQTT packet accepted, in bytes (default 1 MiB). A larger one disconnects the
    /// client (MQTT 5: reason 0x95). Advertised as Maximum Packet Size in the MQTT 5 CONNACK.
    pub max_packet_size: u32,
    /// Largest USP Record accepted, in bytes (default 1 MiB); larger ones are quarantined.
    pub max_record_size: usize,
    /// Longest MQTT client identifier accepted (default 256; TR-369 asks for at least 64).
    pub max_client_id_len: usize,
    /// Time allowed from accept (and TLS handshake) to a complete CONNECT (default "10s").
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Smallest keep alive granted (default "5s"); a smaller request is raised to it.
    #[serde(with = "humantime_serde")]
    pub keep_alive_min: Duration,
    /// Largest keep alive granted (default "20m"), also used for clients that ask for none.
    /// MQTT 5 clients are told through Server Keep Alive; an MQTT 3.1.1 client that asks for
    /// more is still disconnected after 1.5 × this value of silence.
    #[serde(with = "humantime_serde")]
    pub keep_alive_max: Duration,
    /// TOML file of password credentials (default none), one entry per client:
    ///
    /// ```toml
    /// [[client]]
    /// username = "cpe-00256D-0001"
    /// password_hash = "$argon2id$v=19$..."   # uspwatch_broker::hash_password
    /// endpoint_id = "os::00256D-0001"
    /// role = "agent"                          # or "controller"
    /// ```
    pub credentials_file: Option<PathBuf>,
    /// Accept clients without credentials or certificate, bound to the Endpoint ID they claim
    /// (MQTT 5 `usp-endpoint-id` user property, else the client id) as agents (default false).
    pub allow_anonymous: bool,
    /// Topic layout.
    pub topics: TopicsConfig,
    /// Keep the RETAIN flag on USP topics (default false: stripped, nothing is retained).
    pub retain_usp: bool,
    /// Bytes of a rejected Record copied into its QuarantineEvent (default 4096).
    pub quarantine_payload_cap: usize,
    /// Depth of the presence and quarantine broadcasts (default 4096); a slower receiver
    /// misses the oldest events (tokio broadcast lag) rather than slowing the broker.
    pub event_capacity: usize,
    /// Deliveries queued per local link (default 4096). When full, the link stops reading
    /// from the router, which then holds further messages in the filter's bounded log.
    pub local_link_capacity: usize,
    /// Router sizing (bounded memory).
    pub router: RouterSizing,
    /// Password check limits and failure back-off.
    pub login: LoginConfig,
    /// Longest time a connection may take to accept a batch of writes (default "30s"). A
    /// subscriber that stops reading is disconnected (presence and metric reason
    /// `write_timeout`) instead of holding its task and its buffers.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Publishes per second one agent Endpoint ID may send, across all its connections
    /// (default 100; 0 turns the record limit off). Excess publishes are acknowledged,
    /// delivered nowhere and quarantined as `rate_limited` (MQTT 5 QoS 1: PUBACK 0x97).
    pub ingress_rate: u32,
    /// Publishes an agent may send at once before `ingress_rate` applies (default 500).
    pub ingress_burst: u32,
    /// Payload bytes per second one agent Endpoint ID may send (default 1 MiB; 0 = no limit).
    pub ingress_byte_rate: u64,
    /// Payload bytes an agent may send at once (default 4 MiB; at least `max_packet_size`, so
    /// one maximum-size packet always fits).
    pub ingress_byte_burst: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listeners: ListenersConfig::default(),
            tls: None,
            max_connections: 10_000,
            max_packet_size: 1024 * 1024,
            max_record_size: 1024 * 1024,
            max_client_id_len: 256,
            connect_timeout: Duration::from_secs(10),
            keep_alive_min: Duration::from_secs(5),
            keep_alive_max: Duration::from_secs(20 * 60),
            credentials_file: None,
            allow_anonymous: false,
            topics: TopicsConfig::default(),
            retain_usp: false,
            quarantine_payload_cap: 4096,
            event_capacity: 4096,
            local_link_capacity: 4096,
            router: RouterSizing::default(),
            login: LoginConfig::default(),
            write_timeout: Duration::from_secs(30),
            ingress_rate: 100,
            ingress_burst: 500,
            ingress_byte_rate: 1024 * 1024,
            ingress_byte_burst: 4 * 1024 * 1024,
        }
    }
}

/// Listener addresses; `None` disables that listener. Port 0 picks a free port (see
/// `Broker::local_addrs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenersConfig {
    /// MQTT 5 over TCP (default "0.0.0.0:1883").
    pub v5: Option<SocketAddr>,
    /// MQTT 3.1.1 over TCP (default "0.0.0.0:1884").
    pub v311: Option<SocketAddr>,
    /// MQTT 5 over TLS (default none).
    pub tls_v5: Option<SocketAddr>,
    /// MQTT 3.1.1 over TLS (default none).
    pub tls_v311: Option<SocketAddr>,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        ListenersConfig {
            v5: Some(SocketAddr::from(([0, 0, 0, 0], 1883))),
            v311: Some(SocketAddr::from(([0, 0, 0, 0], 1884))),
            tls_v5: None,
            tls_v311: None,
        }
    }
}

/// Files for the TLS listeners (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Server certificate chain.
    pub cert_file: PathBuf,
    /// Server private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA bundle client certificates are verified against. A verified certificate with a SAN
    /// URI `urn:bbf:usp:id:<EID>` binds the connection to that Endpoint ID.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse TLS clients without a certificate (default false: they may use a password).
    pub require_client_cert: bool,
}

/// Where USP endpoints live in the topic tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Agents are reached at `<agent_prefix>/<EID>` (default "usp/agent").
    pub agent_prefix: String,
    /// Controllers are reached at `<controller_prefix>/<EID>` (default "usp/controller").
    pub controller_prefix: String,
    /// MQTT filters of Bulk Data report topics: agents may publish there and payloads pass
    /// without USP decoding; controllers may subscribe to exactly these filters (default none).
    pub bulk_data_topics: Vec<String>,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            agent_prefix: "usp/agent".into(),
            controller_prefix: "usp/controller".into(),
            bulk_data_topics: Vec::new(),
        }
    }
}

/// Sizing of rumqttd's router. Its per-filter logs are in memory, so these bound memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterSizing {
    /// Bytes per log segment of an ordinary (agent) filter (default 16 KiB, minimum 1024).
    /// It also bounds how far an agent may fall behind: once its filter has moved on by
    /// `max_segment_size × max_segment_count` bytes, older messages not yet delivered to it
    /// are skipped (an agent retries an unanswered Notify; a command times out).
    pub max_segment_size: usize,
    /// Segments kept per ordinary filter besides the active one (default 2, minimum 1).
    pub max_segment_count: usize,
    /// Bytes per log segment of filters under the controller prefix (default 4 MiB).
    pub controller_segment_size: usize,
    /// Segments kept per controller filter (default 4).
    pub controller_segment_count: usize,
    /// Packets the router queues for one connection before it pauses that connection
    /// (default 200).
    pub max_outgoing_packet_count: u64,
}

impl Default for RouterSizing {
    fn default() -> Self {
        RouterSizing {
            // An agent's filter carries little traffic (NotifyResps and commands), but rumqttd
            // keeps each filter's full segments until newer ones replace them, so this size times
            // the fleet is what the router holds in steady state.
            max_segment_size: 16 * 1024,
            max_segment_count: 2,
            controller_segment_size: 4 * 1024 * 1024,
            controller_segment_count: 4,
            max_outgoing_packet_count: 200,
        }
    }
}

/// Limits on password checks, so that wrong passwords cannot starve logins or memory.
///
/// Every argon2 verification holds the hash's memory cost (19 MiB for hashes made by
/// `hash_password`; entries above 64 MiB are refused at load) for the duration of the check,
/// so password checks use at most `max_concurrent_checks` × that. Attempts from a source or
/// for a username with recent failures may use only half of the slots, so logins without a
/// failure history always find a slot. Certificate logins are not subject to any of this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// Argon2 verifications running at once (default 8).
    pub max_concurrent_checks: usize,
    /// Longest wait for a verification slot (default "3s"); after it the CONNECT is refused
    /// as busy (MQTT 5: 0x89 Server busy; 3.1.1: 3 Server unavailable).
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Failed logins one source address may have before it is backed off (default 20;
    /// IPv6 sources count per /64). High enough for many devices behind one NAT.
    pub free_failures_per_source: u32,
    /// Failed logins one username may have before it is backed off (default 5).
    pub free_failures_per_username: u32,
    /// First back-off (default "1s"); it doubles with every further failure. A backed-off
    /// source or username is refused without a password check (MQTT 5: 0x9F Connection rate
    /// exceeded; 3.1.1: 3 Server unavailable), the answer delayed by up to one second.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Longest back-off (default "60s").
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// A source's or username's failures are forgotten after this long without a new one
    /// (default "15m"). A successful login clears its username's failures.
    #[serde(with = "humantime_serde")]
    pub failure_memory: Duration,
    /// Sources and usernames remembered, per table (default 65536, about 3 MiB in all);
    /// when full, the entry with the oldest failure is forgotten first.
    pub max_tracked: usize,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            max_concurrent_checks: 8,
            queue_timeout: Duration::from_secs(3),
            free_failures_per_source: 20,
            free_failures_per_username: 5,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            failure_memory: Duration::from_secs(15 * 60),
            max_tracked: 65_536,
        }
    }
}

impl BrokerConfig {
    /// Every problem with this configuration (empty when it is usable).
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        let l = &self.listeners;
        if l.v5.is_none() && l.v311.is_none() && l.tls_v5.is_none() && l.tls_v311.is_none() {
            e.push("no listener is configured".into());
        }
        if (l.tls_v5.is_some() || l.tls_v311.is_some()) && self.tls.is_none() {
            e.push("a TLS listener is set but [tls] (cert_file, key_file) is missing".into());
        }
        if let Some(t) = &self.tls {
            if t.cert_file.as_os_str().is_empty() || t.key_file.as_os_str().is_empty() {
                e.push("tls.cert_file and tls.key_file are required".into());
            }
            if t.require_client_cert && t.client_ca_file.is_none() {
                e.push("tls.require_client_cert needs tls.client_ca_file".into());
            }
        }
        if self.max_connections == 0 {
            e.push("max_connections must be at least 1".into());
        }
        if self.max_packet_size < 1024 {
            e.push("max_packet_size must be at least 1024 bytes".into());
        }
        if self.max_record_size == 0 {
            e.push("max_record_size must be at least 1".into());
        }
        if self.max_client_id_len < 64 {
            e.push("max_client_id_len must be at least 64 (TR-369 R-MQTT.47)".into());
        }
        if self.connect_timeout.is_zero() {
            e.push("connect_timeout must be more than 0s".into());
        }
        if self.keep_alive_min.is_zero() || self.keep_alive_min > self.keep_alive_max {
            e.push("keep_alive_min must be more than 0s and at most keep_alive_max".into());
        }
        if self.keep_alive_max > Duration::from_secs(u64::from(u16::MAX)) {
            e.push("keep_alive_max must be at most 65535s".into());
        }
        if self.write_timeout.is_zero() {
            e.push("write_timeout must be more than 0s".into());
        }
        if self.ingress_rate > 0 && self.ingress_burst == 0 {
            e.push("ingress_burst must be at least 1 when ingress_rate is set".into());
        }
        if self.ingress_byte_rate > 0 && self.ingress_byte_burst < u64::from(self.max_packet_size) {
            e.push("ingress_byte_burst must be at least max_packet_size".into());
        }
        if self.event_capacity == 0 || self.local_link_capacity == 0 {
            e.push("event_capacity and local_link_capacity must be at least 1".into());
        }
        for (name, p) in [
            ("agent_prefix", &self.topics.agent_prefix),
            ("controller_prefix", &self.topics.controller_prefix),
        ] {
            if p.is_empty() || p.ends_with('/') || p.contains(['+', '#']) || p.starts_with('$') {
                e.push(format!(
                    "topics.{name} {p:?} must be non-empty, without wildcards, '$' or a trailing '/'"
                ));
            }
        }
        if self.topics.agent_prefix == self.topics.controller_prefix {
            e.push("topics.agent_prefix and topics.controller_prefix must differ".into());
        }
        for f in &self.topics.bulk_data_topics {
            if !rumqttd::protocol::valid_filter(f) || f.starts_with('$') {
                e.push(format!(
                    "topics.bulk_data_topics: {f:?} is not a valid MQTT filter"
                ));
            }
        }
        let r = &self.router;
        if r.max_segment_size < 1024 || r.controller_segment_size < 1024 {
            e.push("router segment sizes must be at least 1024 bytes".into());
        }
        if r.max_segment_count == 0 || r.controller_segment_count == 0 {
            e.push("router segment counts must be at least 1".into());
        }
        if r.max_outgoing_packet_count == 0 {
            e.push("router.max_outgoing_packet_count must be at least 1".into());
        }
        let g = &self.login;
        if g.max_concurrent_checks == 0 || g.max_tracked == 0 {
            e.push("login.max_concurrent_checks and login.max_tracked must be at least 1".into());
        }
        if g.queue_timeout.is_zero() || g.backoff_initial.is_zero() || g.failure_memory.is_zero() {
            e.push(
                "login.queue_timeout, backoff_initial and failure_memory must be more than 0s"
                    .into(),
            );
        }
        if g.backoff_max < g.backoff_initial {
            e.push("login.backoff_max must be at least login.backoff_initial".into());
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let c = BrokerConfig::default();
        assert_eq!(c.validate(), Vec::<String>::new());
        let text = toml::to_string(&c).unwrap();
        let back: BrokerConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn every_problem_is_reported() {
        let c = BrokerConfig {
            listeners: ListenersConfig {
                v5: None,
                v311: None,
                tls_v5: None,
                tls_v311: None,
            },
            max_packet_size: 10,
            router: RouterSizing {
                max_segment_size: 10,
                ..RouterSizing::default()
            },
            ..BrokerConfig::default()
        };
        assert_eq!(c.validate().len(), 3, "{:?}", c.validate());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<BrokerConfig>("max_conections = 3").is_err());
        let c: BrokerConfig = toml::from_str("keep_alive_max = \"90s\"").unwrap();
        assert_eq!(c.keep_alive_max, Duration::from_secs(90));
        assert!(toml::from_str::<BrokerConfig>("[login]\nmax_checks = 3").is_err());
        let c: BrokerConfig = toml::from_str("[login]\nbackoff_max = \"2m\"").unwrap();
        assert_eq!(c.login.backoff_max, Duration::from_secs(120));
    }
}
