//! Building and filing [`ActionRecord`]s.

use std::collections::HashMap;

use crate::action::Decision;
use crate::alert;
use crate::compile::{CompiledAction, CompiledRule, render_json};
use crate::model::{ActionRecord, ActionStatus, Alert, EngineStats};

/// The record of one attempt. An action whose template does not produce a valid command is
/// recorded as failed, with the reason.
pub(crate) fn action_record(
    rule: &CompiledRule,
    action: &CompiledAction,
    a: &Alert,
    target: &str,
    decision: Decision,
    now_ms: i64,
    seq: u64,
) -> ActionRecord {
    let action_id = format!("act-{now_ms:x}-{seq}");
    let look = alert::lookup(rule, &a.values, &a.fingerprint, &a.labels);
    let rendered = render_json(&action.command, &look);
    let mut record = ActionRecord {
        action_id: action_id.clone(),
        rule: rule.spec.name.clone(),
        fingerprint: a.fingerprint.clone(),
        endpoint_id: target.to_string(),
        command: uspwatch_proto::Command::GetSupportedProtocol,
        mode: action.guard.mode.as_str().to_string(),
        status: ActionStatus::Suppressed,
        reason: None,
        response: None,
        verify: None,
        verified_at_ms: None,
        at_ms: now_ms,
        at: uspwatch_proto::rfc3339_millis(now_ms),
    };
    let command = serde_json::from_value::<uspwatch_proto::Command>(rendered)
        .map_err(|e| e.to_string())
        .and_then(|c| c.validate().map(|()| c).map_err(|e| e.to_string()));
    let mut command = match command {
        Ok(c) => c,
        Err(e) => {
            record.status = ActionStatus::Failed;
            record.reason = Some(format!("bad command: {e}"));
            return record;
        }
    };
    // An Operate without a command key gets the action id, so the device's Boot! or
    // OperationComplete can be traced back to this action.
    if let uspwatch_proto::Command::Operate { command_key, .. } = &mut command
        && command_key.is_empty()
    {
        *command_key = action_id;
    }
    record.command = command;
    match decision {
        Decision::Send => record.status = ActionStatus::Sent,
        Decision::DryRun => record.status = ActionStatus::DryRun,
        Decision::Suppressed(reason) => record.reason = Some(reason.to_string()),
    }
    record
}

/// Puts (or updates) the record in its alert's recent actions.
pub(crate) fn attach(alerts: &mut HashMap<String, Alert>, r: &ActionRecord, keep: usize) {
    let Some(a) = alerts.get_mut(&r.fingerprint) else {
        return;
    };
    if let Some(x) = a.actions.iter_mut().find(|x| x.action_id == r.action_id) {
        *x = r.clone();
        return;
    }
    a.actions.push(r.clone());
    if a.actions.len() > keep {
        a.actions.remove(0);
    }
}

/// Counts a record in the stats (each status once per action id and step).
pub(crate) fn count(stats: &mut EngineStats, r: &ActionRecord) {
    if let Some(v) = r.verify {
        match v {
            crate::model::VerifyOutcome::Fixed => stats.actions_verified_fixed += 1,
            crate::model::VerifyOutcome::NotFixed => stats.actions_verified_not_fixed += 1,
            crate::model::VerifyOutcome::Unknown => stats.actions_verified_unknown += 1,
        }
        return;
    }
    match r.status {
        ActionStatus::Sent => stats.actions_sent += 1,
        ActionStatus::Succeeded => stats.actions_succeeded += 1,
        ActionStatus::Failed => stats.actions_failed += 1,
        ActionStatus::DryRun => stats.actions_dry_run += 1,
        ActionStatus::Suppressed => stats.actions_suppressed += 1,
    }
}
