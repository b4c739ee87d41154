//! The request API against a small fake agent: Get/Set/Operate round trips, typed timeouts,
//! OperationComplete finishing the right pending Operate, and concurrent Operates that share
//! a command_key.

use std::time::Duration;

use tokio::sync::mpsc;
use uspwatch_pipeline::{Error, InboundRecord};
use uspwatch_proto::pb::usp::{self, body, request, response};
use uspwatch_proto::{Command, ObjectParams, builder, wrap};

use super::support::*;

const AGENT: &str = "os::00256D-req1";
const AGENT_V311: &str = "os::00256D-req2";
const SILENT: &str = "os::00256D-silent";

/// Answers requests like a (very small) USP agent. Async Operates finish in reverse order
/// of arrival, each with its own command_key, once two of them are pending.
async fn fake_agent(
    mut published: mpsc::UnboundedReceiver<Published>,
    to_pipeline: mpsc::Sender<InboundRecord>,
    seen: mpsc::UnboundedSender<Published>,
) {
    let mut pending_ops: Vec<(String, String)> = Vec::new();
    let mut n = 0;
    while let Some(p) = published.recv().await {
        let _ = seen.send(p.clone());
        let (rec, msg) = p.decode();
        if rec.to_id == SILENT {
            continue;
        }
        let Some(body::MsgBody::Request(r)) = msg.body.as_ref().and_then(|b| b.msg_body.as_ref())
        else {
            continue;
        };
        let id = msg.header.as_ref().unwrap().msg_id.clone();
        let reply = |m: &usp::Msg| {
            if rec.to_id == AGENT_V311 {
                from_agent_v311(&rec.to_id, &wrap(m, &rec.to_id, CONTROLLER))
            } else {
                from_agent_v5(&rec.to_id, m)
            }
        };
        let resp = match &r.req_type {
            Some(request::ReqType::Get(g)) => {
                if g.param_paths.iter().any(|p| p.contains("Nope")) {
                    builder::error(&id, 7026, "invalid path", &[])
                } else {
                    builder::response(
                        &id,
                        response::RespType::GetResp(usp::GetResp {
                            req_path_results: vec![usp::get_resp::RequestedPathResult {
                                requested_path: g.param_paths[0].clone(),
                                err_code: 0,
                                err_msg: String::new(),
                                resolved_path_results: vec![usp::get_resp::ResolvedPathResult {
                                    resolved_path: "Device.DeviceInfo.".into(),
                                    result_params: args(&[("SoftwareVersion", "2.4.1")]),
                                }],
                            }],
                        }),
                    )
                }
            }
            Some(request::ReqType::Set(s)) => {
                use usp::set_resp::updated_object_result::{OperationStatus, operation_status};
                builder::response(
                    &id,
                    response::RespType::SetResp(usp::SetResp {
                        updated_obj_results: vec![usp::set_resp::UpdatedObjectResult {
                            requested_path: s.update_objs[0].obj_path.clone(),
                            oper_status: Some(OperationStatus {
                                oper_status: Some(operation_status::OperStatus::OperSuccess(
                                    operation_status::OperationSuccess {
                                        updated_inst_results: vec![
                                            usp::set_resp::UpdatedInstanceResult {
                                                affected_path: s.update_objs[0].obj_path.clone(),
                                                param_errs: vec![],
                                                updated_params: args(&[("Channel", "11")]),
                                            },
                                        ],
                                    },
                                )),
                            }),
                        }],
                    }),
                )
            }
            Some(request::ReqType::Operate(o)) => {
                use usp::operate_resp::{OperationResult, operation_result::OperationResp};
                let result = if o.command == "Device.Reboot()" {
                    OperationResp::ReqOutputArgs(usp::operate_resp::operation_result::OutputArgs {
                        output_args: Default::default(),
                    })
                } else {
                    n += 1;
                    pending_ops.push((o.command_key.clone(), o.input_args["Host"].clone()));
                    OperationResp::ReqObjPath(format!("Device.LocalAgent.Request.{n}."))
                };
                builder::response(
                    &id,
                    response::RespType::OperateResp(usp::OperateResp {
                        operation_results: vec![OperationResult {
                            executed_command: o.command.clone(),
                            operation_resp: Some(result),
                        }],
                    }),
                )
            }
            _ => continue,
        };
        to_pipeline.send(reply(&resp)).await.unwrap();
        if pending_ops.len() == 2 {
            for (i, (key, host)) in pending_ops.drain(..).rev().enumerate() {
                let oc = builder::operation_complete(
                    &format!("oc-{key}-{i}"),
                    "sub-oc",
                    true,
                    "Device.IP.Diagnostics.",
                    "IPPing()",
                    &key,
                    Ok(args(&[("Status", "Complete"), ("Host", &host)])),
                );
                to_pipeline
                    .send(from_agent_v5(&rec.to_id, &oc))
                    .await
                    .unwrap();
            }
        }
    }
}

fn ping(host: &str, key: &str) -> Command {
    Command::Operate {
        command: "Device.IP.Diagnostics.IPPing()".into(),
        command_key: key.into(),
        args: args(&[("Host", host)]),
        send_resp: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_set_operate_round_trips_and_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Long enough for any answer on a loaded machine; the silent agent's request runs it out.
    cfg.controller.request_timeout = Duration::from_secs(3);
    let h = Harness::start(cfg).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let Harness {
        pipeline,
        to_pipeline,
        published,
        shutdown,
    } = h;
    let agent = tokio::spawn(fake_agent(published, to_pipeline.clone(), seen_tx));
    let c = pipeline.controller();
    assert_eq!(c.endpoint_id(), CONTROLLER);

    // The MQTT 3.1.1 agent announces its reply topic in an MQTTConnect record.
    let connect = builder::mqtt_connect(AGENT_V311, CONTROLLER, false, &agent_topic(AGENT_V311));
    to_pipeline
        .send(from_agent_v311(AGENT_V311, &connect))
        .await
        .unwrap();

    let get = Command::Get {
        paths: vec!["Device.DeviceInfo.SoftwareVersion".into()],
        max_depth: 0,
    };
    let r = c.request(AGENT, &get, "test").await.expect("get");
    assert!(r.ok);
    assert_eq!(
        r.response["get_resp"]["req_path_results"][0]["resolved_path_results"][0]["result_params"]
            ["SoftwareVersion"],
        "2.4.1"
    );
    let p = within(seen.recv()).await.unwrap();
    assert_eq!(p.topic, agent_topic(AGENT));
    assert_eq!(p.content_type.as_deref(), Some("usp.msg"));
    assert_eq!(p.response_topic.as_deref(), Some(CONTROLLER_TOPIC));
    assert_eq!(p.decode().1.header.unwrap().msg_id, r.msg_id);

    // Over MQTT 3.1.1 the reply topic rides in the topic; no properties.
    let r = c
        .request(AGENT_V311, &get, "test")
        .await
        .expect("get v3.1.1");
    assert!(r.ok);
    let p = within(seen.recv()).await.unwrap();
    assert_eq!(
        p.topic,
        uspwatch_proto::mqtt::with_reply_to(&agent_topic(AGENT_V311), CONTROLLER_TOPIC)
    );
    assert_eq!(p.content_type, None);

    let bad = Command::Get {
        paths: vec!["Device.Nope.".into()],
        max_depth: 0,
    };
    let r = c
        .request(AGENT, &bad, "test")
        .await
        .expect("error response");
    assert!(!r.ok);
    assert_eq!(r.response["error"]["err_code"], 7026);

    let set = Command::Set {
        allow_partial: false,
        objects: vec![ObjectParams {
            obj_path: "Device.WiFi.Radio.1.".into(),
            params: args(&[("Channel", "11")]),
        }],
    };
    let r = c.request(AGENT, &set, "test").await.expect("set");
    assert!(r.ok, "{}", r.response);

    let reboot = Command::Operate {
        command: "Device.Reboot()".into(),
        command_key: String::new(),
        args: Default::default(),
        send_resp: true,
    };
    let r = c
        .request(AGENT, &reboot, "test")
        .await
        .expect("sync operate");
    assert!(r.ok);
    assert!(r.operation_complete.is_none());
    assert!(
        r.command_key.is_some_and(|k| !k.is_empty()),
        "a command_key is generated"
    );

    // Two async Operates in flight; the agent completes them in reverse order.
    let (ping_a, ping_b) = (ping("a.example", "key-a"), ping("b.example", ""));
    let (a, b) = tokio::join!(
        c.request(AGENT, &ping_a, "test"),
        c.request(AGENT, &ping_b, "test"),
    );
    for (r, host) in [
        (a.expect("operate a"), "a.example"),
        (b.expect("operate b"), "b.example"),
    ] {
        assert!(r.ok);
        let oc = r.operation_complete.expect("completed");
        assert_eq!(oc.args["Host"], host);
        assert_eq!(oc.command_key, r.command_key);
    }

    // No answer: a typed timeout.
    match c.request(SILENT, &get, "test").await {
        Err(Error::Timeout { endpoint_id, .. }) => assert_eq!(endpoint_id, SILENT),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let invalid = Command::Get {
        paths: vec![],
        max_depth: 0,
    };
    assert!(matches!(
        c.request(AGENT, &invalid, "test").await,
        Err(Error::InvalidCommand(_))
    ));
    let s = pipeline.stats();
    assert_eq!(s.requests_timed_out, 1);
    assert_eq!(
        s.events_written, 2,
        "the two OperationCompletes are events too"
    );

    // Every command and its outcome reaches the commands stream (written asynchronously).
    let outcomes = wait_for_log(dir.path(), |recs| {
        let outcomes: Vec<serde_json::Value> = recs
            .iter()
            .filter(|r| {
                r.topic == uspwatch_pipeline::RecordTopic::Commands && r.record_type == "outcome"
            })
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.value).unwrap()["outcome"].clone()
            })
            .collect();
        (outcomes.len() >= 8).then_some(outcomes)
    })
    .await;
    assert_eq!(outcomes.len(), 8, "{outcomes:?}");
    assert!(outcomes.contains(&serde_json::json!("timeout")));
    shutdown.cancel();
    pipeline.join().await;
    agent.abort();
}

/// Answers every async Operate at once with an OperateResp and then its OperationComplete,
/// echoing the request's command_key and `Host` argument.
async fn prompt_agent(
    mut published: mpsc::UnboundedReceiver<Published>,
    to_pipeline: mpsc::Sender<InboundRecord>,
) {
    use usp::operate_resp::{OperationResult, operation_result::OperationResp};
    let mut n = 0;
    while let Some(p) = published.recv().await {
        let (rec, msg) = p.decode();
        let Some(body::MsgBody::Request(r)) = msg.body.as_ref().and_then(|b| b.msg_body.as_ref())
        else {
            continue;
        };
        let Some(request::ReqType::Operate(o)) = &r.req_type else {
            continue;
        };
        n += 1;
        let id = msg.header.as_ref().unwrap().msg_id.clone();
        let resp = builder::response(
            &id,
            response::RespType::OperateResp(usp::OperateResp {
                operation_results: vec![OperationResult {
                    executed_command: o.command.clone(),
                    operation_resp: Some(OperationResp::ReqObjPath(format!(
                        "Device.LocalAgent.Request.{n}."
                    ))),
                }],
            }),
        );
        let oc = builder::operation_complete(
            &format!("oc-{n}"),
            "sub-oc",
            true,
            "Device.IP.Diagnostics.",
            "IPPing()",
            &o.command_key,
            Ok(args(&[
                ("Status", "Complete"),
                ("Host", &o.input_args["Host"]),
            ])),
        );
        for m in [resp, oc] {
            if to_pipeline
                .send(from_agent_v5(&rec.to_id, &m))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// `f`'s output, or a panic after `WAIT`.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .expect("requests end in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_operates_with_one_command_key_get_one_waiter_each() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.controller.request_timeout = Duration::from_secs(10);
    cfg.controller.operate_complete_timeout = Duration::from_secs(10);
    let Harness {
        pipeline,
        to_pipeline,
        published,
        shutdown,
    } = Harness::start(cfg).await;
    let agent = tokio::spawn(prompt_agent(published, to_pipeline.clone()));
    let c = pipeline.controller();

    // Both in flight at once with the same key: the completions could not be told apart, so
    // the second is refused instead of taking over the first one's waiter.
    let (ping_a, ping_b) = (ping("a.example", "dup"), ping("b.example", "dup"));
    let (a, b) = within(async {
        tokio::join!(
            c.request(AGENT, &ping_a, "test"),
            c.request(AGENT, &ping_b, "test"),
        )
    })
    .await;
    let (done, host, refused) = match (a, b) {
        (Ok(r), Err(e)) => (r, "a.example", e),
        (Err(e), Ok(r)) => (r, "b.example", e),
        other => panic!("expected one completion and one refusal, got {other:?}"),
    };
    assert!(done.ok);
    assert_eq!(
        done.operation_complete.expect("completed").args["Host"],
        host
    );
    match refused {
        Error::DuplicateRequest {
            endpoint_id,
            command_key,
        } => assert_eq!((endpoint_id.as_str(), command_key.as_str()), (AGENT, "dup")),
        other => panic!("expected DuplicateRequest, got {other:?}"),
    }
    assert!(
        Error::DuplicateRequest {
            endpoint_id: AGENT.into(),
            command_key: "dup".into()
        }
        .is_retryable()
    );

    // Once the first finished, the key is free again; the same key on another device never
    // conflicted.
    let other = "os::00256D-req3";
    let (ping_c, ping_d) = (ping("c.example", "dup"), ping("d.example", "dup"));
    let (again, elsewhere) = within(async {
        tokio::join!(
            c.request(AGENT, &ping_c, "test"),
            c.request(other, &ping_d, "test"),
        )
    })
    .await;
    for (r, host) in [(again, "c.example"), (elsewhere, "d.example")] {
        let r = r.expect("operate");
        assert_eq!(r.operation_complete.expect("completed").args["Host"], host);
    }

    // Many Operates in flight at once, each finished by its own OperationComplete.
    let hosts: Vec<String> = (0..20).map(|i| format!("h{i}.example")).collect();
    let results = within(futures::future::join_all(hosts.iter().enumerate().map(
        |(i, h)| {
            let cmd = ping(h, &format!("k{i}"));
            let c = c.clone();
            async move { c.request(AGENT, &cmd, "test").await }
        },
    )))
    .await;
    for (r, host) in results.into_iter().zip(&hosts) {
        let r = r.expect("operate");
        assert_eq!(
            r.operation_complete.expect("completed").args["Host"],
            host.as_str()
        );
    }
    shutdown.cancel();
    pipeline.join().await;
    agent.abort();
}
