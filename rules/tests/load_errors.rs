//! A bad rule is refused with its name and the SQL position; the others still run.

mod common;

use common::{T0, value_change};
use uspwatch_rules::{AlertState, Engine, RulesConfig};

#[tokio::test]
async fn bad_rules_are_reported_and_good_ones_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.toml"),
        "name = \"good\"\nevery = \"10s\"\nsql = \"SELECT endpoint_id FROM events WHERE path = 'Device.X'\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("syntax.toml"),
        "name = \"syntax_error\"\nsql = \"SELECT endpoint_id FROM events WHERE path = = 'x'\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("column.toml"),
        "name = \"unknown_column\"\nsql = \"\"\"\nSELECT endpoint_id\nFROM events\nWHERE noise_level > 3\n\"\"\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("template.toml"),
        "name = \"bad_template\"\nsql = \"SELECT endpoint_id FROM events\"\n[annotations]\nsummary = \"{{nope}}\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("toml.toml"), "name = \"broken\nsql = 1").unwrap();

    let config = RulesConfig {
        default_pack: false,
        dirs: vec![dir.path().to_path_buf()],
        ..RulesConfig::default()
    };
    let (engine, errors) = Engine::new(&config, common::RecordingSink::new()).unwrap();
    let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 4, "{msgs:#?}");
    let find = |rule: &str| {
        errors
            .iter()
            .find(|e| e.rule == rule)
            .unwrap_or_else(|| panic!("no error for {rule}: {msgs:#?}"))
    };
    let syntax = find("syntax_error");
    assert_eq!(syntax.line, Some(1), "{syntax}");
    assert!(syntax.column.is_some(), "{syntax}");
    assert!(syntax.to_string().contains("syntax.toml"), "{syntax}");
    assert!(syntax.to_string().contains("line 1, column"), "{syntax}");
    let column = find("unknown_column");
    assert_eq!((column.line, column.column), (Some(3), Some(7)), "{column}");
    assert!(column.message.contains("noise_level"), "{column}");
    assert!(find("bad_template").message.contains("nope"));
    assert!(find("toml").message.contains("TOML"));

    assert_eq!(engine.rule_names(), ["good"]);
    engine.ingest(&value_change("os::00256D-1", "Device.X", "1", T0));
    engine.evaluate_at(T0).await.unwrap();
    assert_eq!(engine.alerts()[0].state, AlertState::Firing);
}
