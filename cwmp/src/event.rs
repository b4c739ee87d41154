//! An Inform (or TransferComplete) as canonical [`Event`]s, so rules, alerts and Kafka
//! consumers see CWMP devices like USP ones.
//!
//! - every `EventStruct` becomes a `kind = event` Event named by its event code; `1 BOOT`
//!   is named `Boot!` like the USP Boot event (args `Cause`, `CommandKey`,
//!   `FirmwareUpdated`), so rules written for USP boots cover CWMP boots unchanged; the CWMP
//!   code is always in `args["cwmp_event_code"]`;
//! - every ParameterList entry becomes a `kind = value_change` Event (`path` = name,
//!   `value`), the way a USP ValueChange would report it;
//! - a TransferComplete becomes an `operation_complete` Event named `TransferComplete`,
//!   with `error` set when its FaultCode is not 0.
//!
//! `msg_id` is `cwmp-` plus a hash of the Inform's content without its RetryCount, so an
//! Inform the CPE retries after an unanswered session dedups to the same events.

use std::collections::BTreeMap;

use uspwatch_proto::{Event, EventError, EventKind};

use crate::endpoint::fnv1a64;
use crate::soap::{FaultStruct, Inform};

/// The `protocol` of every Event this crate makes.
pub const PROTOCOL: &str = "cwmp";

fn base(endpoint_id: &str, acs_id: &str, msg_id: &str, n: usize, at_ms: i64) -> Event {
    Event {
        event_id: format!("{endpoint_id}/{msg_id}/{n}"),
        endpoint_id: endpoint_id.to_string(),
        controller_id: acs_id.to_string(),
        msg_id: msg_id.to_string(),
        subscription_id: String::new(),
        send_resp: true,
        received_at: uspwatch_proto::rfc3339_millis(at_ms),
        received_at_ms: at_ms,
        kind: EventKind::Event,
        path: String::new(),
        name: None,
        value: None,
        args: BTreeMap::new(),
        command_key: None,
        error: None,
        labels: BTreeMap::new(),
        protocol: Some(PROTOCOL.to_string()),
    }
}

/// The data model root the parameters use (`Device.` or `InternetGatewayDevice.`).
fn root_of(inform: &Inform) -> &'static str {
    match inform.parameters.first() {
        Some(p) if p.name.starts_with("InternetGatewayDevice.") => "InternetGatewayDevice.",
        _ => "Device.",
    }
}

fn msg_id_of(inform: &Inform) -> String {
    let mut key = Vec::with_capacity(256);
    let mut part = |s: &str| {
        key.extend_from_slice(s.as_bytes());
        key.push(0);
    };
    part(&inform.current_time);
    for e in &inform.events {
        part(&e.code);
        part(&e.command_key);
    }
    for p in &inform.parameters {
        part(&p.name);
        part(&p.value);
    }
    format!("cwmp-{:016x}", fnv1a64(&key))
}

/// The Events of one Inform from `endpoint_id`, received by the ACS `acs_id` at `at_ms`.
pub fn inform_events(inform: &Inform, endpoint_id: &str, acs_id: &str, at_ms: i64) -> Vec<Event> {
    let msg_id = msg_id_of(inform);
    let root = root_of(inform);
    let mut out = Vec::with_capacity(inform.events.len() + inform.parameters.len());
    let key_of = |code: &str| {
        inform
            .events
            .iter()
            .find(|e| e.code == code)
            .map(|e| e.command_key.as_str())
    };
    for ev in &inform.events {
        let mut e = base(endpoint_id, acs_id, &msg_id, out.len(), at_ms);
        e.path = root.to_string();
        e.args.insert("cwmp_event_code".into(), ev.code.clone());
        if ev.code == "1 BOOT" {
            let remote = key_of("M Reboot");
            let download = key_of("M Download").or(key_of("M ScheduleDownload"));
            // A bootstrap without an ACS-initiated reboot is a factory reset on the device.
            let cause = if remote.is_some() || download.is_some() {
                "RemoteReboot"
            } else if key_of("0 BOOTSTRAP").is_some() {
                "LocalFactoryReset"
            } else {
                "LocalReboot"
            };
            e.name = Some("Boot!".into());
            e.args.insert("Cause".into(), cause.into());
            e.args.insert(
                "CommandKey".into(),
                remote.or(download).unwrap_or_default().into(),
            );
            e.args
                .insert("FirmwareUpdated".into(), download.is_some().to_string());
        } else {
            e.name = Some(ev.code.clone());
        }
        if !ev.command_key.is_empty() {
            e.command_key = Some(ev.command_key.clone());
        }
        out.push(e);
    }
    for p in &inform.parameters {
        let mut e = base(endpoint_id, acs_id, &msg_id, out.len(), at_ms);
        e.kind = EventKind::ValueChange;
        e.path = p.name.clone();
        e.value = Some(p.value.clone());
        out.push(e);
    }
    out
}

/// The Event of a TransferComplete.
pub fn transfer_complete_event(
    command_key: &str,
    fault: &FaultStruct,
    complete_time: &str,
    endpoint_id: &str,
    acs_id: &str,
    at_ms: i64,
) -> Event {
    let key = format!("{command_key}\0{}\0{complete_time}", fault.code);
    let msg_id = format!("cwmp-tc-{:016x}", fnv1a64(key.as_bytes()));
    let mut e = base(endpoint_id, acs_id, &msg_id, 0, at_ms);
    e.kind = EventKind::OperationComplete;
    e.path = "Device.".into();
    e.name = Some("TransferComplete".into());
    e.command_key = Some(command_key.to_string());
    if fault.code != 0 {
        e.error = Some(EventError {
            code: fault.code,
            message: fault.string.clone(),
        });
    }
    e
}
