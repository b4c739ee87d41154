//! Golden decoding tests.
//!
//! Two sources of truth that do not come from this crate's encoder:
//! - Records captured from the Broadband Forum's reference agent (OB-USP-Agent), stored as hex in
//!   `fixtures/reference-agent/` (see its README for how they were recorded);
//! - Records written out field by field below, as annotated protobuf wire bytes. They pin the
//!   wire format itself (tags, wire types, fixed32 error codes, map entries), so a mistake in the
//!   `.proto` files cannot hide behind an encode/decode round trip.

use std::collections::BTreeMap;

use uspwatch_proto::pb::usp::{
    self, Msg, body::MsgBody, get_resp, notify::Notification, operate_resp, request, response,
};
use uspwatch_proto::pb::usp_record::{mqtt_connect_record::MqttVersion, record::RecordType};
use uspwatch_proto::{Decoded, Event, EventError, EventKind, Limits, Message, Payload, validate};

const AGENT: &str = "os::012345-obuspa-test";
const CONTROLLER: &str = "self::noc-controller";

fn unhex(lines: &[&str]) -> Vec<u8> {
    let joined: String = lines
        .iter()
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    hex::decode(joined).expect("fixture is valid hex")
}

fn valid(bytes: &[u8]) -> Decoded {
    let d = validate(bytes, &Limits::default()).unwrap_or_else(|e| panic!("rejected: {e}"));
    // The Record layer carries the payload as opaque bytes, so re-encoding must give back exactly
    // what was on the wire.
    assert_eq!(
        d.record.encode_to_vec(),
        bytes,
        "record does not re-encode byte for byte"
    );
    d
}

fn msg(d: &Decoded) -> &Msg {
    d.msg().expect("record carries a plaintext msg")
}

fn header(m: &Msg) -> (&str, i32) {
    let h = m.header.as_ref().expect("header");
    (h.msg_id.as_str(), h.msg_type)
}

fn response(m: &Msg) -> &response::RespType {
    match m.body.as_ref().and_then(|b| b.msg_body.as_ref()) {
        Some(MsgBody::Response(usp::Response { resp_type: Some(r) })) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn notification(m: &Msg) -> &usp::Notify {
    match m.body.as_ref().and_then(|b| b.msg_body.as_ref()) {
        Some(MsgBody::Request(usp::Request {
            req_type: Some(request::ReqType::Notify(n)),
        })) => n,
        other => panic!("not a notify: {other:?}"),
    }
}

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn event(d: &Decoded) -> Event {
    let e = Event::from_notify(&d.record, msg(d), 1_764_055_770_000).expect("notify converts");
    assert_eq!(e.endpoint_id, d.record.from_id);
    assert_eq!(e.controller_id, d.record.to_id);
    assert_eq!(e.event_id, format!("{}/{}", e.endpoint_id, e.msg_id));
    e
}

// ---------------------------------------------------------------------------------------------
// Reference agent captures

fn reference(hex_text: &str) -> Decoded {
    let bytes = hex::decode(hex_text.trim()).expect("fixture is valid hex");
    let d = valid(&bytes);
    assert_eq!(d.record.version, "1.3");
    assert_eq!(d.record.from_id, AGENT);
    assert_eq!(d.record.to_id, CONTROLLER);
    assert_eq!(d.record.payload_security, 0);
    d
}

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("fixtures/reference-agent/", $name, ".hex"))
    };
}

#[test]
fn reference_mqtt_connect_records() {
    for (hex_text, version) in [
        (fixture!("mqtt_connect_v5_1"), MqttVersion::V5),
        (fixture!("mqtt_connect_v311_1"), MqttVersion::V311),
    ] {
        let d = reference(hex_text);
        assert_eq!(d.payload, Payload::None);
        assert_eq!(d.record_type(), "mqtt_connect");
        let Some(RecordType::MqttConnect(c)) = &d.record.record_type else {
            panic!("not mqtt_connect: {:?}", d.record.record_type);
        };
        assert_eq!(c.version, version as i32);
        assert_eq!(c.subscribed_topic, "usp/agent/os::012345-obuspa-test");
    }
}

#[test]
fn reference_boot_events() {
    let factory_reset = [
        ("Cause", "LocalFactoryReset"),
        ("CommandKey", ""),
        ("FirmwareUpdated", "false"),
        (
            "ParameterMap",
            r#"{"Device.DeviceInfo.SoftwareVersion":""}"#,
        ),
        ("Reason", "Unknown"),
    ];
    let cases = [
        (
            fixture!("notify_event_boot_1"),
            "Event-2026-11-25T07:31:32Z-2",
            map(&[
                ("Cause", "LocalReboot"),
                ("CommandKey", "R1"),
                ("FirmwareUpdated", "false"),
                ("ParameterMap", "{}"),
            ]),
        ),
        (
            fixture!("notify_event_boot_2"),
            "Event-2026-11-25T07:29:30Z-1",
            map(&factory_reset),
        ),
        (
            fixture!("notify_event_boot_3"),
            "Event-2026-11-25T07:32:43Z-1",
            map(&factory_reset),
        ),
    ];
    for (hex_text, msg_id, args) in cases {
        let d = reference(hex_text);
        assert_eq!(header(msg(&d)), (msg_id, 3));
        let e = event(&d);
        assert_eq!(e.kind, EventKind::Event);
        assert_eq!(e.event_id, format!("{AGENT}/{msg_id}"));
        assert_eq!(e.controller_id, CONTROLLER);
        assert_eq!(e.subscription_id, "boot-1");
        assert!(!e.send_resp);
        assert_eq!(e.path, "Device.");
        assert_eq!(e.name.as_deref(), Some("Boot!"));
        assert_eq!(e.args, args);
        assert_eq!((e.value, e.command_key, e.error), (None, None, None));
    }
}

#[test]
fn reference_value_changes() {
    let code = "Device.LocalAgent.Controller.1.ProvisioningCode";
    let cases = [
        (
            fixture!("notify_value_change_1"),
            "ValueChange-2026-11-25T07:30:00Z-1",
            "vc-1",
            false,
            code,
            "prov-42",
        ),
        (
            fixture!("notify_value_change_2"),
            "ValueChange-2026-11-25T07:32:58Z-1",
            "vc-1",
            false,
            code,
            "via-311",
        ),
        (
            fixture!("notify_value_change_3"),
            "ValueChange-2026-11-25T07:30:30Z-2",
            "vc-1",
            false,
            code,
            "from-controller",
        ),
        // This subscription was created with NotifRetry, so the agent asks for a NotifyResp.
        (
            fixture!("notify_value_change_4"),
            "ValueChange-2026-11-25T07:31:45Z-3",
            "vc-retry",
            true,
            "Device.LocalAgent.Controller.1.PeriodicNotifInterval",
            "3600",
        ),
    ];
    for (hex_text, msg_id, sub, send_resp, path, value) in cases {
        let d = reference(hex_text);
        assert_eq!(header(msg(&d)), (msg_id, 3));
        let e = event(&d);
        assert_eq!(e.kind, EventKind::ValueChange);
        assert_eq!(e.event_id, format!("{AGENT}/{msg_id}"));
        assert_eq!(e.subscription_id, sub);
        assert_eq!(e.send_resp, send_resp);
        assert_eq!(e.path, path);
        assert_eq!(e.value.as_deref(), Some(value));
        assert!(e.name.is_none() && e.args.is_empty() && e.error.is_none());
    }
}

#[test]
fn reference_operation_completes() {
    let cases = [
        (
            fixture!("notify_operation_complete_1"),
            "OperationComplete-2026-11-25T07:30:27Z-2",
            "ScheduleTimer()",
            "ck-op-2",
            map(&[]),
        ),
        (
            fixture!("notify_operation_complete_2"),
            "OperationComplete-2026-11-25T07:30:24Z-1",
            "SelfTestDiagnostics()",
            "ck-op-1",
            map(&[("Results", "PASS")]),
        ),
        (
            fixture!("notify_operation_complete_3"),
            "OperationComplete-2026-11-25T07:32:55Z-1",
            "SelfTestDiagnostics()",
            "ck-op-311",
            map(&[("Results", "PASS")]),
        ),
    ];
    for (hex_text, msg_id, command, key, output) in cases {
        let d = reference(hex_text);
        let n = notification(msg(&d));
        // An empty output_args map is still a success: the oneof member is present on the wire.
        let Some(Notification::OperComplete(oc)) = &n.notification else {
            panic!("not an OperationComplete: {n:?}");
        };
        assert!(matches!(
            oc.operation_resp,
            Some(usp::notify::operation_complete::OperationResp::ReqOutputArgs(_))
        ));
        let e = event(&d);
        assert_eq!(e.kind, EventKind::OperationComplete);
        assert_eq!(e.msg_id, msg_id);
        assert_eq!(e.subscription_id, "opc-1");
        assert_eq!(e.path, "Device.");
        assert_eq!(e.name.as_deref(), Some(command));
        assert_eq!(e.command_key.as_deref(), Some(key));
        assert_eq!(e.args, output);
        assert_eq!(e.error, None);
    }
}

#[test]
fn reference_get_responses() {
    let endpoint = |msg_id| {
        (
            msg_id,
            vec![(
                "Device.LocalAgent.EndpointID",
                "Device.LocalAgent.",
                map(&[("EndpointID", AGENT)]),
            )],
        )
    };
    let cases = [
        (fixture!("get_resp_1"), endpoint("get-3-nort")),
        (fixture!("get_resp_2"), endpoint("get-2-altrt")),
        (fixture!("get_resp_3"), endpoint("get-311-plain")),
        (fixture!("get_resp_4"), endpoint("get-311-replyto")),
        (
            fixture!("get_resp_5"),
            (
                "get-1",
                vec![
                    (
                        "Device.DeviceInfo.",
                        "Device.DeviceInfo.",
                        map(&[
                            ("HardwareVersion", ""),
                            ("Manufacturer", "Manufacturer"),
                            ("ManufacturerOUI", "012345"),
                            ("ModelName", "USP Agent"),
                            ("ProductClass", "USP Agent"),
                            ("SerialNumber", "02FC00000001"),
                            ("SoftwareVersion", ""),
                            ("UpTime", "366"),
                        ]),
                    ),
                    (
                        "Device.LocalAgent.EndpointID",
                        "Device.LocalAgent.",
                        map(&[("EndpointID", AGENT)]),
                    ),
                ],
            ),
        ),
    ];
    for (hex_text, (msg_id, results)) in cases {
        let d = reference(hex_text);
        let m = msg(&d);
        assert_eq!(header(m), (msg_id, 2));
        let response::RespType::GetResp(g) = response(m) else {
            panic!("not a GetResp");
        };
        assert_eq!(g.req_path_results.len(), results.len());
        for (r, (requested, resolved, params)) in g.req_path_results.iter().zip(results) {
            assert_eq!(r.requested_path, requested);
            assert_eq!((r.err_code, r.err_msg.as_str()), (0, ""));
            assert_eq!(
                r.resolved_path_results,
                vec![get_resp::ResolvedPathResult {
                    resolved_path: resolved.to_string(),
                    result_params: params,
                }]
            );
        }
        assert!(Event::from_notify(&d.record, m, 0).is_none());
    }
}

#[test]
fn reference_set_responses() {
    use usp::set_resp::updated_object_result::{OperationStatus, operation_status::OperStatus};
    for (hex_text, msg_id, value) in [
        (fixture!("set_resp_1"), "set-311", "via-311"),
        (fixture!("set_resp_2"), "set-1", "from-controller"),
    ] {
        let d = reference(hex_text);
        let m = msg(&d);
        assert_eq!(header(m), (msg_id, 5));
        let response::RespType::SetResp(s) = response(m) else {
            panic!("not a SetResp");
        };
        let [obj] = s.updated_obj_results.as_slice() else {
            panic!("expected one result: {s:?}");
        };
        assert_eq!(obj.requested_path, "Device.LocalAgent.Controller.1.");
        let Some(OperationStatus {
            oper_status: Some(OperStatus::OperSuccess(ok)),
        }) = &obj.oper_status
        else {
            panic!("not a success: {obj:?}");
        };
        let [inst] = ok.updated_inst_results.as_slice() else {
            panic!("expected one instance: {ok:?}");
        };
        assert_eq!(inst.affected_path, "Device.LocalAgent.Controller.1.");
        assert!(inst.param_errs.is_empty());
        assert_eq!(inst.updated_params, map(&[("ProvisioningCode", value)]));
    }
}

#[test]
fn reference_operate_responses_are_async() {
    for (hex_text, msg_id, command) in [
        (fixture!("operate_resp_1"), "op-2", "Device.ScheduleTimer()"),
        (
            fixture!("operate_resp_2"),
            "op-1",
            "Device.SelfTestDiagnostics()",
        ),
        (
            fixture!("operate_resp_3"),
            "op-311",
            "Device.SelfTestDiagnostics()",
        ),
    ] {
        let d = reference(hex_text);
        let m = msg(&d);
        assert_eq!(header(m), (msg_id, 7));
        let response::RespType::OperateResp(o) = response(m) else {
            panic!("not an OperateResp");
        };
        assert_eq!(
            o.operation_results,
            vec![operate_resp::OperationResult {
                executed_command: command.to_string(),
                operation_resp: Some(operate_resp::operation_result::OperationResp::ReqObjPath(
                    "Device.LocalAgent.Request.1".to_string()
                )),
            }]
        );
    }
}

#[test]
fn reference_get_supported_protocol_response() {
    let d = reference(fixture!("get_supported_protocol_resp_1"));
    let m = msg(&d);
    assert_eq!(header(m), ("gsp-1", 18));
    assert_eq!(
        response(m),
        &response::RespType::GetSupportedProtocolResp(usp::GetSupportedProtocolResp {
            agent_supported_protocol_versions: "1.0,1.1,1.2,1.3".to_string(),
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Hand-written wire bytes. Each line is one field: key (and length) first, then its value;
// nested messages are indented under their key+length line.

const EID: &str = "os::00256D-0123456789";

fn hand(lines: &[&str]) -> Decoded {
    let d = valid(&unhex(lines));
    assert_eq!(d.record.version, "1.4");
    assert_eq!(d.record.to_id, "self::uspwatch");
    assert_eq!(d.record.from_id, EID);
    d
}

/// 81 bytes.
const MQTT_CONNECT: &[&str] = &[
    "0a03312e34",                                     // 1: version = '1.4'
    "120e73656c663a3a7573707761746368",               // 2: to_id = 'self::uspwatch'
    "1a156f733a3a3030323536442d30313233343536373839", // 3: from_id = 'os::00256D-0123456789'
    "5223",                                           // 10: mqtt_connect (35 bytes)
    "0801",                                           //   1: version V5 = 1 (varint)
    "121f7573702f6167656e742f6f733a3a3030323536442d30313233343536373839", //   2: subscribed_topic = 'usp/agent/os::00256D-0123456789'
];

/// 242 bytes.
const BOOT_EVENT: &[&str] = &[
    "0a03312e34",                                     // 1: version = '1.4'
    "120e73656c663a3a7573707761746368",               // 2: to_id = 'self::uspwatch'
    "1a156f733a3a3030323536442d30313233343536373839", // 3: from_id = 'os::00256D-0123456789'
    "3ac301",                                         // 7: no_session_context (195 bytes)
    "12c001",                                         //   2: payload (Msg) (192 bytes)
    "0a0b",                                           //     1: header (11 bytes)
    "0a07626f6f742d3432",                             //       1: msg_id = 'boot-42'
    "1003",                                           //       2: msg_type NOTIFY = 3 (varint)
    "12b001",                                         //     2: body (176 bytes)
    "0aad01",                                         //       1: request (173 bytes)
    "42aa01",                                         //         8: notify (170 bytes)
    "0a087375622d626f6f74",                           //           1: subscription_id = 'sub-boot'
    "1001",                                           //           2: send_resp = 1 (varint)
    "1a9b01",                                         //           3: event (155 bytes)
    "0a074465766963652e",                             //             1: obj_path = 'Device.'
    "1205426f6f7421",                                 //             2: event_name = 'Boot!'
    "1a1a",                                           //             3: params entry (26 bytes)
    "0a0a436f6d6d616e644b6579",                       //               1: key = 'CommandKey'
    "120c66772d757067726164652d37",                   //               2: value = 'fw-upgrade-7'
    "1a15",                                           //             3: params entry (21 bytes)
    "0a054361757365",                                 //               1: key = 'Cause'
    "120c52656d6f74655265626f6f74",                   //               2: value = 'RemoteReboot'
    "1a17",                                           //             3: params entry (23 bytes)
    "0a0f4669726d7761726555706461746564",             //               1: key = 'FirmwareUpdated'
    "120474727565",                                   //               2: value = 'true'
    "1a3d",                                           //             3: params entry (61 bytes)
    "0a0c506172616d657465724d6170",                   //               1: key = 'ParameterMap'
    "122d7b224465766963652e446576696365496e666f2e536f66747761726556657273696f6e223a22342e322e31227d", //               2: value = '{"Device.DeviceInfo.SoftwareVersion":"4.2.1"}'
];

/// 115 bytes.
const VALUE_CHANGE: &[&str] = &[
    "0a03312e34",                                     // 1: version = '1.4'
    "120e73656c663a3a7573707761746368",               // 2: to_id = 'self::uspwatch'
    "1a156f733a3a3030323536442d30313233343536373839", // 3: from_id = 'os::00256D-0123456789'
    "3a45",                                           // 7: no_session_context (69 bytes)
    "1243",                                           //   2: payload (Msg) (67 bytes)
    "0a08",                                           //     1: header (8 bytes)
    "0a0476632d37",                                   //       1: msg_id = 'vc-7'
    "1003",                                           //       2: msg_type NOTIFY = 3 (varint)
    "1237",                                           //     2: body (55 bytes)
    "0a35",                                           //       1: request (53 bytes)
    "4233",                                           //         8: notify (51 bytes)
    "0a097375622d6e6f697365",                         //           1: subscription_id = 'sub-noise'
    "2226",                                           //           4: value_change (38 bytes)
    "0a1f4465766963652e576946692e526164696f2e312e53746174732e4e6f697365", //             1: param_path = 'Device.WiFi.Radio.1.Stats.Noise'
    "12032d3932", //             2: param_value = '-92'
];

/// 168 bytes.
const OPERATION_COMPLETE_OK: &[&str] = &[
    "0a03312e34",                                       // 1: version = '1.4'
    "120e73656c663a3a7573707761746368",                 // 2: to_id = 'self::uspwatch'
    "1a156f733a3a3030323536442d30313233343536373839",   // 3: from_id = 'os::00256D-0123456789'
    "3a7a",                                             // 7: no_session_context (122 bytes)
    "1278",                                             //   2: payload (Msg) (120 bytes)
    "0a09",                                             //     1: header (9 bytes)
    "0a056f70632d31",                                   //       1: msg_id = 'opc-1'
    "1003",                                             //       2: msg_type NOTIFY = 3 (varint)
    "126b",                                             //     2: body (107 bytes)
    "0a69",                                             //       1: request (105 bytes)
    "4267",                                             //         8: notify (103 bytes)
    "0a077375622d6f7063",                               //           1: subscription_id = 'sub-opc'
    "1001",                                             //           2: send_resp = 1 (varint)
    "3a5a",                                             //           7: oper_complete (90 bytes)
    "0a164465766963652e49502e446961676e6f73746963732e", //             1: obj_path = 'Device.IP.Diagnostics.'
    "1208495050696e672829",                             //             2: command_name = 'IPPing()'
    "1a0670696e672d31",                                 //             3: command_key = 'ping-1'
    "222e",                                             //             4: req_output_args (46 bytes)
    "0a19", //               1: output_args entry (25 bytes)
    "0a1341766572616765526573706f6e736554696d65", //                 1: key = 'AverageResponseTime'
    "12023132", //                 2: value = '12'
    "0a11", //               1: output_args entry (17 bytes)
    "0a0c53756363657373436f756e74", //                 1: key = 'SuccessCount'
    "120133", //                 2: value = '3'
];

/// 160 bytes.
const OPERATION_COMPLETE_FAIL: &[&str] = &[
    "0a03312e34",                                       // 1: version = '1.4'
    "120e73656c663a3a7573707761746368",                 // 2: to_id = 'self::uspwatch'
    "1a156f733a3a3030323536442d30313233343536373839",   // 3: from_id = 'os::00256D-0123456789'
    "3a72",                                             // 7: no_session_context (114 bytes)
    "1270",                                             //   2: payload (Msg) (112 bytes)
    "0a09",                                             //     1: header (9 bytes)
    "0a056f70632d32",                                   //       1: msg_id = 'opc-2'
    "1003",                                             //       2: msg_type NOTIFY = 3 (varint)
    "1263",                                             //     2: body (99 bytes)
    "0a61",                                             //       1: request (97 bytes)
    "425f",                                             //         8: notify (95 bytes)
    "0a077375622d6f7063",                               //           1: subscription_id = 'sub-opc'
    "1001",                                             //           2: send_resp = 1 (varint)
    "3a52",                                             //           7: oper_complete (82 bytes)
    "0a164465766963652e49502e446961676e6f73746963732e", //             1: obj_path = 'Device.IP.Diagnostics.'
    "1208495050696e672829",                             //             2: command_name = 'IPPing()'
    "1a0670696e672d32",                                 //             3: command_key = 'ping-2'
    "2a26",                                             //             5: cmd_failure (38 bytes)
    "0d6e1b0000", //               1: err_code = 7022 (fixed32, little-endian)
    "121f486f7374206e616d6520636f756c64206e6f74206265207265736f6c766564", //               2: err_msg = 'Host name could not be resolved'
];

/// 188 bytes.
const GET_RESP: &[&str] = &[
    "0a03312e34",                                     // 1: version = '1.4'
    "120e73656c663a3a7573707761746368",               // 2: to_id = 'self::uspwatch'
    "1a156f733a3a3030323536442d30313233343536373839", // 3: from_id = 'os::00256D-0123456789'
    "3a8d01",                                         // 7: no_session_context (141 bytes)
    "128a01",                                         //   2: payload (Msg) (138 bytes)
    "0a09",                                           //     1: header (9 bytes)
    "0a056765742d31",                                 //       1: msg_id = 'get-1'
    "1002",                                           //       2: msg_type GET_RESP = 2 (varint)
    "127d",                                           //     2: body (125 bytes)
    "127b",                                           //       2: response (123 bytes)
    "0a79",                                           //         1: get_resp (121 bytes)
    "0a53",                                           //           1: req_path_results (83 bytes)
    "0a214465766963652e446576696365496e666f2e536f66747761726556657273696f6e", //             1: requested_path = 'Device.DeviceInfo.SoftwareVersion'
    "222e", //             4: resolved_path_results (46 bytes)
    "0a124465766963652e446576696365496e666f2e", //               1: resolved_path = 'Device.DeviceInfo.'
    "1218",                                     //               2: result_params entry (24 bytes)
    "0a0f536f66747761726556657273696f6e",       //                 1: key = 'SoftwareVersion'
    "1205342e322e31",                           //                 2: value = '4.2.1'
    "0a22",                                     //           1: req_path_results (34 bytes)
    "0a0d4465766963652e426f6775732e",           //             1: requested_path = 'Device.Bogus.'
    "15721b0000", //             2: err_code = 7026 (fixed32, little-endian)
    "1a0c496e76616c69642070617468", //             3: err_msg = 'Invalid path'
];

/// 236 bytes.
const OPERATE_RESP: &[&str] = &[
    "0a03312e34",                                                       // 1: version = '1.4'
    "120e73656c663a3a7573707761746368", // 2: to_id = 'self::uspwatch'
    "1a156f733a3a3030323536442d30313233343536373839", // 3: from_id = 'os::00256D-0123456789'
    "3abd01",                           // 7: no_session_context (189 bytes)
    "12ba01",                           //   2: payload (Msg) (186 bytes)
    "0a08",                             //     1: header (8 bytes)
    "0a046f702d31",                     //       1: msg_id = 'op-1'
    "1007",                             //       2: msg_type OPERATE_RESP = 7 (varint)
    "12ad01",                           //     2: body (173 bytes)
    "12aa01",                           //       2: response (170 bytes)
    "3aa701",                           //         7: operate_resp (167 bytes)
    "0a3e",                             //           1: operation_results (62 bytes)
    "0a1e4465766963652e49502e446961676e6f73746963732e495050696e672829", //             1: executed_command = 'Device.IP.Diagnostics.IPPing()'
    "121c4465766963652e4c6f63616c4167656e742e526571756573742e332e", //             2: req_obj_path = 'Device.LocalAgent.Request.3.'
    "0a42", //           1: operation_results (66 bytes)
    "0a2a4465766963652e446576696365496e666f2e56656e646f724c6f6746696c652e312e55706c6f61642829", //             1: executed_command = 'Device.DeviceInfo.VendorLogFile.1.Upload()'
    "1a14",                               //             3: req_output_args (20 bytes)
    "0a12",                               //               1: output_args entry (18 bytes)
    "0a06537461747573",                   //                 1: key = 'Status'
    "1208436f6d706c657465",               //                 2: value = 'Complete'
    "0a21",                               //           1: operation_results (33 bytes)
    "0a0f4465766963652e5265626f6f742829", //             1: executed_command = 'Device.Reboot()'
    "220e",                               //             4: cmd_failure (14 bytes)
    "0d5c1b0000",         //               1: err_code = 7004 (fixed32, little-endian)
    "12074e6f74206e6f77", //               2: err_msg = 'Not now'
];

/// 190 bytes.
const ERROR_PARAM_ERRS: &[&str] = &[
    "0a03312e34",                                                 // 1: version = '1.4'
    "120e73656c663a3a7573707761746368",                           // 2: to_id = 'self::uspwatch'
    "1a156f733a3a3030323536442d30313233343536373839", // 3: from_id = 'os::00256D-0123456789'
    "3a8f01",                                         // 7: no_session_context (143 bytes)
    "128c01",                                         //   2: payload (Msg) (140 bytes)
    "0a07",                                           //     1: header (7 bytes)
    "0a057365742d39",                                 //       1: msg_id = 'set-9'
    "128001",                                         //     2: body (128 bytes)
    "1a7e",                                           //       3: error (126 bytes)
    "0d5c1b0000", //         1: err_code = 7004 (fixed32, little-endian)
    "1211496e76616c696420617267756d656e7473", //         2: err_msg = 'Invalid arguments'
    "1a36",       //         3: param_errs (54 bytes)
    "0a1b4465766963652e576946692e526164696f2e312e4368616e6e656c", //           1: param_path = 'Device.WiFi.Radio.1.Channel'
    "15641b0000", //           2: err_code = 7012 (fixed32, little-endian)
    "1a1256616c7565206f7574206f662072616e6765", //           3: err_msg = 'Value out of range'
    "1a2c",       //         3: param_errs (44 bytes)
    "0a174465766963652e576946692e526164696f2e312e466f6f", //           1: param_path = 'Device.WiFi.Radio.1.Foo'
    "15721b0000", //           2: err_code = 7026 (fixed32, little-endian)
    "1a0c496e76616c69642070617468", //           3: err_msg = 'Invalid path'
];

#[test]
fn hand_mqtt_connect() {
    let d = hand(MQTT_CONNECT);
    assert_eq!(d.payload, Payload::None);
    assert_eq!(
        d.record.record_type,
        Some(RecordType::MqttConnect(
            uspwatch_proto::pb::usp_record::MqttConnectRecord {
                version: MqttVersion::V5 as i32,
                subscribed_topic: format!("usp/agent/{EID}"),
            }
        ))
    );
}

#[test]
fn hand_boot_event() {
    let d = hand(BOOT_EVENT);
    assert_eq!(header(msg(&d)), ("boot-42", 3));
    let e = event(&d);
    assert_eq!(e.kind, EventKind::Event);
    assert_eq!(e.event_id, format!("{EID}/boot-42"));
    assert_eq!(e.subscription_id, "sub-boot");
    assert!(e.send_resp);
    assert_eq!(e.path, "Device.");
    assert_eq!(e.name.as_deref(), Some("Boot!"));
    assert_eq!(
        e.args,
        map(&[
            ("Cause", "RemoteReboot"),
            ("CommandKey", "fw-upgrade-7"),
            ("FirmwareUpdated", "true"),
            (
                "ParameterMap",
                r#"{"Device.DeviceInfo.SoftwareVersion":"4.2.1"}"#
            ),
        ])
    );
}

#[test]
fn hand_value_change() {
    let d = hand(VALUE_CHANGE);
    let e = event(&d);
    assert_eq!(e.kind, EventKind::ValueChange);
    assert_eq!(e.msg_id, "vc-7");
    assert_eq!(e.subscription_id, "sub-noise");
    assert!(!e.send_resp);
    assert_eq!(e.path, "Device.WiFi.Radio.1.Stats.Noise");
    assert_eq!(e.value.as_deref(), Some("-92"));
    assert_eq!(e.value_f64(), Some(-92.0));
}

#[test]
fn hand_operation_complete_success() {
    let d = hand(OPERATION_COMPLETE_OK);
    let e = event(&d);
    assert_eq!(e.kind, EventKind::OperationComplete);
    assert_eq!(e.msg_id, "opc-1");
    assert_eq!(e.path, "Device.IP.Diagnostics.");
    assert_eq!(e.name.as_deref(), Some("IPPing()"));
    assert_eq!(e.command_key.as_deref(), Some("ping-1"));
    assert_eq!(
        e.args,
        map(&[("AverageResponseTime", "12"), ("SuccessCount", "3")])
    );
    assert_eq!(e.error, None);
}

#[test]
fn hand_operation_complete_failure() {
    let d = hand(OPERATION_COMPLETE_FAIL);
    let e = event(&d);
    assert_eq!(e.kind, EventKind::OperationComplete);
    assert_eq!(e.msg_id, "opc-2");
    assert_eq!(e.command_key.as_deref(), Some("ping-2"));
    assert!(e.args.is_empty());
    assert_eq!(
        e.error,
        Some(EventError {
            code: 7022,
            message: "Host name could not be resolved".to_string(),
        })
    );
}

#[test]
fn hand_get_resp() {
    let d = hand(GET_RESP);
    let m = msg(&d);
    assert_eq!(header(m), ("get-1", 2));
    let response::RespType::GetResp(g) = response(m) else {
        panic!("not a GetResp");
    };
    assert_eq!(
        g.req_path_results,
        vec![
            get_resp::RequestedPathResult {
                requested_path: "Device.DeviceInfo.SoftwareVersion".into(),
                err_code: 0,
                err_msg: String::new(),
                resolved_path_results: vec![get_resp::ResolvedPathResult {
                    resolved_path: "Device.DeviceInfo.".into(),
                    result_params: map(&[("SoftwareVersion", "4.2.1")]),
                }],
            },
            get_resp::RequestedPathResult {
                requested_path: "Device.Bogus.".into(),
                err_code: 7026,
                err_msg: "Invalid path".into(),
                resolved_path_results: vec![],
            },
        ]
    );
}

#[test]
fn hand_operate_resp() {
    use operate_resp::operation_result::{CommandFailure, OperationResp, OutputArgs};
    let d = hand(OPERATE_RESP);
    let m = msg(&d);
    assert_eq!(header(m), ("op-1", 7));
    let response::RespType::OperateResp(o) = response(m) else {
        panic!("not an OperateResp");
    };
    let results: Vec<_> = o
        .operation_results
        .iter()
        .map(|r| (r.executed_command.as_str(), r.operation_resp.clone()))
        .collect();
    assert_eq!(
        results,
        vec![
            (
                "Device.IP.Diagnostics.IPPing()",
                Some(OperationResp::ReqObjPath(
                    "Device.LocalAgent.Request.3.".into()
                ))
            ),
            (
                "Device.DeviceInfo.VendorLogFile.1.Upload()",
                Some(OperationResp::ReqOutputArgs(OutputArgs {
                    output_args: map(&[("Status", "Complete")]),
                }))
            ),
            (
                "Device.Reboot()",
                Some(OperationResp::CmdFailure(CommandFailure {
                    err_code: 7004,
                    err_msg: "Not now".into(),
                }))
            ),
        ]
    );
}

#[test]
fn hand_error_with_param_errs() {
    let d = hand(ERROR_PARAM_ERRS);
    let m = msg(&d);
    // ERROR is enum value 0, so msg_type is absent on the wire.
    assert_eq!(header(m), ("set-9", 0));
    let Some(MsgBody::Error(err)) = m.body.as_ref().and_then(|b| b.msg_body.as_ref()) else {
        panic!("not an Error: {m:?}");
    };
    assert_eq!(
        err,
        &usp::Error {
            err_code: 7004,
            err_msg: "Invalid arguments".into(),
            param_errs: vec![
                usp::error::ParamError {
                    param_path: "Device.WiFi.Radio.1.Channel".into(),
                    err_code: 7012,
                    err_msg: "Value out of range".into(),
                },
                usp::error::ParamError {
                    param_path: "Device.WiFi.Radio.1.Foo".into(),
                    err_code: 7026,
                    err_msg: "Invalid path".into(),
                },
            ],
        }
    );
}

#[test]
fn hand_fixtures_match_what_prost_encodes() {
    // Maps aside (prost writes them in key order), these messages have one canonical encoding;
    // equality shows the .proto files agree with the hand-written wire format field by field.
    let connect = hand(MQTT_CONNECT);
    assert_eq!(connect.payload, Payload::None);
    assert_eq!(connect.record.encode_to_vec(), unhex(MQTT_CONNECT));
    // Each of these carries a Msg: one that no longer decodes to a Msg fails here rather than
    // being skipped.
    for lines in [VALUE_CHANGE, OPERATION_COMPLETE_FAIL, ERROR_PARAM_ERRS] {
        let bytes = unhex(lines);
        let d = hand(lines);
        let Payload::Msg(m) = &d.payload else {
            panic!("the fixture's Msg did not decode: {:?}", d.payload);
        };
        let rebuilt = uspwatch_proto::wrap(m, EID, "self::uspwatch").encode_to_vec();
        assert_eq!(rebuilt, bytes);
    }
}
