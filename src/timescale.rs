//! Time-compressed copies of the built-in rule pack, for the demo and whole-system tests: the
//! simulated fleet reports every few seconds instead of every few minutes, so the rules'
//! timers are divided by the same factor to keep detection, remediation and verification in
//! proportion. The SQL and the windows are unchanged.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// Timer keys scaled at the top level of a rule file and in its `[action]` table.
const RULE_TIMERS: [&str; 3] = ["every", "for", "keep_firing_for"];
const ACTION_TIMERS: [&str; 2] = ["cooldown", "verify_after"];

/// Returns `text` (one rule file) with its timers divided by `factor` (at least 1).
pub fn scale_rule(text: &str, factor: u32) -> anyhow::Result<String> {
    let mut rule: toml::Table = text.parse().context("rule file is not TOML")?;
    scale_keys(&mut rule, &RULE_TIMERS, factor)?;
    if let Some(toml::Value::Table(action)) = rule.get_mut("action") {
        scale_keys(action, &ACTION_TIMERS, factor)?;
    }
    Ok(toml::to_string(&rule)?)
}

fn scale_keys(table: &mut toml::Table, keys: &[&str], factor: u32) -> anyhow::Result<()> {
    for key in keys {
        if let Some(toml::Value::String(s)) = table.get_mut(*key) {
            let d = humantime::parse_duration(s).with_context(|| format!("{key} = {s:?}"))?;
            let scaled = d / factor.max(1);
            *s = format!(
                "{}ms",
                scaled.as_millis().max(u128::from(scaled > Duration::ZERO))
            );
        }
    }
    Ok(())
}

/// Writes the built-in pack, time-compressed by `factor`, into `dir`.
pub fn write_scaled_pack(dir: &Path, factor: u32) -> anyhow::Result<()> {
    for (name, text) in uspwatch_rules::default_pack() {
        let file = Path::new(name)
            .file_name()
            .with_context(|| format!("pack entry {name:?} has no file name"))?;
        let scaled = scale_rule(text, factor).with_context(|| format!("scaling {name}"))?;
        std::fs::write(dir.join(file), scaled)
            .with_context(|| format!("writing {}", dir.join(file).display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_are_divided_and_the_rest_kept() {
        let text = "name = \"x\"\nevery = \"10s\"\nfor = \"1m\"\nwindow = \"5m\"\nsql = \"SELECT 1\"\n[action]\ntype = \"get\"\npaths = [\"Device.\"]\ncooldown = \"10m\"\nverify_after = \"1m\"\n";
        let out: toml::Table = scale_rule(text, 10).unwrap().parse().unwrap();
        assert_eq!(out["every"].as_str(), Some("1000ms"));
        assert_eq!(out["for"].as_str(), Some("6000ms"));
        assert_eq!(out["window"].as_str(), Some("5m"));
        assert_eq!(out["action"]["cooldown"].as_str(), Some("60000ms"));
        assert_eq!(out["action"]["verify_after"].as_str(), Some("6000ms"));
        assert_eq!(out["sql"].as_str(), Some("SELECT 1"));
    }

    #[test]
    fn the_scaled_pack_loads() {
        let dir = tempfile::tempdir().unwrap();
        write_scaled_pack(dir.path(), 5).unwrap();
        assert!(std::fs::read_dir(dir.path()).unwrap().count() >= 10);
    }
}
