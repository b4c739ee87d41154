//! One request's life: its correlation (waiters registered before it is sent, removed however
//! it ends), its record on the commands stream, and the waits for its response and
//! OperationComplete.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::oneshot;
use uspwatch_proto::pb::usp::{Msg, body, response};
use uspwatch_proto::time::millis_u64;
use uspwatch_proto::{Command, Event};

use super::{CommandResult, Core, OperationKey};
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::now_ms;
use crate::sink::RecordTopic;

/// A validated request, its msg_id and the command_key it will be completed by.
pub(super) struct Prepared {
    pub(super) msg_id: String,
    pub(super) command: Command,
    /// Whether the agent answers at all (`send_resp = false` Operates do not).
    pub(super) wants_resp: bool,
    /// The command_key of an Operate (generated from the msg_id when empty).
    pub(super) op_key: Option<String>,
}

impl Prepared {
    pub(super) fn new(core: &Core, endpoint_id: &str, command: &Command) -> Result<Prepared> {
        command
            .validate()
            .map_err(|e| Error::InvalidCommand(e.to_string()))?;
        uspwatch_proto::validate_endpoint_id(endpoint_id)
            .map_err(|e| Error::InvalidCommand(e.to_string()))?;
        let msg_id = core.next_msg_id();
        let mut command = command.clone();
        let mut wants_resp = true;
        let mut op_key = None;
        if let Command::Operate {
            command_key,
            send_resp,
            ..
        } = &mut command
        {
            if command_key.is_empty() {
                *command_key = msg_id.clone();
            }
            op_key = Some(command_key.clone());
            wants_resp = *send_resp;
        }
        Ok(Prepared {
            msg_id,
            command,
            wants_resp,
            op_key,
        })
    }
}

/// Removes a request's waiters however the request ends (including cancellation), and only
/// its own: once an OperationComplete has released a command_key, a new request may hold it.
pub(super) struct Registration<'a> {
    core: &'a Core,
    msg_id: String,
    op: Option<OperationKey>,
}

impl<'a> Registration<'a> {
    pub(super) fn new(core: &'a Core, msg_id: &str) -> Self {
        Registration {
            core,
            msg_id: msg_id.to_string(),
            op: None,
        }
    }

    /// Registers the request's waiter for its OperationComplete; refuses a command_key that
    /// another request to the same device is still waiting on.
    pub(super) fn operation(&mut self, key: OperationKey) -> Result<oneshot::Receiver<Arc<Event>>> {
        use std::collections::hash_map::Entry;
        let (tx, rx) = oneshot::channel();
        match self.core.operations.lock().entry(key.clone()) {
            Entry::Occupied(_) => {
                return Err(Error::DuplicateRequest {
                    endpoint_id: key.0,
                    command_key: key.1,
                });
            }
            Entry::Vacant(v) => {
                v.insert((self.msg_id.clone(), tx));
            }
        }
        self.op = Some(key);
        Ok(rx)
    }

    /// Registers the request's waiter for its response.
    pub(super) fn response(&self, endpoint_id: &str) -> oneshot::Receiver<Msg> {
        let (tx, rx) = oneshot::channel();
        // msg_ids are unique (a per-start prefix and a counter), so this never replaces one.
        self.core
            .pending
            .lock()
            .insert(self.msg_id.clone(), (endpoint_id.to_string(), tx));
        rx
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.core.pending.lock().remove(&self.msg_id);
        if let Some(k) = &self.op {
            let mut ops = self.core.operations.lock();
            if ops.get(k).is_some_and(|(owner, _)| *owner == self.msg_id) {
                ops.remove(k);
            }
        }
    }
}

/// The request's record on the commands stream and in the metrics: `sent` when it starts,
/// one `outcome` when it ends.
pub(super) struct Journal<'a> {
    core: &'a Core,
    endpoint_id: &'a str,
    req: &'a Prepared,
    kind: &'static str,
    base: Value,
    started: Instant,
}

impl<'a> Journal<'a> {
    pub(super) fn start(
        core: &'a Core,
        endpoint_id: &'a str,
        req: &'a Prepared,
        origin: &str,
    ) -> Self {
        let kind = req.command.kind();
        let at_ms = now_ms();
        let base = json!({
            "msg_id": req.msg_id,
            "endpoint_id": endpoint_id,
            "controller_id": core.cfg.endpoint_id,
            "origin": origin,
            "kind": kind,
            "command": req.command,
            "at": uspwatch_proto::rfc3339_millis(at_ms),
            "at_ms": at_ms,
        });
        core.side_record(
            RecordTopic::Commands,
            endpoint_id,
            "sent",
            &with_phase(&base, "sent", None),
        );
        core.stats.requests_sent.fetch_add(1, Ordering::Relaxed);
        Journal {
            core,
            endpoint_id,
            req,
            kind,
            base,
            started: Instant::now(),
        }
    }

    pub(super) fn finish(&self, outcome: &'static str, extra: Value) {
        let mut rec = with_phase(&self.base, "outcome", Some(outcome));
        if let (Some(o), Value::Object(e)) = (rec.as_object_mut(), extra) {
            o.extend(e);
            o.insert(
                "duration_ms".into(),
                json!(millis_u64(self.started.elapsed())),
            );
        }
        self.core
            .side_record(RecordTopic::Commands, self.endpoint_id, "outcome", &rec);
        metrics::counter!(m::REQUESTS, "command" => self.kind, "outcome" => outcome).increment(1);
        metrics::histogram!(m::REQUEST_SECONDS, "command" => self.kind)
            .record(self.started.elapsed().as_secs_f64());
    }

    pub(super) fn result(&self, response: Value, ok: bool, oc: Option<Event>) -> CommandResult {
        CommandResult {
            msg_id: self.req.msg_id.clone(),
            endpoint_id: self.endpoint_id.to_string(),
            command: self.kind.to_string(),
            response,
            ok,
            operation_complete: oc,
            command_key: self.req.op_key.clone(),
            duration_ms: millis_u64(self.started.elapsed()),
        }
    }

    fn timed_out(&self, extra: Value) {
        self.core
            .stats
            .requests_timed_out
            .fetch_add(1, Ordering::Relaxed);
        self.finish("timeout", extra);
    }

    /// The agent's response, or the error the request ends with.
    pub(super) async fn response(&self, rx: oneshot::Receiver<Msg>) -> Result<Msg> {
        let after = self.core.cfg.request_timeout;
        match tokio::time::timeout(after, rx).await {
            Ok(Ok(msg)) => Ok(msg),
            Ok(Err(_)) => {
                self.finish("failed", json!({ "error": "pipeline shut down" }));
                Err(Error::Closed)
            }
            Err(_) => {
                self.timed_out(json!({}));
                Err(Error::Timeout {
                    endpoint_id: self.endpoint_id.to_string(),
                    msg_id: self.req.msg_id.clone(),
                    after,
                })
            }
        }
    }

    /// The OperationComplete that finishes an async Operate, or the error the request ends
    /// with (`response` is the OperateResp, recorded with the outcome).
    pub(super) async fn completion(
        &self,
        rx: oneshot::Receiver<Arc<Event>>,
        response: &Value,
    ) -> Result<Arc<Event>> {
        let after: Duration = self.core.cfg.operate_complete_timeout;
        match tokio::time::timeout(after, rx).await {
            Ok(Ok(ev)) => Ok(ev),
            Ok(Err(_)) => {
                self.finish("failed", json!({ "response": response }));
                Err(Error::Closed)
            }
            Err(_) => {
                self.timed_out(json!({ "response": response }));
                Err(Error::OperationTimeout {
                    endpoint_id: self.endpoint_id.to_string(),
                    command_key: self.req.op_key.clone().unwrap_or_default(),
                    after,
                })
            }
        }
    }
}

fn with_phase(base: &Value, phase: &str, outcome: Option<&str>) -> Value {
    let mut v = base.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("phase".into(), json!(phase));
        if let Some(out) = outcome {
            o.insert("outcome".into(), json!(out));
        }
    }
    v
}

/// The response as JSON, whether it reports success, and whether it is an async Operate
/// still to complete.
pub(super) fn describe_response(msg: &Msg) -> (Value, bool, bool) {
    let Some(b) = msg.body.as_ref().and_then(|b| b.msg_body.as_ref()) else {
        return (Value::Null, false, false);
    };
    match b {
        body::MsgBody::Error(e) => (json!({ "error": e }), false, false),
        body::MsgBody::Request(_) => (Value::Null, false, false),
        body::MsgBody::Response(r) => {
            let value = serde_json::to_value(&r.resp_type).unwrap_or(Value::Null);
            let (ok, is_async) = match &r.resp_type {
                Some(t) => outcome_of(t),
                None => (false, false),
            };
            (value, ok, is_async)
        }
    }
}

/// Whether a response reports no failed object or command, and whether it is an async
/// Operate still to complete.
fn outcome_of(resp: &response::RespType) -> (bool, bool) {
    use response::RespType as R;
    use uspwatch_proto::pb::usp::operate_resp::operation_result::OperationResp as O;
    use uspwatch_proto::pb::usp::{add_resp, delete_resp, set_resp};
    match resp {
        R::SetResp(s) => (
            s.updated_obj_results.iter().all(|o| {
                !matches!(
                    o.oper_status.as_ref().and_then(|s| s.oper_status.as_ref()),
                    Some(set_resp::updated_object_result::operation_status::OperStatus::OperFailure(_))
                )
            }),
            false,
        ),
        R::AddResp(a) => (
            a.created_obj_results.iter().all(|o| {
                !matches!(
                    o.oper_status.as_ref().and_then(|s| s.oper_status.as_ref()),
                    Some(add_resp::created_object_result::operation_status::OperStatus::OperFailure(_))
                )
            }),
            false,
        ),
        R::DeleteResp(d) => (
            d.deleted_obj_results.iter().all(|o| {
                !matches!(
                    o.oper_status.as_ref().and_then(|s| s.oper_status.as_ref()),
                    Some(delete_resp::deleted_object_result::operation_status::OperStatus::OperFailure(_))
                )
            }),
            false,
        ),
        R::GetResp(g) => (g.req_path_results.iter().all(|r| r.err_code == 0), false),
        R::OperateResp(o) => {
            let failed = o
                .operation_results
                .iter()
                .any(|r| matches!(r.operation_resp, Some(O::CmdFailure(_))));
            let is_async = o
                .operation_results
                .iter()
                .any(|r| matches!(r.operation_resp, Some(O::ReqObjPath(_))));
            (!failed, is_async && !failed)
        }
        _ => (true, false),
    }
}
