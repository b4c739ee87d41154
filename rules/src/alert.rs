//! Alert lifecycle (pending → firing → resolved), fingerprints and silences.

use std::collections::{BTreeMap, HashMap, HashSet};

use uspwatch_proto::time::millis;

use crate::compile::{CompiledRule, Row};
use crate::model::{Alert, AlertChange, AlertState, Matcher, Silence};
use crate::template::{Template, display_value};

/// FNV-1a 64 over the rule name and the sorted labels: stable across builds and restarts
/// (unlike std's `DefaultHasher`).
pub(crate) fn fingerprint(rule: &str, labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    feed(rule.as_bytes());
    for (k, v) in labels {
        feed(k.as_bytes());
        feed(v.as_bytes());
    }
    format!("{h:016x}")
}

/// Template lookup over a result row plus the rule's built-in variables.
pub(crate) fn lookup<'a>(
    rule: &'a CompiledRule,
    row: &'a Row,
    fingerprint: &'a str,
    labels: &'a BTreeMap<String, String>,
) -> impl Fn(&str) -> Option<String> + 'a {
    move |v: &str| match v {
        "rule" | "alertname" => Some(rule.spec.name.clone()),
        "severity" => Some(rule.spec.severity.clone()),
        "fingerprint" => Some(fingerprint.to_string()),
        _ => row
            .get(v)
            .map(display_value)
            .or_else(|| labels.get(v).cloned()),
    }
}

fn labels_for(rule: &CompiledRule, row: &Row) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let empty = BTreeMap::new();
    let look = lookup(rule, row, "", &empty);
    for (k, text) in &rule.spec.labels {
        let v = Template::parse(text)
            .map(|t| t.render(&look))
            .unwrap_or_else(|_| text.clone());
        labels.insert(k.clone(), v);
    }
    for k in &rule.spec.key {
        labels.insert(k.clone(), row.get(k).map(display_value).unwrap_or_default());
    }
    labels.insert("alertname".into(), rule.spec.name.clone());
    labels.insert("severity".into(), rule.spec.severity.clone());
    labels
}

fn matches(m: &Matcher, labels: &BTreeMap<String, String>) -> bool {
    let v = labels.get(&m.name).map(String::as_str).unwrap_or("");
    let hit = if m.is_regex {
        regex::Regex::new(&format!("^(?:{})$", m.value)).is_ok_and(|re| re.is_match(v))
    } else {
        v == m.value
    };
    hit == m.is_equal
}

/// Whether an active silence covers these labels at `now_ms`.
pub(crate) fn silenced(
    silences: &[Silence],
    labels: &BTreeMap<String, String>,
    now_ms: i64,
) -> bool {
    silences.iter().any(|s| {
        s.starts_at_ms <= now_ms
            && now_ms < s.ends_at_ms
            && s.matchers.iter().all(|m| matches(m, labels))
    })
}

/// Applies one evaluation's rows to a rule's alerts. Returns the changes and the
/// fingerprints that are firing now (with `true` when they just started firing).
pub(crate) fn apply(
    rule: &CompiledRule,
    alerts: &mut HashMap<String, Alert>,
    rows: Vec<Row>,
    now_ms: i64,
    silences: &[Silence],
    resolved_retention_ms: i64,
) -> (Vec<AlertChange>, Vec<(String, bool)>) {
    let for_ms = millis(rule.spec.for_);
    let keep_ms = millis(rule.spec.keep_firing_for);
    let mut changes = Vec::new();
    let mut seen = HashSet::new();
    let change = |previous: Option<AlertState>, a: &Alert| AlertChange {
        at_ms: now_ms,
        at: uspwatch_proto::rfc3339_millis(now_ms),
        previous,
        alert: a.clone(),
    };
    for row in rows {
        let labels = labels_for(rule, &row);
        let fp = fingerprint(&rule.spec.name, &labels);
        if !seen.insert(fp.clone()) {
            continue;
        }
        let annotations: BTreeMap<String, String> = {
            let look = lookup(rule, &row, &fp, &labels);
            rule.annotations
                .iter()
                .map(|(k, t)| (k.clone(), t.render(&look)))
                .collect()
        };
        let is_silenced = silenced(silences, &labels, now_ms);
        match alerts.get_mut(&fp) {
            Some(a) if a.state != AlertState::Resolved => {
                a.values = row;
                a.annotations = annotations;
                a.last_seen_ms = now_ms;
                a.keep_firing_since_ms = None;
                a.silenced = is_silenced;
                if a.state == AlertState::Pending && now_ms - a.active_since_ms >= for_ms {
                    a.state = AlertState::Firing;
                    a.fired_at_ms = Some(now_ms);
                    changes.push(change(Some(AlertState::Pending), a));
                }
            }
            existing => {
                let previous = existing.map(|a| a.state);
                let mut a = Alert {
                    fingerprint: fp.clone(),
                    rule: rule.spec.name.clone(),
                    state: AlertState::Pending,
                    severity: rule.spec.severity.clone(),
                    labels,
                    annotations,
                    values: row,
                    active_since_ms: now_ms,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    last_seen_ms: now_ms,
                    keep_firing_since_ms: None,
                    silenced: is_silenced,
                    actions: Vec::new(),
                };
                if for_ms == 0 {
                    a.state = AlertState::Firing;
                    a.fired_at_ms = Some(now_ms);
                }
                changes.push(change(previous, &a));
                alerts.insert(fp.clone(), a);
            }
        }
    }
    let mut gone = Vec::new();
    for (fp, a) in alerts.iter_mut() {
        if seen.contains(fp) {
            continue;
        }
        match a.state {
            AlertState::Pending => gone.push(fp.clone()),
            AlertState::Firing => {
                a.silenced = silenced(silences, &a.labels, now_ms);
                let since = *a.keep_firing_since_ms.get_or_insert(now_ms);
                if now_ms - since >= keep_ms {
                    a.state = AlertState::Resolved;
                    a.resolved_at_ms = Some(now_ms);
                    changes.push(change(Some(AlertState::Firing), a));
                }
            }
            AlertState::Resolved => {
                if now_ms - a.resolved_at_ms.unwrap_or(now_ms) > resolved_retention_ms {
                    gone.push(fp.clone());
                }
            }
        }
    }
    for fp in gone {
        alerts.remove(&fp);
    }
    let mut firing: Vec<(String, bool)> = alerts
        .values()
        .filter(|a| a.state == AlertState::Firing && a.last_seen_ms == now_ms)
        .map(|a| (a.fingerprint.clone(), a.fired_at_ms == Some(now_ms)))
        .collect();
    firing.sort();
    (changes, firing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_label_sensitive() {
        let l = BTreeMap::from([("endpoint_id".to_string(), "os::A".to_string())]);
        assert_eq!(fingerprint("r", &l), fingerprint("r", &l.clone()));
        assert_ne!(fingerprint("r", &l), fingerprint("s", &l));
        assert_eq!(fingerprint("r", &l).len(), 16);
    }

    #[test]
    fn silence_matchers() {
        let l = BTreeMap::from([
            ("alertname".to_string(), "wifi".to_string()),
            ("endpoint_id".to_string(), "os::00256D-1".to_string()),
        ]);
        let s = Silence {
            id: "1".into(),
            matchers: vec![
                Matcher {
                    name: "endpoint_id".into(),
                    value: "os::00256D-.*".into(),
                    is_regex: true,
                    is_equal: true,
                },
                Matcher {
                    name: "alertname".into(),
                    value: "other".into(),
                    is_regex: false,
                    is_equal: false,
                },
            ],
            starts_at_ms: 0,
            ends_at_ms: 100,
            created_by: String::new(),
            comment: String::new(),
            active: true,
        };
        assert!(silenced(std::slice::from_ref(&s), &l, 50));
        assert!(!silenced(&[s], &l, 100));
    }
}
