//! Helpers shared by the root integration tests (`mod common;` in a test file). Cargo compiles
//! every `tests/*.rs` as its own crate, so shared code lives in this directory module.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub mod browser;
pub mod dashboards;
pub mod gw;
pub mod wait;
