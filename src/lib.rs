//! The uspwatch gateway as a library: configuration layering, the wiring of the broker,
//! pipeline and rule crates, the HTTP surface and telemetry. The `uspwatch` binary is a thin
//! command line over it, and the whole-system tests drive it directly.

pub mod bulkdata;
pub mod command_requests;
pub mod config;
pub mod gateway;
pub mod http;
pub mod telemetry;
pub mod timescale;
pub mod web;

pub use config::AppConfig;
pub use gateway::Gateway;
