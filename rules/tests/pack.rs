//! The built-in rule pack: loads cleanly and passes its own test cases.

mod common;

use uspwatch_rules::{Engine, RulesConfig};

#[test]
fn default_pack_loads_without_errors() {
    let (engine, errors) = Engine::new(&RulesConfig::default(), common::RecordingSink::new()).unwrap();
    assert!(errors.is_empty(), "{}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"));
    assert!(engine.rule_names().len() >= 11, "{:?}", engine.rule_names());
}
