//! Property tests: whatever the builders and generated types can express survives an
//! encode/decode round trip, and no byte sequence makes decoding or validation panic.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use uspwatch_proto::builder::{self, ObjectSettings};
use uspwatch_proto::pb::usp::{self, Msg, notify::Notification, response::RespType};
use uspwatch_proto::pb::usp_record::{
    DisconnectRecord, MqttConnectRecord, NoSessionContextRecord, Record, SessionContextRecord,
    StompConnectRecord, UdsConnectRecord, WebSocketConnectRecord, record::PayloadSecurity,
    record::RecordType,
};
use uspwatch_proto::{
    Event, Limits, Message, Opaque, Payload, decode, validate, validate_bytes, validate_msg, wrap,
};

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn msg_id() -> impl Strategy<Value = String> {
    "\\PC{1,40}"
}

fn path() -> impl Strategy<Value = String> {
    "Device(\\.[A-Z][A-Za-z]{1,12}(\\.[1-9][0-9]{0,2})?){0,6}\\.?"
}

fn paths() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(path(), 0..4)
}

fn args() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[A-Za-z]{1,16}", text(), 0..4)
}

fn objects() -> impl Strategy<Value = Vec<ObjectSettings>> {
    prop::collection::vec(
        (
            path(),
            prop::collection::vec(("[A-Za-z]{1,16}", text(), any::<bool>()), 0..3),
        )
            .prop_map(|(obj_path, params)| ObjectSettings { obj_path, params }),
        0..3,
    )
}

fn endpoint_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "os::[0-9A-F]{6}-[A-Za-z0-9]{1,30}",
        "ops::[0-9A-F]{6}-[A-Za-z0-9._-]{1,30}",
        "oui:[0-9A-F]{6}:[A-Za-z0-9._-]{1,40}",
        "cid:[0-9a-f]{6}:[A-Za-z0-9._-]{1,40}",
        "pen:[1-9][0-9]{0,5}:[A-Za-z0-9._-]{1,40}",
        "self:[a-z]{0,6}:[A-Za-z0-9._-]{1,50}",
        "proto::[A-Za-z0-9_-]{1,50}",
        "uuid::[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "imei::[0-9]{15}",
        "fqdn::[a-z]{1,10}\\.[a-z]{2,6}",
    ]
}

fn notification() -> impl Strategy<Value = Notification> {
    use usp::notify::{
        Event as Ev, ObjectCreation, ObjectDeletion, OnBoardRequest, OperationComplete,
        ValueChange, operation_complete::CommandFailure, operation_complete::OperationResp,
        operation_complete::OutputArgs,
    };
    let oper = prop_oneof![
        args().prop_map(|output_args| OperationResp::ReqOutputArgs(OutputArgs { output_args })),
        (7000u32..8000, text()).prop_map(|(err_code, err_msg)| OperationResp::CmdFailure(
            CommandFailure { err_code, err_msg }
        )),
    ];
    prop_oneof![
        (path(), "[A-Za-z]{1,12}!", args()).prop_map(|(obj_path, event_name, params)| {
            Notification::Event(Ev {
                obj_path,
                event_name,
                params,
            })
        }),
        (path(), text()).prop_map(|(param_path, param_value)| {
            Notification::ValueChange(ValueChange {
                param_path,
                param_value,
            })
        }),
        (path(), args()).prop_map(|(obj_path, unique_keys)| {
            Notification::ObjCreation(ObjectCreation {
                obj_path,
                unique_keys,
            })
        }),
        path().prop_map(|obj_path| Notification::ObjDeletion(ObjectDeletion { obj_path })),
        (
            path(),
            "[A-Za-z]{1,12}\\(\\)",
            text(),
            prop::option::of(oper)
        )
            .prop_map(|(obj_path, command_name, command_key, operation_resp)| {
                Notification::OperComplete(OperationComplete {
                    obj_path,
                    command_name,
                    command_key,
                    operation_resp,
                })
            }),
        (text(), text(), text(), text()).prop_map(|(oui, product_class, serial_number, v)| {
            Notification::OnBoardReq(OnBoardRequest {
                oui,
                product_class,
                serial_number,
                agent_supported_protocol_versions: v,
            })
        }),
    ]
}

fn response_body() -> impl Strategy<Value = RespType> {
    use usp::get_resp::{RequestedPathResult, ResolvedPathResult};
    use usp::operate_resp::{OperationResult, operation_result::OperationResp};
    let get_resp = prop::collection::vec(
        (
            path(),
            any::<u32>(),
            text(),
            prop::collection::vec((path(), args()), 0..3),
        ),
        0..3,
    )
    .prop_map(|rs| {
        RespType::GetResp(usp::GetResp {
            req_path_results: rs
                .into_iter()
                .map(
                    |(requested_path, err_code, err_msg, res)| RequestedPathResult {
                        requested_path,
                        err_code,
                        err_msg,
                        resolved_path_results: res
                            .into_iter()
                            .map(|(resolved_path, result_params)| ResolvedPathResult {
                                resolved_path,
                                result_params,
                            })
                            .collect(),
                    },
                )
                .collect(),
        })
    });
    let operate_resp = prop::collection::vec((path(), path()), 0..3).prop_map(|rs| {
        RespType::OperateResp(usp::OperateResp {
            operation_results: rs
                .into_iter()
                .map(|(executed_command, p)| OperationResult {
                    executed_command,
                    operation_resp: Some(OperationResp::ReqObjPath(p)),
                })
                .collect(),
        })
    });
    prop_oneof![
        get_resp,
        operate_resp,
        text()
            .prop_map(|subscription_id| RespType::NotifyResp(usp::NotifyResp { subscription_id })),
        text().prop_map(
            |v| RespType::GetSupportedProtocolResp(usp::GetSupportedProtocolResp {
                agent_supported_protocol_versions: v,
            })
        ),
        paths().prop_map(|ps| RespType::DeleteResp(usp::DeleteResp {
            deleted_obj_results: ps
                .into_iter()
                .map(|requested_path| usp::delete_resp::DeletedObjectResult {
                    requested_path,
                    oper_status: None,
                })
                .collect(),
        })),
    ]
}

/// Valid Msgs of every request kind, every Notify kind and a range of responses and errors.
fn valid_msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        (msg_id(), paths(), any::<u32>()).prop_map(|(id, p, d)| builder::get(&id, &p, d)),
        (msg_id(), any::<bool>(), objects()).prop_map(|(id, a, o)| builder::set(&id, a, &o)),
        (msg_id(), any::<bool>(), objects()).prop_map(|(id, a, o)| builder::add(&id, a, &o)),
        (msg_id(), any::<bool>(), paths()).prop_map(|(id, a, p)| builder::delete(&id, a, &p)),
        (msg_id(), path(), text(), any::<bool>(), args())
            .prop_map(|(id, c, k, r, a)| builder::operate(&id, &c, &k, r, a)),
        (msg_id(), paths(), any::<bool>())
            .prop_map(|(id, p, f)| builder::get_supported_dm(&id, &p, f)),
        (msg_id(), paths(), any::<bool>())
            .prop_map(|(id, p, f)| builder::get_instances(&id, &p, f)),
        (msg_id(), text()).prop_map(|(id, v)| builder::get_supported_protocol(&id, &v)),
        (msg_id(), text()).prop_map(|(id, s)| builder::notify_resp(&id, &s)),
        (
            msg_id(),
            any::<u32>(),
            text(),
            prop::collection::vec((path(), any::<u32>(), text()), 0..3)
        )
            .prop_map(|(id, c, m, pe)| {
                let pe: Vec<(&str, u32, &str)> = pe
                    .iter()
                    .map(|(p, c, m)| (p.as_str(), *c, m.as_str()))
                    .collect();
                builder::error(&id, c, &m, &pe)
            }),
        (msg_id(), text(), any::<bool>(), notification())
            .prop_map(|(id, s, r, n)| builder::notify(&id, &s, r, n)),
        (msg_id(), response_body()).prop_map(|(id, r)| builder::response(&id, r)),
    ]
}

/// What a valid Record of each record type decodes to.
#[derive(Debug, Clone)]
enum Expect {
    Msg(Msg),
    Opaque(Opaque),
    None,
}

fn split(bytes: &[u8], parts: usize) -> Vec<Bytes> {
    let step = bytes.len().div_ceil(parts.max(1)).max(1);
    bytes.chunks(step).map(Bytes::copy_from_slice).collect()
}

fn valid_record() -> impl Strategy<Value = (Record, Expect)> {
    let header = (endpoint_id(), endpoint_id(), 0u32..20, 0u32..20);
    let body = prop_oneof![
        valid_msg().prop_map(|m| {
            let payload = Bytes::from(m.encode_to_vec());
            (
                PayloadSecurity::Plaintext,
                RecordType::NoSessionContext(NoSessionContextRecord { payload }),
                Expect::Msg(m),
            )
        }),
        (valid_msg(), 1usize..4, any::<u64>(), any::<u64>()).prop_map(|(m, parts, sid, seq)| {
            let record = SessionContextRecord {
                session_id: sid,
                sequence_id: seq,
                expected_id: seq.wrapping_add(1),
                payload: split(&m.encode_to_vec(), parts),
                ..Default::default()
            };
            (
                PayloadSecurity::Plaintext,
                RecordType::SessionContext(record),
                Expect::Msg(m),
            )
        }),
        (prop::collection::vec(any::<u8>(), 1..64), 1i32..4).prop_map(|(chunk, sar)| {
            let record = SessionContextRecord {
                payload_sar_state: sar,
                payload: vec![Bytes::from(chunk)],
                ..Default::default()
            };
            (
                PayloadSecurity::Plaintext,
                RecordType::SessionContext(record),
                Expect::Opaque(Opaque::Segmented),
            )
        }),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(|b| {
            (
                PayloadSecurity::Tls12,
                RecordType::NoSessionContext(NoSessionContextRecord {
                    payload: Bytes::from(b),
                }),
                Expect::Opaque(Opaque::Tls12),
            )
        }),
        Just((
            PayloadSecurity::Plaintext,
            RecordType::WebsocketConnect(WebSocketConnectRecord {}),
            Expect::None
        )),
        (any::<bool>(), "usp/agent/[A-Za-z0-9:._-]{1,40}").prop_map(|(v5, topic)| {
            (
                PayloadSecurity::Plaintext,
                RecordType::MqttConnect(MqttConnectRecord {
                    version: i32::from(v5),
                    subscribed_topic: topic,
                }),
                Expect::None,
            )
        }),
        "/queue/[a-z0-9.-]{1,30}".prop_map(|dest| {
            (
                PayloadSecurity::Plaintext,
                RecordType::StompConnect(StompConnectRecord {
                    version: 0,
                    subscribed_destination: dest,
                }),
                Expect::None,
            )
        }),
        (text(), 7100u32..7200).prop_map(|(reason, reason_code)| {
            (
                PayloadSecurity::Plaintext,
                RecordType::Disconnect(DisconnectRecord {
                    reason,
                    reason_code,
                }),
                Expect::None,
            )
        }),
        Just((
            PayloadSecurity::Plaintext,
            RecordType::UdsConnect(UdsConnectRecord {}),
            Expect::None
        )),
    ];
    (header, body, prop::collection::vec(any::<u8>(), 0..8)).prop_map(
        |((to_id, from_id, major, minor), (sec, rt, expect), cert)| {
            let record = Record {
                version: format!("{major}.{minor}"),
                to_id,
                from_id,
                payload_security: sec as i32,
                sender_cert: Bytes::from(cert),
                record_type: Some(rt),
                ..Default::default()
            };
            (record, expect)
        },
    )
}

/// Arbitrary (not necessarily valid) Records straight from the generated types.
fn any_record() -> impl Strategy<Value = Record> {
    let rt = prop::option::of(prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| RecordType::NoSessionContext(
            NoSessionContextRecord { payload: b.into() }
        )),
        (
            any::<u64>(),
            any::<i32>(),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 0..3)
        )
            .prop_map(
                |(sid, sar, ps)| RecordType::SessionContext(SessionContextRecord {
                    session_id: sid,
                    payload_sar_state: sar,
                    payload: ps.into_iter().map(Bytes::from).collect(),
                    ..Default::default()
                })
            ),
        (any::<i32>(), text()).prop_map(|(version, subscribed_topic)| {
            RecordType::MqttConnect(MqttConnectRecord {
                version,
                subscribed_topic,
            })
        }),
        (text(), any::<u32>()).prop_map(|(reason, reason_code)| RecordType::Disconnect(
            DisconnectRecord {
                reason,
                reason_code,
            }
        )),
    ]);
    (text(), text(), text(), any::<i32>(), text(), text(), rt).prop_map(
        |(
            version,
            to_id,
            from_id,
            payload_security,
            originator_id,
            destination_id,
            record_type,
        )| {
            Record {
                version,
                to_id,
                from_id,
                payload_security,
                originator_id,
                destination_id,
                record_type,
                ..Default::default()
            }
        },
    )
}

fn never_panics(bytes: &[u8]) {
    let _ = decode(bytes);
    let limits = Limits::default();
    // The zero-copy entry point must agree with the slice one on every input.
    assert_eq!(
        validate_bytes(&Bytes::copy_from_slice(bytes), &limits),
        validate(bytes, &limits)
    );
    if let Ok(d) = validate(bytes, &limits) {
        if let Some(m) = d.msg() {
            let _ = Event::from_notify(&d.record, m, 0).map(|e| serde_json::to_string(&e));
        }
        let _ = serde_json::to_string(&d.record);
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let at = |i: usize| i % bytes.len();
    match m {
        Mutation::Flip(i, bit) => {
            let i = at(*i);
            bytes[i] ^= 1 << bit;
        }
        Mutation::Truncate(i) => bytes.truncate(at(*i)),
        Mutation::Insert(i, b) => {
            let i = at(*i);
            bytes.splice(i..i, b.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let i = at(*i);
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_msgs_round_trip(m in valid_msg()) {
        validate_msg(&m).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let back = Msg::decode(m.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(&back, &m);
        let bytes = wrap(&m, "os::00256D-1", "self::uspwatch").encode_to_vec();
        let d = validate(&bytes, &Limits::default()).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(d.payload, Payload::Msg(m));
    }

    #[test]
    fn valid_records_round_trip((record, expect) in valid_record()) {
        let bytes = record.encode_to_vec();
        let d = validate(&bytes, &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("{e} for {record:?}")))?;
        prop_assert_eq!(&d.record, &record);
        match (&d.payload, expect) {
            (Payload::Msg(got), Expect::Msg(want)) => prop_assert_eq!(got, &want),
            (Payload::Opaque(got), Expect::Opaque(want)) => prop_assert_eq!(*got, want),
            (Payload::None, Expect::None) => {}
            (got, want) => prop_assert!(false, "payload {:?}, expected {:?}", got, want),
        }
        if let Some(m) = d.msg() {
            let is_notify = matches!(
                m.body.as_ref().and_then(|b| b.msg_body.as_ref()),
                Some(usp::body::MsgBody::Request(usp::Request {
                    req_type: Some(usp::request::ReqType::Notify(_))
                }))
            );
            let e = Event::from_notify(&d.record, m, 0);
            prop_assert_eq!(e.is_some(), is_notify);
            if let Some(e) = e {
                prop_assert_eq!(&e.endpoint_id, &record.from_id);
                prop_assert_eq!(&e.controller_id, &record.to_id);
            }
        }
    }

    #[test]
    fn any_record_round_trips(record in any_record()) {
        let back = Record::decode(record.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(back, record);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        never_panics(&bytes);
    }

    #[test]
    fn arbitrary_records_never_panic(record in any_record()) {
        never_panics(&record.encode_to_vec());
    }

    #[test]
    fn mutated_records_never_panic(
        (record, _) in valid_record(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = record.encode_to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        never_panics(&bytes);
    }

    #[test]
    fn size_limit_is_exact((record, _) in valid_record()) {
        let bytes = record.encode_to_vec();
        let at = Limits { max_record_size: bytes.len() };
        prop_assert!(validate(&bytes, &at).is_ok());
        let below = Limits { max_record_size: bytes.len() - 1 };
        prop_assert_eq!(
            validate(&bytes, &below).map(|_| ()).map_err(|e| e.reason().as_str()),
            Err("too_large")
        );
    }
}
