//! Builders for the Msgs a Controller sends (and, for simulators and tests, what an Agent
//! sends), and [`wrap`] to put a Msg in a `NoSessionContext` Record.
//!
//! Each builder sets `msg_type` to agree with the body, so what it returns passes
//! [`crate::validate_msg`].

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;

use crate::pb::usp::{self, Body, Header, Msg, body, header::MsgType, request, response};
use crate::pb::usp_record::{
    DisconnectRecord, MqttConnectRecord, NoSessionContextRecord, Record,
    mqtt_connect_record::MqttVersion, record,
};

/// Wraps a Msg in a plaintext `NoSessionContext` Record from `from_id` to `to_id`.
pub fn wrap(msg: &Msg, from_id: &str, to_id: &str) -> Record {
    record_with(
        from_id,
        to_id,
        record::RecordType::NoSessionContext(NoSessionContextRecord {
            payload: Bytes::from(msg.encode_to_vec()),
        }),
    )
}

fn record_with(from_id: &str, to_id: &str, rt: record::RecordType) -> Record {
    Record {
        version: crate::USP_VERSION.to_string(),
        to_id: to_id.to_string(),
        from_id: from_id.to_string(),
        record_type: Some(rt),
        ..Default::default()
    }
}

/// An MQTTConnectRecord announcing the sender's reply topic (R-MTP.6).
pub fn mqtt_connect(from_id: &str, to_id: &str, v5: bool, subscribed_topic: &str) -> Record {
    let version = if v5 {
        MqttVersion::V5
    } else {
        MqttVersion::V311
    };
    record_with(
        from_id,
        to_id,
        record::RecordType::MqttConnect(MqttConnectRecord {
            version: version as i32,
            subscribed_topic: subscribed_topic.to_string(),
        }),
    )
}

/// A DisconnectRecord with a 71xx reason code (R-MTP.7/9).
pub fn disconnect(from_id: &str, to_id: &str, reason_code: u32, reason: &str) -> Record {
    record_with(
        from_id,
        to_id,
        record::RecordType::Disconnect(DisconnectRecord {
            reason: reason.to_string(),
            reason_code,
        }),
    )
}

fn msg(msg_id: &str, t: MsgType, b: body::MsgBody) -> Msg {
    Msg {
        header: Some(Header {
            msg_id: msg_id.to_string(),
            msg_type: t as i32,
        }),
        body: Some(Body { msg_body: Some(b) }),
    }
}

fn req(msg_id: &str, t: MsgType, r: request::ReqType) -> Msg {
    msg(
        msg_id,
        t,
        body::MsgBody::Request(usp::Request { req_type: Some(r) }),
    )
}

fn resp(msg_id: &str, t: MsgType, r: response::RespType) -> Msg {
    msg(
        msg_id,
        t,
        body::MsgBody::Response(usp::Response { resp_type: Some(r) }),
    )
}

fn strings(v: &[impl AsRef<str>]) -> Vec<String> {
    v.iter().map(|s| s.as_ref().to_string()).collect()
}

/// Get (`max_depth` 0 = the full subtree).
pub fn get(msg_id: &str, paths: &[impl AsRef<str>], max_depth: u32) -> Msg {
    req(
        msg_id,
        MsgType::Get,
        request::ReqType::Get(usp::Get {
            param_paths: strings(paths),
            max_depth,
        }),
    )
}

/// One object of a Set or Add: its path and `(param, value, required)` settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectSettings {
    pub obj_path: String,
    pub params: Vec<(String, String, bool)>,
}

/// Set.
pub fn set(msg_id: &str, allow_partial: bool, objects: &[ObjectSettings]) -> Msg {
    use usp::set::{UpdateObject, UpdateParamSetting};
    let update_objs = objects
        .iter()
        .map(|o| UpdateObject {
            obj_path: o.obj_path.clone(),
            param_settings: o
                .params
                .iter()
                .map(|(p, v, r)| UpdateParamSetting {
                    param: p.clone(),
                    value: v.clone(),
                    required: *r,
                })
                .collect(),
        })
        .collect();
    req(
        msg_id,
        MsgType::Set,
        request::ReqType::Set(usp::Set {
            allow_partial,
            update_objs,
        }),
    )
}

/// Add.
pub fn add(msg_id: &str, allow_partial: bool, objects: &[ObjectSettings]) -> Msg {
    use usp::add::{CreateObject, CreateParamSetting};
    let create_objs = objects
        .iter()
        .map(|o| CreateObject {
            obj_path: o.obj_path.clone(),
            param_settings: o
                .params
                .iter()
                .map(|(p, v, r)| CreateParamSetting {
                    param: p.clone(),
                    value: v.clone(),
                    required: *r,
                })
                .collect(),
        })
        .collect();
    req(
        msg_id,
        MsgType::Add,
        request::ReqType::Add(usp::Add {
            allow_partial,
            create_objs,
        }),
    )
}

/// Delete.
pub fn delete(msg_id: &str, allow_partial: bool, obj_paths: &[impl AsRef<str>]) -> Msg {
    req(
        msg_id,
        MsgType::Delete,
        request::ReqType::Delete(usp::Delete {
            allow_partial,
            obj_paths: strings(obj_paths),
        }),
    )
}

/// Operate.
pub fn operate(
    msg_id: &str,
    command: &str,
    command_key: &str,
    send_resp: bool,
    input_args: BTreeMap<String, String>,
) -> Msg {
    req(
        msg_id,
        MsgType::Operate,
        request::ReqType::Operate(usp::Operate {
            command: command.to_string(),
            command_key: command_key.to_string(),
            send_resp,
            input_args,
        }),
    )
}

/// GetSupportedDM returning commands, events and parameters.
pub fn get_supported_dm(
    msg_id: &str,
    obj_paths: &[impl AsRef<str>],
    first_level_only: bool,
) -> Msg {
    req(
        msg_id,
        MsgType::GetSupportedDm,
        request::ReqType::GetSupportedDm(usp::GetSupportedDm {
            obj_paths: strings(obj_paths),
            first_level_only,
            return_commands: true,
            return_events: true,
            return_params: true,
            return_unique_key_sets: true,
        }),
    )
}

/// GetInstances.
pub fn get_instances(msg_id: &str, obj_paths: &[impl AsRef<str>], first_level_only: bool) -> Msg {
    req(
        msg_id,
        MsgType::GetInstances,
        request::ReqType::GetInstances(usp::GetInstances {
            obj_paths: strings(obj_paths),
            first_level_only,
        }),
    )
}

/// GetSupportedProtocol advertising `versions` (CSV "major.minor").
pub fn get_supported_protocol(msg_id: &str, versions: &str) -> Msg {
    req(
        msg_id,
        MsgType::GetSupportedProto,
        request::ReqType::GetSupportedProtocol(usp::GetSupportedProtocol {
            controller_supported_protocol_versions: versions.to_string(),
        }),
    )
}

/// NotifyResp answering the Notify `msg_id`, echoing its `subscription_id` (R-NOT.10).
pub fn notify_resp(msg_id: &str, subscription_id: &str) -> Msg {
    resp(
        msg_id,
        MsgType::NotifyResp,
        response::RespType::NotifyResp(usp::NotifyResp {
            subscription_id: subscription_id.to_string(),
        }),
    )
}

/// Error, with optional `(param_path, err_code, err_msg)` entries.
pub fn error(msg_id: &str, err_code: u32, err_msg: &str, param_errs: &[(&str, u32, &str)]) -> Msg {
    msg(
        msg_id,
        MsgType::Error,
        body::MsgBody::Error(usp::Error {
            err_code,
            err_msg: err_msg.to_string(),
            param_errs: param_errs
                .iter()
                .map(|(p, c, m)| usp::error::ParamError {
                    param_path: p.to_string(),
                    err_code: *c,
                    err_msg: m.to_string(),
                })
                .collect(),
        }),
    )
}

/// Any Notify (agent side).
pub fn notify(
    msg_id: &str,
    subscription_id: &str,
    send_resp: bool,
    notification: usp::notify::Notification,
) -> Msg {
    req(
        msg_id,
        MsgType::Notify,
        request::ReqType::Notify(usp::Notify {
            subscription_id: subscription_id.to_string(),
            send_resp,
            notification: Some(notification),
        }),
    )
}

/// Notify ValueChange (agent side).
pub fn value_change(msg_id: &str, sub: &str, send_resp: bool, path: &str, value: &str) -> Msg {
    notify(
        msg_id,
        sub,
        send_resp,
        usp::notify::Notification::ValueChange(usp::notify::ValueChange {
            param_path: path.to_string(),
            param_value: value.to_string(),
        }),
    )
}

/// Notify Event, e.g. `Device.` `Boot!` (agent side).
pub fn event(
    msg_id: &str,
    sub: &str,
    send_resp: bool,
    obj_path: &str,
    event_name: &str,
    params: BTreeMap<String, String>,
) -> Msg {
    notify(
        msg_id,
        sub,
        send_resp,
        usp::notify::Notification::Event(usp::notify::Event {
            obj_path: obj_path.to_string(),
            event_name: event_name.to_string(),
            params,
        }),
    )
}

/// Notify OperationComplete (agent side): `Ok(output_args)` or `Err((err_code, err_msg))`.
pub fn operation_complete(
    msg_id: &str,
    sub: &str,
    send_resp: bool,
    obj_path: &str,
    command_name: &str,
    command_key: &str,
    result: Result<BTreeMap<String, String>, (u32, String)>,
) -> Msg {
    use usp::notify::operation_complete::{CommandFailure, OperationResp, OutputArgs};
    let operation_resp = Some(match result {
        Ok(output_args) => OperationResp::ReqOutputArgs(OutputArgs { output_args }),
        Err((err_code, err_msg)) => OperationResp::CmdFailure(CommandFailure { err_code, err_msg }),
    });
    notify(
        msg_id,
        sub,
        send_resp,
        usp::notify::Notification::OperComplete(usp::notify::OperationComplete {
            obj_path: obj_path.to_string(),
            command_name: command_name.to_string(),
            command_key: command_key.to_string(),
            operation_resp,
        }),
    )
}

/// Any response (agent side), with `msg_type` derived from the body.
pub fn response(msg_id: &str, r: response::RespType) -> Msg {
    let b = body::MsgBody::Response(usp::Response { resp_type: Some(r) });
    let (t, _) = crate::msg_type_of(&b);
    let mut m = msg(msg_id, MsgType::Error, b);
    if let Some(h) = m.header.as_mut() {
        h.msg_type = t;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Payload, validate};

    fn round_trip(m: Msg) {
        let bytes = wrap(&m, "os::00256D-0001", "self::uspwatch").encode_to_vec();
        let d = validate(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("{m:?}: {e}"));
        assert_eq!(d.payload, Payload::Msg(m));
        assert_eq!(d.record.from_id, "os::00256D-0001");
        assert_eq!(d.record.to_id, "self::uspwatch");
    }

    #[test]
    fn every_builder_round_trips() {
        let obj = ObjectSettings {
            obj_path: "Device.WiFi.Radio.1.".into(),
            params: vec![("Channel".into(), "6".into(), true)],
        };
        let args = BTreeMap::from([("Host".to_string(), "example.net".to_string())]);
        round_trip(get("m1", &["Device.DeviceInfo."], 2));
        round_trip(set("m2", false, std::slice::from_ref(&obj)));
        round_trip(add("m3", true, &[obj]));
        round_trip(delete("m4", false, &["Device.LocalAgent.Subscription.3."]));
        round_trip(operate(
            "m5",
            "Device.IP.Diagnostics.IPPing()",
            "k1",
            true,
            args.clone(),
        ));
        round_trip(get_supported_dm("m6", &["Device."], true));
        round_trip(get_instances("m7", &["Device.WiFi.SSID."], false));
        round_trip(get_supported_protocol(
            "m8",
            crate::SUPPORTED_PROTOCOL_VERSIONS,
        ));
        round_trip(notify_resp("m9", "sub-1"));
        round_trip(error("m10", 7004, "bad", &[("Device.X", 7012, "nope")]));
        round_trip(value_change("m11", "s", true, "Device.X", "1"));
        round_trip(event("m12", "s", false, "Device.", "Boot!", args.clone()));
        round_trip(operation_complete(
            "m13",
            "s",
            true,
            "Device.",
            "Reboot()",
            "k",
            Ok(args),
        ));
        round_trip(operation_complete(
            "m14",
            "s",
            true,
            "Device.IP.Diagnostics.",
            "IPPing()",
            "k",
            Err((7022, "failed".into())),
        ));
        round_trip(response(
            "m15",
            response::RespType::GetSupportedProtocolResp(usp::GetSupportedProtocolResp {
                agent_supported_protocol_versions: "1.3".into(),
            }),
        ));
    }

    #[test]
    fn connect_and_disconnect_records_validate() {
        for r in [
            mqtt_connect("os::00256D-1", "self::c", true, "usp/agent/os::00256D-1"),
            mqtt_connect("os::00256D-1", "self::c", false, "usp/agent/os::00256D-1"),
            disconnect("os::00256D-1", "self::c", 7105, "bye"),
        ] {
            let bytes = r.encode_to_vec();
            let d = validate(&bytes, &Limits::default()).unwrap();
            assert_eq!(d.payload, Payload::None);
            assert_eq!(d.record, r);
        }
    }
}
