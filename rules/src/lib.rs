//! uspwatch rule engine: SQL (DataFusion) over the live USP event stream, alert lifecycle,
//! guarded and verified remediation, rule tests and replay.
//!
//! Events go in with [`Engine::ingest`]; [`Engine::evaluate_at`] (or the live loop
//! [`Engine::run`]) runs each rule's pre-planned query over the tables `events`, `latest`,
//! `devices` and `commands`; alert changes and action records come out of
//! [`Engine::subscribe`]. Commands leave through a [`CommandSink`] the binary provides.
//!
//! ```
//! use std::sync::Arc;
//! use uspwatch_rules::{CommandSink, Engine, RulesConfig};
//!
//! struct Nowhere;
//! #[async_trait::async_trait]
//! impl CommandSink for Nowhere {
//!     async fn send(&self, _: &str, _: uspwatch_proto::Command, _: &str) -> uspwatch_rules::Result<serde_json::Value> {
//!         Err(uspwatch_rules::Error::CommandUndelivered("not connected".into()))
//!     }
//! }
//! let (engine, errors) = Engine::new(&RulesConfig::default(), Arc::new(Nowhere)).unwrap();
//! assert!(errors.is_empty());
//! assert!(engine.rule_names().contains(&"wifi_noise_high".to_string()));
//! ```

mod action;
mod alert;
mod alertmanager;
mod compile;
mod config;
mod engine;
mod error;
pub mod metrics;
mod model;
pub mod replay;
mod rule;
mod tables;
mod template;
pub mod testing;
mod udf;

pub use config::{AlertmanagerConfig, RulesConfig};
pub use engine::{CommandSink, Engine};
pub use error::{Error, Result};
pub use model::{
    ActionRecord, ActionStatus, Alert, AlertChange, AlertState, Device, EngineStats, EvalReport,
    Matcher, NewSilence, Output, RuleStatus, Silence, VerifyOutcome,
};
pub use rule::RuleLoadError;

/// The built-in rule pack as (file name, TOML text), e.g. for tools that derive variants of it.
pub fn default_pack() -> impl Iterator<Item = (&'static str, &'static str)> {
    rule::PACK.iter().copied()
}
