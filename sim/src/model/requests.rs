//! Controller requests: Get, Set, Add/Delete (Subscriptions), Operate, GetInstances,
//! GetSupportedProtocol — and the asynchronous commands' results.

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::time::Instant;
use uspwatch_proto::pb::usp::{self, Msg, request::ReqType, response::RespType};
use uspwatch_proto::{Message, builder, wrap};

use super::{Agent, AsyncOp, Dest, Out, REQUEST_TABLE, SUB_TABLE};
use crate::config::Scenario;
use crate::status::ReceivedCommand;
use crate::tree::{PathPattern, Tree};

const VALID_CHANNELS: [&str; 7] = ["1", "6", "11", "36", "40", "44", "48"];
const NOTIF_TYPES: [&str; 5] = [
    "ValueChange",
    "ObjectCreation",
    "ObjectDeletion",
    "OperationComplete",
    "Event",
];
const SUB_PARAMS: [&str; 8] = [
    "Enable",
    "ID",
    "NotifType",
    "ReferenceList",
    "Persistent",
    "NotifRetry",
    "NotifExpiration",
    "TimeToLive",
];

type Failure = (u32, String);

impl Agent {
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        from: &str,
        msg_id: &str,
        r: usp::Request,
        reply: Dest,
    ) -> Vec<Out> {
        let Some(req) = r.req_type else {
            return Vec::new();
        };
        let mut effects = Vec::new();
        let resp: Option<Msg> = match req {
            ReqType::Get(g) => {
                self.counters.request("get");
                self.record("get", g.param_paths.join(","), String::new());
                let uptime = now.saturating_duration_since(self.boot_at).as_secs();
                self.tree
                    .set("Device.DeviceInfo.UpTime", uptime.to_string());
                let results = g
                    .param_paths
                    .iter()
                    .map(|p| self.tree.get_path(p, g.max_depth))
                    .collect();
                Some(builder::response(
                    msg_id,
                    RespType::GetResp(usp::GetResp {
                        req_path_results: results,
                    }),
                ))
            }
            ReqType::Set(s) => {
                self.counters.request("set");
                for o in &s.update_objs {
                    for p in &o.param_settings {
                        self.record("set", format!("{}{}", o.obj_path, p.param), p.value.clone());
                    }
                }
                Some(self.set(now, msg_id, s, &mut effects))
            }
            ReqType::Add(a) => {
                self.counters.request("add");
                for o in &a.create_objs {
                    self.record("add", o.obj_path.clone(), String::new());
                }
                Some(self.add(msg_id, a))
            }
            ReqType::Delete(d) => {
                self.counters.request("delete");
                self.record("delete", d.obj_paths.join(","), String::new());
                Some(self.delete(msg_id, d))
            }
            ReqType::Operate(o) => {
                self.counters.request("operate");
                self.record("operate", o.command.clone(), o.command_key.clone());
                self.operate(now, from, msg_id, o, &mut effects)
            }
            ReqType::GetInstances(g) => {
                self.counters.request("get_instances");
                self.record("get_instances", g.obj_paths.join(","), String::new());
                Some(self.get_instances(msg_id, &g))
            }
            ReqType::GetSupportedProtocol(_) => {
                self.counters.request("get_supported_protocol");
                Some(builder::response(
                    msg_id,
                    RespType::GetSupportedProtocolResp(usp::GetSupportedProtocolResp {
                        agent_supported_protocol_versions: "1.3,1.4".into(),
                    }),
                ))
            }
            ReqType::GetSupportedDm(_) => {
                self.counters.request("get_supported_dm");
                Some(builder::error(
                    msg_id,
                    7001,
                    "GetSupportedDM is not supported by this agent",
                    &[],
                ))
            }
            // Notifies flow from Agents, never to them.
            ReqType::Notify(_) => {
                self.counters.request("other");
                None
            }
            ReqType::Register(_) | ReqType::Deregister(_) => {
                self.counters.request("other");
                Some(builder::error(
                    msg_id,
                    7001,
                    "not supported by this agent",
                    &[],
                ))
            }
        };
        let mut out = Vec::with_capacity(1 + effects.len());
        if let Some(msg) = resp {
            out.push(Out::Publish {
                to: reply,
                payload: Bytes::from(wrap(&msg, &self.eid, from).encode_to_vec()),
            });
        }
        out.extend(effects);
        out
    }

    fn record(&self, kind: &str, path: String, detail: String) {
        self.status.lock().commands.push(ReceivedCommand {
            kind: kind.to_string(),
            path,
            detail,
        });
    }

    fn set(&mut self, now: Instant, msg_id: &str, s: usp::Set, effects: &mut Vec<Out>) -> Msg {
        use usp::set_resp::updated_object_result::{
            OperationStatus,
            operation_status::{OperStatus, OperationFailure, OperationSuccess},
        };
        use usp::set_resp::{
            ParameterError, UpdatedInstanceFailure, UpdatedInstanceResult, UpdatedObjectResult,
        };
        let mut results = Vec::new();
        let mut writes: Vec<(String, String)> = Vec::new();
        for o in &s.update_objs {
            let objs = match resolve_objects(&self.tree, &o.obj_path) {
                Ok(v) => v,
                Err((code, msg)) => {
                    if !s.allow_partial {
                        return builder::error(msg_id, code, &msg, &[(&o.obj_path, code, &msg)]);
                    }
                    results.push(UpdatedObjectResult {
                        requested_path: o.obj_path.clone(),
                        oper_status: Some(OperationStatus {
                            oper_status: Some(OperStatus::OperFailure(OperationFailure {
                                err_code: code,
                                err_msg: msg,
                                updated_inst_failures: Vec::new(),
                            })),
                        }),
                    });
                    continue;
                }
            };
            let mut inst_ok = Vec::new();
            let mut inst_fail = Vec::new();
            let mut obj_writes = Vec::new();
            for obj in &objs {
                let mut updated = BTreeMap::new();
                let mut soft = Vec::new();
                let mut hard = Vec::new();
                for ps in &o.param_settings {
                    let full = format!("{obj}{}", ps.param);
                    match check_write(&self.tree, &full, &ps.value) {
                        Ok(v) => {
                            updated.insert(ps.param.clone(), v.clone());
                            obj_writes.push((full, v));
                        }
                        Err((code, msg)) => {
                            let e = ParameterError {
                                param: ps.param.clone(),
                                err_code: code,
                                err_msg: msg,
                            };
                            if ps.required {
                                hard.push(e)
                            } else {
                                soft.push(e)
                            }
                        }
                    }
                }
                if hard.is_empty() {
                    inst_ok.push(UpdatedInstanceResult {
                        affected_path: obj.clone(),
                        param_errs: soft,
                        updated_params: updated,
                    });
                } else {
                    inst_fail.push(UpdatedInstanceFailure {
                        affected_path: obj.clone(),
                        param_errs: hard,
                    });
                }
            }
            if inst_fail.is_empty() {
                writes.extend(obj_writes);
                results.push(UpdatedObjectResult {
                    requested_path: o.obj_path.clone(),
                    oper_status: Some(OperationStatus {
                        oper_status: Some(OperStatus::OperSuccess(OperationSuccess {
                            updated_inst_results: inst_ok,
                        })),
                    }),
                });
            } else if !s.allow_partial {
                let errs: Vec<(String, u32, String)> = inst_fail
                    .iter()
                    .flat_map(|f| {
                        f.param_errs.iter().map(|e| {
                            (
                                format!("{}{}", f.affected_path, e.param),
                                e.err_code,
                                e.err_msg.clone(),
                            )
                        })
                    })
                    .collect();
                let refs: Vec<(&str, u32, &str)> = errs
                    .iter()
                    .map(|(p, c, m)| (p.as_str(), *c, m.as_str()))
                    .collect();
                return builder::error(msg_id, 7021, "required parameter failed", &refs);
            } else {
                results.push(UpdatedObjectResult {
                    requested_path: o.obj_path.clone(),
                    oper_status: Some(OperationStatus {
                        oper_status: Some(OperStatus::OperFailure(OperationFailure {
                            err_code: 7021,
                            err_msg: "required parameter failed".into(),
                            updated_inst_failures: inst_fail,
                        })),
                    }),
                });
            }
        }
        for (path, value) in writes {
            self.apply_write(now, &path, value, effects);
        }
        builder::response(
            msg_id,
            RespType::SetResp(usp::SetResp {
                updated_obj_results: results,
            }),
        )
    }

    fn apply_write(&mut self, now: Instant, path: &str, value: String, effects: &mut Vec<Out>) {
        if path.starts_with("Device.WiFi.Radio.") && path.ends_with(".Channel") {
            if self.tree.get(path) != Some(value.as_str()) && path == "Device.WiFi.Radio.1.Channel"
            {
                self.clear_fault(Scenario::WifiInterference);
            }
            effects.extend(self.change(path, value, now));
        } else if path == "Device.LocalAgent.Controller.1.PeriodicNotifInterval" {
            let secs = value.parse().unwrap_or(1);
            self.tree.set(path, value);
            let d = std::time::Duration::from_secs(secs);
            self.periodic_override = Some(d);
            self.next_periodic = now + d;
        } else {
            effects.extend(self.change(path, value, now));
            if path.starts_with(SUB_TABLE) {
                self.rebuild_subs();
            }
        }
    }

    fn add(&mut self, msg_id: &str, a: usp::Add) -> Msg {
        use usp::add_resp::created_object_result::{
            OperationStatus,
            operation_status::{OperStatus, OperationFailure, OperationSuccess},
        };
        use usp::add_resp::{CreatedObjectResult, ParameterError};
        let mut staged: Vec<(u32, BTreeMap<String, String>)> = Vec::new();
        let mut results = Vec::new();
        let mut next = self.tree.instances(SUB_TABLE).last().copied().unwrap_or(0) + 1;
        for o in &a.create_objs {
            let outcome = self.stage_subscription(o, next, &staged);
            let status = match outcome {
                Ok((params, soft)) => {
                    let inst = next;
                    next += 1;
                    let keys = BTreeMap::from([
                        ("ID".to_string(), params["ID"].clone()),
                        ("Recipient".to_string(), params["Recipient"].clone()),
                    ]);
                    staged.push((inst, params));
                    OperStatus::OperSuccess(OperationSuccess {
                        instantiated_path: format!("{SUB_TABLE}{inst}."),
                        param_errs: soft
                            .into_iter()
                            .map(|(param, err_code, err_msg)| ParameterError {
                                param,
                                err_code,
                                err_msg,
                            })
                            .collect(),
                        unique_keys: keys,
                    })
                }
                Err((code, msg)) => {
                    if !a.allow_partial {
                        return builder::error(msg_id, code, &msg, &[(&o.obj_path, code, &msg)]);
                    }
                    OperStatus::OperFailure(OperationFailure {
                        err_code: code,
                        err_msg: msg,
                    })
                }
            };
            results.push(CreatedObjectResult {
                requested_path: o.obj_path.clone(),
                oper_status: Some(OperationStatus {
                    oper_status: Some(status),
                }),
            });
        }
        for (inst, params) in staged {
            for (k, v) in params {
                self.tree.set(&format!("{SUB_TABLE}{inst}.{k}"), v);
            }
        }
        self.subscriptions_changed();
        builder::response(
            msg_id,
            RespType::AddResp(usp::AddResp {
                created_obj_results: results,
            }),
        )
    }

    /// Checks one Add of a Subscription; `Ok` holds its parameters and the errors of
    /// non-required parameters.
    #[allow(clippy::type_complexity)]
    fn stage_subscription(
        &self,
        o: &usp::add::CreateObject,
        inst: u32,
        staged: &[(u32, BTreeMap<String, String>)],
    ) -> Result<(BTreeMap<String, String>, Vec<(String, u32, String)>), Failure> {
        if o.obj_path != SUB_TABLE {
            let pat = PathPattern::parse(&o.obj_path)?;
            let known = Tree::is_table(&o.obj_path) || !self.tree.resolve_params(&pat).is_empty();
            return Err(if known {
                (7019, format!("{} is not creatable", o.obj_path))
            } else {
                (7026, format!("no such object: {}", o.obj_path))
            });
        }
        let mut params: BTreeMap<String, String> = [
            ("Enable", "false"),
            ("ID", ""),
            ("NotifType", ""),
            ("ReferenceList", ""),
            ("Persistent", "false"),
            ("NotifRetry", "false"),
            ("NotifExpiration", "0"),
            ("TimeToLive", "0"),
            ("Recipient", "Device.LocalAgent.Controller.1."),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut soft = Vec::new();
        for ps in &o.param_settings {
            let checked = if !SUB_PARAMS.contains(&ps.param.as_str()) {
                Err((7010, format!("unsupported parameter {}", ps.param)))
            } else {
                check_sub_value(&ps.param, &ps.value)
            };
            match checked {
                Ok(v) => {
                    params.insert(ps.param.clone(), v);
                }
                Err((code, msg)) if ps.required => return Err((code, msg)),
                Err((code, msg)) => soft.push((ps.param.clone(), code, msg)),
            }
        }
        if params["NotifType"].is_empty() {
            return Err((7012, "NotifType is required".into()));
        }
        if params["ID"].is_empty() {
            params.insert("ID".into(), format!("cpe-{inst}"));
        }
        let id = params["ID"].clone();
        let duplicate = self.subs.iter().any(|s| s.id == id)
            || staged.iter().any(|(_, p)| p.get("ID") == Some(&id));
        if duplicate {
            return Err((7025, format!("a Subscription with ID {id:?} exists")));
        }
        Ok((params, soft))
    }

    fn subscriptions_changed(&mut self) {
        let n = self.tree.instances(SUB_TABLE).len();
        self.tree.set(
            "Device.LocalAgent.SubscriptionNumberOfEntries",
            n.to_string(),
        );
        self.rebuild_subs();
    }

    fn delete(&mut self, msg_id: &str, d: usp::Delete) -> Msg {
        use usp::delete_resp::DeletedObjectResult;
        use usp::delete_resp::deleted_object_result::{
            OperationStatus,
            operation_status::{OperStatus, OperationFailure, OperationSuccess},
        };
        let mut results = Vec::new();
        let mut doomed = Vec::new();
        for path in &d.obj_paths {
            let status = match self.deletable(path) {
                Ok(objs) => {
                    doomed.extend(objs.iter().cloned());
                    OperStatus::OperSuccess(OperationSuccess {
                        affected_paths: objs,
                        unaffected_path_errs: Vec::new(),
                    })
                }
                Err((code, msg)) => {
                    if !d.allow_partial {
                        return builder::error(msg_id, code, &msg, &[(path, code, &msg)]);
                    }
                    OperStatus::OperFailure(OperationFailure {
                        err_code: code,
                        err_msg: msg,
                    })
                }
            };
            results.push(DeletedObjectResult {
                requested_path: path.clone(),
                oper_status: Some(OperationStatus {
                    oper_status: Some(status),
                }),
            });
        }
        for obj in doomed {
            self.tree.remove_object(&obj);
        }
        self.subscriptions_changed();
        builder::response(
            msg_id,
            RespType::DeleteResp(usp::DeleteResp {
                deleted_obj_results: results,
            }),
        )
    }

    fn deletable(&self, path: &str) -> Result<Vec<String>, Failure> {
        let pat = PathPattern::parse(path)?;
        if !pat.object {
            return Err((7008, format!("{path} is not an object path")));
        }
        let objs = self.tree.resolve_objects(&pat);
        for o in &objs {
            let inst = o.strip_prefix(SUB_TABLE).and_then(|r| r.strip_suffix('.'));
            if inst.is_none_or(|i| i.parse::<u32>().is_err()) {
                return Err((7024, format!("{o} cannot be deleted")));
            }
        }
        Ok(objs)
    }

    fn get_instances(&self, msg_id: &str, g: &usp::GetInstances) -> Msg {
        use usp::get_instances_resp::{CurrInstance, RequestedPathResult};
        let results = g
            .obj_paths
            .iter()
            .map(|path| {
                let mut r = RequestedPathResult {
                    requested_path: path.clone(),
                    ..Default::default()
                };
                match PathPattern::parse(path) {
                    Ok(pat) if pat.object => {
                        for obj in self.tree.resolve_objects(&pat) {
                            for inst in self.tree.instances(&obj) {
                                let p = format!("{obj}{inst}.");
                                let keys = if obj == SUB_TABLE {
                                    let id = self.tree.get(&format!("{p}ID")).unwrap_or_default();
                                    BTreeMap::from([("ID".to_string(), id.to_string())])
                                } else {
                                    BTreeMap::new()
                                };
                                r.curr_insts.push(CurrInstance {
                                    instantiated_obj_path: p,
                                    unique_keys: keys,
                                });
                            }
                        }
                        let exists = !r.curr_insts.is_empty() || Tree::is_table(path) || pat.search;
                        if !exists && self.tree.resolve_params(&pat).is_empty() {
                            r.err_code = 7026;
                            r.err_msg = format!("no such object: {path}");
                        }
                    }
                    Ok(_) => {
                        r.err_code = 7018;
                        r.err_msg = format!("{path} is not a table");
                    }
                    Err((code, msg)) => {
                        r.err_code = code;
                        r.err_msg = msg;
                    }
                }
                r
            })
            .collect();
        builder::response(
            msg_id,
            RespType::GetInstancesResp(usp::GetInstancesResp {
                req_path_results: results,
            }),
        )
    }

    fn operate(
        &mut self,
        now: Instant,
        from: &str,
        msg_id: &str,
        o: usp::Operate,
        effects: &mut Vec<Out>,
    ) -> Option<Msg> {
        use usp::operate_resp::{
            OperationResult, operation_result::OperationResp, operation_result::OutputArgs,
        };
        let result = |resp: OperationResp| {
            builder::response(
                msg_id,
                RespType::OperateResp(usp::OperateResp {
                    operation_results: vec![OperationResult {
                        executed_command: o.command.clone(),
                        operation_resp: Some(resp),
                    }],
                }),
            )
        };
        let (obj_path, command_name) = match o.command.as_str() {
            "Device.Reboot()" => {
                self.begin_reboot(true, o.command_key.clone());
                effects.push(Out::Reboot { graceful: true });
                let resp = result(OperationResp::ReqOutputArgs(OutputArgs::default()));
                return o.send_resp.then_some(resp);
            }
            "Device.IP.Diagnostics.IPPing()" => ("Device.IP.Diagnostics.", "IPPing()"),
            "Device.WiFi.NeighboringWiFiDiagnostic()" => {
                ("Device.WiFi.", "NeighboringWiFiDiagnostic()")
            }
            "Device.SelfTestDiagnostics()" => ("Device.", "SelfTestDiagnostics()"),
            other => {
                let msg = format!("unsupported command {other}");
                return Some(builder::error(msg_id, 7026, &msg, &[]));
            }
        };
        let instance = self.next_request;
        self.next_request += 1;
        let req = format!("{REQUEST_TABLE}{instance}.");
        self.tree.set(&format!("{req}Command"), o.command.clone());
        self.tree
            .set(&format!("{req}CommandKey"), o.command_key.clone());
        self.tree.set(&format!("{req}Status"), "Active");
        self.tree.set(&format!("{req}Originator"), from.to_string());
        self.ops.push(AsyncOp {
            instance,
            obj_path,
            command_name,
            command_key: o.command_key.clone(),
            input_args: o.input_args.clone(),
            due: now + self.p.operation_duration,
        });
        let resp = result(OperationResp::ReqObjPath(req));
        o.send_resp.then_some(resp)
    }
}

/// Object instances a Set's `obj_path` resolves to.
fn resolve_objects(tree: &Tree, path: &str) -> Result<Vec<String>, Failure> {
    let pat = PathPattern::parse(path)?;
    if !pat.object {
        return Err((7008, format!("{path} is not an object path")));
    }
    let objs: Vec<String> = tree
        .resolve_objects(&pat)
        .into_iter()
        // resolve_objects yields every object below a partial path; a Set addresses the
        // object itself, whose depth equals the pattern's.
        .filter(|o| o.matches('.').count() == path.matches('.').count() || pat.search)
        .collect();
    if objs.is_empty() && !pat.search {
        return Err((7016, format!("no such object: {path}")));
    }
    Ok(objs)
}

/// Validates a write and returns the value to store.
fn check_write(tree: &Tree, path: &str, value: &str) -> Result<String, Failure> {
    if tree.get(path).is_none() {
        return Err((7010, format!("unsupported parameter {path}")));
    }
    let segs: Vec<&str> = path.split('.').collect();
    let param = segs.last().copied().unwrap_or_default();
    let invalid = || (7012, format!("invalid value {value:?} for {path}"));
    match segs.as_slice() {
        ["Device", "WiFi", "Radio", _, "Channel"] => VALID_CHANNELS
            .contains(&value)
            .then(|| value.to_string())
            .ok_or_else(invalid),
        ["Device", "LocalAgent", "Subscription", _, p]
            if [
                "Enable",
                "NotifRetry",
                "Persistent",
                "NotifExpiration",
                "TimeToLive",
            ]
            .contains(p) =>
        {
            check_sub_value(param, value)
        }
        [
            "Device",
            "LocalAgent",
            "Controller",
            "1",
            "PeriodicNotifInterval",
        ] => value
            .parse::<u32>()
            .ok()
            .filter(|v| *v >= 1)
            .map(|v| v.to_string())
            .ok_or_else(invalid),
        _ => Err((7013, format!("{path} is not writable"))),
    }
}

fn check_sub_value(param: &str, value: &str) -> Result<String, Failure> {
    let invalid = || (7012, format!("invalid value {value:?} for {param}"));
    match param {
        "Enable" | "NotifRetry" | "Persistent" => match value {
            "true" | "1" => Ok("true".into()),
            "false" | "0" => Ok("false".into()),
            _ => Err(invalid()),
        },
        "NotifExpiration" | "TimeToLive" => value
            .parse::<u32>()
            .map(|v| v.to_string())
            .map_err(|_| invalid()),
        "NotifType" => NOTIF_TYPES
            .contains(&value)
            .then(|| value.to_string())
            .ok_or_else(invalid),
        "ReferenceList" => {
            for r in value.split(',') {
                PathPattern::parse(r.trim())?;
            }
            Ok(value.to_string())
        }
        "ID" if value.len() <= 64 => Ok(value.to_string()),
        _ => Err(invalid()),
    }
}
