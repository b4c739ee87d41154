//! Compiles the USP .proto files with protox (pure Rust), so building needs no system `protoc`.
//!
//! Every generated type also derives `serde::Serialize` so `uspwatch decode` and the HTTP API
//! can show Records and Msgs as JSON: enums by name, bytes as base64 (see `src/json.rs`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/usp-record.proto", "proto/usp-msg.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let mut config = prost_build::Config::new();
    // Record payloads stay `Bytes` so decoding a Record from a `Bytes` buffer does not copy them.
    config.bytes([".usp_record"]);
    // Ordered maps keep JSON output and Kafka values deterministic.
    config.btree_map(["."]);
    config.type_attribute(
        ".",
        "#[derive(serde::Serialize)] #[serde(rename_all = \"snake_case\")]",
    );
    for f in [
        ".usp_record.Record.mac_signature",
        ".usp_record.Record.sender_cert",
        ".usp_record.NoSessionContextRecord.payload",
    ] {
        config.field_attribute(f, "#[serde(serialize_with = \"crate::json::base64\")]");
    }
    config.field_attribute(
        ".usp_record.SessionContextRecord.payload",
        "#[serde(serialize_with = \"crate::json::base64_list\")]",
    );
    let enums = [
        (".usp_record.Record.payload_security", "payload_security"),
        (
            ".usp_record.SessionContextRecord.payload_sar_state",
            "sar_state",
        ),
        (
            ".usp_record.SessionContextRecord.payloadrec_sar_state",
            "sar_state",
        ),
        (".usp_record.MQTTConnectRecord.version", "mqtt_version"),
        (".usp_record.STOMPConnectRecord.version", "stomp_version"),
        (".usp.Header.msg_type", "msg_type"),
        (
            ".usp.GetSupportedDMResp.SupportedObjectResult.access",
            "obj_access",
        ),
        (
            ".usp.GetSupportedDMResp.SupportedParamResult.access",
            "param_access",
        ),
        (
            ".usp.GetSupportedDMResp.SupportedParamResult.value_type",
            "param_value_type",
        ),
        (
            ".usp.GetSupportedDMResp.SupportedParamResult.value_change",
            "value_change_type",
        ),
        (
            ".usp.GetSupportedDMResp.SupportedCommandResult.command_type",
            "cmd_type",
        ),
    ];
    for (field, func) in enums {
        config.field_attribute(
            field,
            format!("#[serde(serialize_with = \"crate::json::enums::{func}\")]"),
        );
    }
    config.compile_fds(fds)?;
    Ok(())
}
