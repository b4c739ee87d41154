//! Simulated TR-369 (USP) Agents for uspwatch's demo, end-to-end tests and load harness.
//!
//! Each agent is a real MQTT client (MQTT 5 or 3.1.1) following the TR-369 MQTT binding: it
//! connects with its Endpoint ID, sends an MQTTConnect Record and a `Boot!` event, answers
//! Get/Set/Add/Delete/Operate, and sends ValueChange, `Periodic!`, `Boot!` and
//! OperationComplete Notifies per its Subscriptions, retrying unacknowledged ones with the
//! spec's backoff. Fault scenarios ([`Scenario`]) turn a deterministic share of the fleet
//! unhealthy from an onset time on; some are fixed by what a Controller does (a channel change,
//! a Reboot), exactly as the default rule pack expects.
//!
//! ```no_run
//! use std::time::Duration;
//! use tokio_util::sync::CancellationToken;
//! use uspwatch_sim::{FaultSpec, Fleet, FleetConfig, Scenario};
//!
//! # async fn demo() -> uspwatch_sim::Result<()> {
//! let config = FleetConfig {
//!     broker: "127.0.0.1:1883".into(),
//!     agents: 50,
//!     faults: FaultSpec::parse_list("wifi_interference:0.1@20s,silent:0.05@30s")?,
//!     ..Default::default()
//! };
//! let fleet = Fleet::start(config, CancellationToken::new()).await?;
//! fleet.wait_all_connected(Duration::from_secs(10)).await?;
//! println!("noisy: {:?}", fleet.faulty(Scenario::WifiInterference));
//! println!("{:?}", fleet.stats());
//! fleet.stop().await;
//! # Ok(())
//! # }
//! ```

mod agent;
mod config;
mod cwmp;
mod error;
mod faults;
mod fleet;
mod link;
pub mod metrics;
mod model;
mod status;
mod tree;

pub use config::{FaultSpec, FleetConfig, MqttMode, Scenario};
pub use cwmp::{CpeStatus, CwmpFleet, CwmpFleetConfig};
pub use error::{Error, Result};
pub use fleet::Fleet;
pub use status::{
    AgentStatus, FaultStatus, FleetStats, MqttVersion, NotifyRecord, ReceivedCommand, Wan,
};
