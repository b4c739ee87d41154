//! The controller endpoint: answers Notify once its event is durable and sends requests to
//! agents, correlating responses by msg_id and async Operates by command_key.

pub(crate) mod inbound;
mod request;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tracing::{debug, warn};
use uspwatch_proto::pb::usp::Msg;
use uspwatch_proto::{Command, Event, Message, mqtt, wrap};

use crate::config::ControllerConfig;
use crate::dedup::Dedup;
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::metrics as m;
use crate::pipeline::Stats;
use crate::sink::{OutRecord, RecordTopic, Sink};
use crate::{Mtp, now_ms};
use request::{Journal, Prepared, Registration, describe_response};

/// Where and how to reach an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) reply_topic: String,
    pub(crate) v5: bool,
}

type Waiter = (String, oneshot::Sender<Msg>);
/// (endpoint id, command_key) of a pending async Operate.
type OperationKey = (String, String);
/// The msg_id of the request that registered the operation, and where its
/// OperationComplete goes.
type OperationWaiter = (String, oneshot::Sender<Arc<Event>>);

/// State shared by the inbound loop, the request API and the pipeline handle.
pub(crate) struct Core {
    pub(crate) cfg: ControllerConfig,
    pub(crate) bulk: crate::BulkDataConfig,
    pub(crate) own_topic: String,
    pub(crate) mtp: Arc<dyn Mtp>,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) inventory: Inventory,
    pub(crate) events_tx: broadcast::Sender<Arc<Event>>,
    pub(crate) dedup: Mutex<Dedup>,
    pub(crate) pending: Mutex<HashMap<String, Waiter>>,
    /// One waiter per (device, command_key): a second Operate with a key already in flight
    /// is refused, since its OperationComplete could not be told apart.
    pub(crate) operations: Mutex<HashMap<OperationKey, OperationWaiter>>,
    pub(crate) routes: RwLock<HashMap<String, Route>>,
    /// Presence, quarantine and command records on their way to the sink. Full = the
    /// record is dropped and counted (nobody waits on these).
    pub(crate) side_tx: mpsc::Sender<OutRecord>,
    pub(crate) stats: Stats,
    pub(crate) in_flight: Arc<Semaphore>,
    /// Bytes of in-flight Notifies (`max_in_flight_bytes`), one permit per byte.
    in_flight_bytes: Arc<Semaphore>,
    /// Post-durability work, driven by `inbound::run_completions`; bounded by `in_flight`.
    completions: mpsc::UnboundedSender<futures::future::BoxFuture<'static, ()>>,
    msg_prefix: String,
    msg_counter: AtomicU64,
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: ControllerConfig,
        bulk: crate::BulkDataConfig,
        mtp: Arc<dyn Mtp>,
        sink: Arc<dyn Sink>,
        inventory: Inventory,
        side_tx: mpsc::Sender<OutRecord>,
        completions: mpsc::UnboundedSender<futures::future::BoxFuture<'static, ()>>,
    ) -> Core {
        let (events_tx, _) = broadcast::channel(cfg.event_buffer);
        Core {
            own_topic: cfg.own_topic(),
            dedup: Mutex::new(Dedup::new(cfg.dedup_window, cfg.dedup_window_bytes)),
            in_flight: Arc::new(Semaphore::new(cfg.max_in_flight)),
            in_flight_bytes: Arc::new(Semaphore::new(cfg.max_in_flight_bytes)),
            msg_prefix: format!("uspwatch-{:x}", now_ms()),
            msg_counter: AtomicU64::new(0),
            cfg,
            bulk,
            mtp,
            sink,
            inventory,
            events_tx,
            pending: Mutex::new(HashMap::new()),
            operations: Mutex::new(HashMap::new()),
            routes: RwLock::new(HashMap::new()),
            side_tx,
            completions,
            stats: Stats::default(),
        }
    }

    /// Waits until an in-flight Notify whose encoding takes `encoded` bytes fits the byte
    /// budget (it holds the event and the encoding, so twice that). One larger than the whole
    /// budget waits for the budget to be free, then runs alone.
    pub(crate) async fn in_flight_bytes(
        &self,
        encoded: usize,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError> {
        let cost = encoded
            .saturating_mul(2)
            .clamp(1, self.cfg.max_in_flight_bytes);
        let cost = u32::try_from(cost).unwrap_or(u32::MAX);
        self.in_flight_bytes.clone().acquire_many_owned(cost).await
    }

    /// Runs `f` on the completion task.
    pub(crate) fn complete(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        if self.completions.send(Box::pin(f)).is_err() {
            debug!("completion task stopped; dropping post-durability work");
        }
    }

    fn next_msg_id(&self) -> String {
        let n = self.msg_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.msg_prefix)
    }

    /// The topic an agent is reached at: `<agent_prefix>/<EID>`.
    pub(crate) fn agent_topic(&self, endpoint_id: &str) -> String {
        format!("{}/{}", self.cfg.agent_prefix, endpoint_id)
    }

    /// The agent's reply route, or its conventional topic if we have not heard from it.
    pub(crate) fn route(&self, endpoint_id: &str) -> Route {
        self.routes
            .read()
            .get(endpoint_id)
            .cloned()
            .unwrap_or_else(|| Route {
                reply_topic: self.agent_topic(endpoint_id),
                v5: true,
            })
    }

    /// Publishes a Msg to an agent per the MQTT binding of its version. A route that is not
    /// the agent's own topic (or below it) is never used: the agent is addressed by its
    /// Endpoint ID's topic instead.
    pub(crate) async fn send(&self, endpoint_id: &str, route: &Route, msg: &Msg) -> Result<()> {
        let own = self.agent_topic(endpoint_id);
        let route = if mqtt::is_own_reply_topic(&route.reply_topic, &own) {
            route
        } else {
            warn!(
                endpoint_id,
                "stored reply route is not the agent's own topic; using its topic"
            );
            &Route {
                reply_topic: own,
                v5: route.v5,
            }
        };
        let payload = Bytes::from(wrap(msg, &self.cfg.endpoint_id, endpoint_id).encode_to_vec());
        let res = if route.v5 {
            self.mtp
                .publish(
                    &route.reply_topic,
                    payload,
                    Some(&self.own_topic),
                    Some(mqtt::CONTENT_TYPE),
                )
                .await
        } else {
            let topic = mqtt::with_reply_to(&route.reply_topic, &self.own_topic);
            self.mtp.publish(&topic, payload, None, None).await
        };
        res.map_err(|source| Error::Publish {
            endpoint_id: endpoint_id.to_string(),
            source: Box::new(source),
        })
    }

    /// Queues a presence/quarantine/command record without waiting.
    pub(crate) fn side_record(
        &self,
        topic: RecordTopic,
        key: &str,
        rtype: &str,
        value: &impl Serialize,
    ) {
        let value = match serde_json::to_vec(value) {
            Ok(v) => Bytes::from(v),
            Err(e) => {
                warn!(error = %e, "could not encode a record");
                return;
            }
        };
        let rec = OutRecord {
            topic,
            key: key.to_string(),
            record_type: rtype.to_string(),
            value,
            at_ms: now_ms(),
        };
        if self.side_tx.try_send(rec).is_err() {
            self.stats.records_dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::RECORDS_DROPPED, "stream" => topic.as_str()).increment(1);
        }
    }
}

/// Sends requests to agents. Cheap to clone.
#[derive(Clone)]
pub struct Controller {
    pub(crate) core: Arc<Core>,
}

/// The outcome of [`Controller::request`].
#[derive(Debug, Clone, Serialize)]
pub struct CommandResult {
    pub msg_id: String,
    pub endpoint_id: String,
    /// The command kind (`get`, `operate`, …).
    pub command: String,
    /// The response body as JSON: `{"get_resp": {...}}`, `{"operate_resp": {...}}`, … or
    /// `{"error": {"err_code": ..., "err_msg": ...}}`; null for an Operate with
    /// `send_resp = false`.
    pub response: Value,
    /// True when the agent answered with a response (not an Error) that reports no failed
    /// object or command, and an async Operate completed without an error.
    pub ok: bool,
    /// The OperationComplete event that finished an async Operate.
    pub operation_complete: Option<Event>,
    /// The command_key used (generated when an Operate had none).
    pub command_key: Option<String>,
    pub duration_ms: u64,
}

impl Controller {
    /// Our Endpoint ID.
    pub fn endpoint_id(&self) -> &str {
        &self.core.cfg.endpoint_id
    }

    /// Sends a request and awaits the typed response or Error, correlated by msg_id; for an
    /// async Operate (OperateResp with `req_obj_path`) waits for the matching
    /// OperationComplete by command_key (one is generated if empty). An Operate whose
    /// command_key is already in flight to the same device is refused
    /// ([`Error::DuplicateRequest`]): the two completions could not be told apart. Every
    /// request and its outcome is written to the commands topic with `origin` (e.g.
    /// `rule:wifi-noise`, `api:alice`).
    pub async fn request(
        &self,
        endpoint_id: &str,
        command: &Command,
        origin: &str,
    ) -> Result<CommandResult> {
        let core = &*self.core;
        let req = Prepared::new(core, endpoint_id, command)?;
        let mut reg = Registration::new(core, &req.msg_id);
        // Registered before sending: the OperationComplete may follow the OperateResp at once.
        let op_rx = match &req.op_key {
            Some(key) => Some(reg.operation((endpoint_id.to_string(), key.clone()))?),
            None => None,
        };
        let rx = reg.response(endpoint_id);
        let journal = Journal::start(core, endpoint_id, &req, origin);
        let route = core.route(endpoint_id);
        if let Err(e) = core
            .send(endpoint_id, &route, &req.command.to_msg(&req.msg_id))
            .await
        {
            journal.finish("failed", json!({ "error": e.to_string() }));
            return Err(e);
        }
        if !req.wants_resp {
            journal.finish("ok", json!({}));
            return Ok(journal.result(Value::Null, true, None));
        }
        let msg = journal.response(rx).await?;
        let (response, ok, is_async) = describe_response(&msg);
        let oc = match op_rx {
            Some(orx) if is_async => Some((*journal.completion(orx, &response).await?).clone()),
            _ => None,
        };
        let ok = ok && oc.as_ref().is_none_or(|ev| ev.error.is_none());
        journal.finish(
            if ok { "ok" } else { "error" },
            json!({ "response": response, "operation_complete": oc }),
        );
        drop(reg);
        Ok(journal.result(response, ok, oc))
    }
}

/// Hands a response to the request waiting for it.
pub(crate) fn complete_request(core: &Core, from_id: &str, msg: Msg, msg_id: &str) {
    let waiter = {
        let mut p = core.pending.lock();
        match p.get(msg_id) {
            Some((eid, _)) if eid == from_id => p.remove(msg_id),
            _ => None,
        }
    };
    match waiter {
        Some((_, tx)) => {
            let _ = tx.send(msg);
        }
        None => {
            debug!(endpoint_id = %from_id, msg_id, "response matches no pending request");
            metrics::counter!(m::UNMATCHED_RESPONSES).increment(1);
        }
    }
}

/// Finishes the async Operate an OperationComplete belongs to.
pub(crate) fn complete_operation(core: &Core, ev: &Arc<Event>) {
    let Some(key) = &ev.command_key else { return };
    let waiter = core
        .operations
        .lock()
        .remove(&(ev.endpoint_id.clone(), key.clone()));
    if let Some((_, tx)) = waiter {
        let _ = tx.send(ev.clone());
    }
}
