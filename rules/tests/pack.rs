//! The built-in rule pack: loads cleanly and passes its own test cases.

mod common;

use uspwatch_rules::{Engine, RulesConfig};

#[test]
fn default_pack_loads_without_errors() {
    let (engine, errors) =
        Engine::new(&RulesConfig::default(), common::RecordingSink::new()).unwrap();
    assert!(
        errors.is_empty(),
        "{}",
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(engine.rule_names().len() >= 11, "{:?}", engine.rule_names());
}

#[test]
fn default_pack_test_cases_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pack");
    let report = uspwatch_rules::testing::run_tests(&dir).unwrap();
    print!("{report}");
    assert!(report.ok(), "{report}");
    // Every rule of the pack has a firing case and a quiet case.
    assert!(report.cases.len() >= 22, "{}", report.cases.len());
}
