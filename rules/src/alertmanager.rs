//! Alertmanager v2 push: `POST /api/v2/alerts`, firing alerts re-sent every
//! `resend_interval`, resolved ones sent once with `endsAt`.

use std::collections::BTreeMap;

use serde::Serialize;
use uspwatch_proto::time::millis;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::model::AlertState;

/// One alert in Alertmanager's API shape.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct AmAlert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
}

impl Engine {
    /// Pushes what Alertmanager should hear about at `now_ms`. Returns how many alerts were
    /// sent. Silenced alerts are not pushed. Marked as sent only when Alertmanager accepted.
    pub async fn push_alertmanager(&self, now_ms: i64) -> Result<usize> {
        let inner = &self.inner;
        let (Some(http), Some(cfg)) = (&inner.http, &inner.config.alertmanager) else {
            return Ok(0);
        };
        let resend = millis(cfg.resend_interval);
        let mut batch = Vec::new();
        let mut marks = Vec::new();
        {
            let st = inner.state.lock();
            for (idx, rt) in st.rules.iter().enumerate() {
                for a in rt.alerts.values() {
                    let pushed = rt.pushed.get(&a.fingerprint).copied();
                    let (include, ends_at) = match a.state {
                        AlertState::Firing if !a.silenced => (
                            pushed.is_none_or(|(t, _)| now_ms - t >= resend),
                            // Like Prometheus: long enough to survive a few missed resends,
                            // short enough that a dead engine's alerts resolve on their own.
                            now_ms + 4 * resend,
                        ),
                        AlertState::Resolved => (
                            pushed.is_some_and(|(_, resolved)| !resolved),
                            a.resolved_at_ms.unwrap_or(now_ms),
                        ),
                        _ => (false, 0),
                    };
                    if include {
                        batch.push(AmAlert {
                            labels: a.labels.clone(),
                            annotations: a.annotations.clone(),
                            starts_at: uspwatch_proto::rfc3339_millis(
                                a.fired_at_ms.unwrap_or(a.active_since_ms),
                            ),
                            ends_at: uspwatch_proto::rfc3339_millis(ends_at),
                        });
                        marks.push((idx, a.fingerprint.clone(), a.state == AlertState::Resolved));
                    }
                }
            }
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let url = format!("{}/api/v2/alerts", cfg.url.trim_end_matches('/'));
        let result = http.post(&url).json(&batch).send().await;
        let outcome = match result {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                Err(Error::Alertmanager(format!("{url}: HTTP {status}: {body}")))
            }
            Err(e) => Err(Error::Alertmanager(format!("{url}: {e}"))),
        };
        let label = if outcome.is_ok() { "ok" } else { "error" };
        metrics::counter!(m::ALERTMANAGER_PUSHES, "result" => label).increment(1);
        outcome?;
        let mut st = inner.state.lock();
        for (idx, fp, resolved) in marks {
            st.rules[idx].pushed.insert(fp, (now_ms, resolved));
        }
        for rt in &mut st.rules {
            let alerts = &rt.alerts;
            rt.pushed.retain(|fp, _| alerts.contains_key(fp));
        }
        Ok(batch.len())
    }
}
