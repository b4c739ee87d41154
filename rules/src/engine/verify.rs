//! Verification: after `verify_after`, the rule's `verify` query says whether the action
//! fixed the problem.

use uspwatch_proto::time::millis;

use super::Engine;
use crate::compile;
use crate::metrics as m;
use crate::model::{ActionStatus, EvalReport, VerifyOutcome};
use crate::udf::EvalParams;

/// An action waiting for its verification.
#[derive(Debug, Clone)]
pub(crate) struct PendingVerify {
    pub rule: usize,
    pub action_id: String,
    pub fingerprint: String,
    pub endpoint_id: String,
    pub action_ms: i64,
    pub due_ms: i64,
}

impl Engine {
    pub(crate) async fn run_verifications(&self, now_ms: i64, report: &mut EvalReport) {
        let inner = &self.inner;
        let due: Vec<PendingVerify> = {
            let mut st = inner.state.lock();
            let (due, keep) = st.verifies.drain(..).partition(|v| v.due_ms <= now_ms);
            st.verifies = keep;
            due
        };
        for v in due {
            let rule = &inner.rules[v.rule];
            let Some(plan) = rule.action.as_ref().and_then(|a| a.verify.as_ref()) else {
                continue;
            };
            let record = {
                let log = inner.commands.lock();
                log.records
                    .iter()
                    .rev()
                    .find(|r| r.action_id == v.action_id)
                    .cloned()
            };
            let Some(mut record) = record else { continue };
            let outcome = if record.status == ActionStatus::Failed {
                VerifyOutcome::Unknown
            } else {
                *inner.params.lock() = EvalParams {
                    now_ms,
                    window_start_ms: v
                        .action_ms
                        .min(now_ms.saturating_sub(millis(rule.spec.window))),
                    action_endpoint: v.endpoint_id.clone(),
                    action_ms: v.action_ms,
                };
                match compile::run(&inner.ctx, plan).await {
                    Ok(b) if b.iter().any(|b| b.num_rows() > 0) => VerifyOutcome::Fixed,
                    Ok(_) => VerifyOutcome::NotFixed,
                    Err(e) => {
                        tracing::warn!(rule = %rule.spec.name, error = %e.strip_backtrace(), "verify query failed");
                        VerifyOutcome::Unknown
                    }
                }
            };
            metrics::counter!(m::VERIFICATIONS, "rule" => rule.spec.name.clone(), "outcome" => outcome.as_str())
                .increment(1);
            record.verify = Some(outcome);
            record.verified_at_ms = Some(now_ms);
            let _ = &v.fingerprint;
            self.record_update(&record);
            report.actions.push(record);
        }
    }
}
