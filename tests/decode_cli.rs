//! `uspwatch decode` run as a process: the JSON it prints for real Records, and the one-line
//! errors and exit code 2 for everything else.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A ValueChange Notify captured from the BBF reference agent.
const VALUE_CHANGE_HEX: &str =
    include_str!("../proto/tests/fixtures/reference-agent/notify_value_change_1.hex");
/// An MQTTConnect record (no payload) from the same agent.
const MQTT_CONNECT_HEX: &str =
    include_str!("../proto/tests/fixtures/reference-agent/mqtt_connect_v5_1.hex");

fn uspwatch(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uspwatch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("uspwatch starts");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("stdin written");
    }
    drop(input);
    child.wait_with_output().expect("uspwatch runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn bytes_of(hex_text: &str) -> Vec<u8> {
    hex::decode(hex_text.trim()).expect("fixture hex")
}

fn assert_value_change(v: &Value) {
    assert_eq!(v["valid"], true);
    assert_eq!(v["payload"], "msg");
    assert_eq!(v["record_type"], "no_session_context");
    assert_eq!(v["record"]["version"], "1.3");
    assert_eq!(v["record"]["from_id"], "os::012345-obuspa-test");
    assert_eq!(v["record"]["to_id"], "self::noc-controller");
    assert_eq!(v["record"]["payload_security"], "PLAINTEXT");
    // Bytes are shown as base64.
    let payload = v["record"]["record_type"]["no_session_context"]["payload"]
        .as_str()
        .expect("payload is a string");
    assert!(payload.starts_with("CiYKIlZhbHVlQ2hhbmdl"), "{payload}");
    assert_eq!(
        v["msg"]["header"]["msg_id"],
        "ValueChange-2026-11-25T07:30:00Z-1"
    );
    // Enums are shown by name.
    assert_eq!(v["msg"]["header"]["msg_type"], "NOTIFY");
    let vc = &v["msg"]["body"]["msg_body"]["request"]["req_type"]["notify"]["notification"]["value_change"];
    assert_eq!(
        vc["param_path"],
        "Device.LocalAgent.Controller.1.ProvisioningCode"
    );
    assert_eq!(vc["param_value"], "prov-42");
    assert!(v.get("rejection").is_none());
}

/// Exit code 2, nothing on stdout, exactly one line on stderr starting with `error: <reason>:`.
fn assert_one_line_error(out: &Output, reason: &str) {
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(
        err.starts_with(&format!("error: {reason}: ")),
        "stderr: {err}"
    );
    assert!(!err.contains("panicked"), "stderr: {err}");
}

#[test]
fn hex_input_prints_record_and_msg() {
    let out = uspwatch(&["decode", "--hex", VALUE_CHANGE_HEX.trim()], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_value_change(&json(&out));
}

#[test]
fn base64_input_prints_record_and_msg() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes_of(VALUE_CHANGE_HEX));
    let out = uspwatch(&["decode", "--base64", &b64], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_value_change(&json(&out));
}

#[test]
fn file_and_stdin_input_print_record_and_msg() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(&bytes_of(VALUE_CHANGE_HEX))
        .expect("written");
    let path = file.path().to_str().expect("utf-8 path");
    let out = uspwatch(&["decode", path], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_value_change(&json(&out));

    let out = uspwatch(&["decode", "-"], Some(&bytes_of(VALUE_CHANGE_HEX)));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_value_change(&json(&out));
}

#[test]
fn connect_record_has_no_msg() {
    let out = uspwatch(&["decode", "--hex", MQTT_CONNECT_HEX.trim()], None);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["payload"], "none");
    assert_eq!(v["record_type"], "mqtt_connect");
    assert_eq!(v["msg"], Value::Null);
    assert_eq!(v["record"]["record_type"]["mqtt_connect"]["version"], "V5");
    assert_eq!(
        v["record"]["record_type"]["mqtt_connect"]["subscribed_topic"],
        "usp/agent/os::012345-obuspa-test"
    );
}

#[test]
fn decodable_but_invalid_record_is_printed_with_its_rejection() {
    // Version "1.3" rewritten to "x.3": still protobuf, no longer a valid Record.
    let mut bytes = bytes_of(VALUE_CHANGE_HEX);
    assert_eq!(&bytes[..5], b"\x0a\x031.3");
    bytes[2] = b'x';
    let out = uspwatch(&["decode", "--hex", &hex::encode(&bytes)], None);
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["valid"], false);
    assert_eq!(v["record"]["version"], "x.3");
    assert_eq!(v["msg"]["header"]["msg_type"], "NOTIFY");
    assert_eq!(v["rejection"]["reason"], "invalid_version");
    assert_eq!(v["rejection"]["usp_err_code"], 7104);
    assert!(
        v["rejection"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("x.3"))
    );
}

#[test]
fn malformed_input_gives_one_line_and_exit_code_2() {
    let truncated = {
        let b = bytes_of(VALUE_CHANGE_HEX);
        hex::encode(&b[..b.len() / 2])
    };
    for (args, reason) in [
        (vec!["decode", "--hex", "zz12"], "undecodable"),
        (vec!["decode", "--hex", "abc"], "undecodable"),
        (
            vec!["decode", "--base64", "%%%not base64%%%"],
            "undecodable",
        ),
        (vec!["decode", "--hex", "80"], "undecodable"),
        (vec!["decode", "--hex", &truncated], "undecodable"),
        // A Record whose payload is not a Msg.
        (
            vec!["decode", "--hex", "0a03312e343a0512031234ff"],
            "msg_undecodable",
        ),
        (
            vec!["decode", "/nonexistent/uspwatch/record.bin"],
            "unreadable",
        ),
    ] {
        let out = uspwatch(&args, None);
        assert_one_line_error(&out, reason);
    }
}

#[test]
fn garbage_on_stdin_gives_one_line_and_exit_code_2() {
    let garbage: Vec<u8> = (0..=255u8).rev().cycle().take(4096).collect();
    let out = uspwatch(&["decode", "-"], Some(&garbage));
    assert_one_line_error(&out, "undecodable");
}
