//! The crate's error type.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong starting or running a simulated fleet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration has one or more problems (all listed, one per line).
    #[error("invalid simulator configuration:\n{}", .0.join("\n"))]
    Config(Vec<String>),
    /// A fault specification such as `wifi_interference:0.1@20s` could not be parsed.
    #[error("invalid fault spec {spec:?}: {reason}")]
    FaultSpec { spec: String, reason: String },
    /// An unknown scenario name.
    #[error("unknown fault scenario {0:?}")]
    UnknownScenario(String),
    /// An unknown MQTT mode.
    #[error("unknown MQTT mode {0:?} (expected 5, 3.1.1 or mixed)")]
    UnknownMqttMode(String),
    /// Not every agent connected before the deadline (retryable: the broker may be slow).
    #[error("{connected} of {agents} agents connected within {timeout:?}")]
    NotConnected {
        connected: usize,
        agents: usize,
        timeout: std::time::Duration,
    },
}
