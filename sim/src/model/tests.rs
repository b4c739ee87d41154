//! The agent model driven without a broker: explicit instants, Records in and out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use uspwatch_proto::builder::{self, ObjectSettings};
use uspwatch_proto::pb::usp::{self, body, notify::Notification, request, response};
use uspwatch_proto::pb::usp_record::record::RecordType;
use uspwatch_proto::{Limits, Message, validate, wrap};

use super::*;
use crate::status::{AgentStatus, Counters, MqttVersion, Wan};

const CONTROLLER: &str = "self::uspwatch";
const REPLY: &str = "usp/controller/self::uspwatch";
const S: Duration = Duration::from_secs(1);

struct H {
    a: Agent,
    t0: Instant,
    counters: Arc<Counters>,
    status: Arc<Mutex<AgentStatus>>,
}

fn agent(index: usize, faults: &[(Scenario, Duration)]) -> H {
    let t0 = Instant::now();
    let p = Arc::new(Params {
        controller_eid: CONTROLLER.into(),
        controller_prefix: "usp/controller".into(),
        agent_prefix: "usp/agent".into(),
        periodic_interval: 10 * S,
        sample_interval: 5 * S,
        retry_min_wait: 5 * S,
        operation_duration: S,
        reboot_loop_period: 15 * S,
        wan_flap_period: 10 * S,
        track_notifies: true,
        start: t0,
        run_id: "r".into(),
        seed: 42,
    });
    let eid = format!("os::00256D-SIM{index:06}");
    let counters = Arc::new(Counters::default());
    let status = Arc::new(Mutex::new(AgentStatus {
        eid: eid.clone(),
        index,
        mqtt: MqttVersion::V5,
        wan: Wan::of_index(index),
        connected: false,
        boots: 0,
        faults: Vec::new(),
        commands: Vec::new(),
        notifies: Vec::new(),
    }));
    let a = Agent::new(
        p,
        index,
        eid,
        true,
        faults,
        counters.clone(),
        status.clone(),
    );
    H {
        a,
        t0,
        counters,
        status,
    }
}

/// Decoded Msgs of the published Records (connect/disconnect Records are skipped).
fn msgs(outs: &[Out]) -> Vec<(Dest, usp::Msg)> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Publish { to, payload } => {
                let d =
                    validate(payload, &Limits::default()).expect("agent sent an invalid record");
                d.msg().map(|m| (to.clone(), m.clone()))
            }
            Out::Reboot { .. } => None,
        })
        .collect()
}

fn notifies(outs: &[Out]) -> Vec<(String, usp::Notify)> {
    msgs(outs)
        .into_iter()
        .filter(|(to, _)| *to == Dest::Controller)
        .filter_map(|(_, m)| {
            let id = m.header?.msg_id;
            match m.body?.msg_body? {
                body::MsgBody::Request(usp::Request {
                    req_type: Some(request::ReqType::Notify(n)),
                }) => Some((id, n)),
                _ => None,
            }
        })
        .collect()
}

fn response(outs: &[Out]) -> response::RespType {
    let (to, m) = msgs(outs).into_iter().next().expect("a response");
    assert_eq!(to, Dest::Reply(REPLY.into()));
    match m.body.and_then(|b| b.msg_body) {
        Some(body::MsgBody::Response(r)) => r.resp_type.expect("a response body"),
        other => panic!("expected a response, got {other:?}"),
    }
}

fn event_of(n: &usp::Notify) -> Option<&usp::notify::Event> {
    match &n.notification {
        Some(Notification::Event(e)) => Some(e),
        _ => None,
    }
}

fn value_of<'a>(ns: &'a [(String, usp::Notify)], path: &str) -> Option<&'a str> {
    ns.iter().find_map(|(_, n)| match &n.notification {
        Some(Notification::ValueChange(v)) if v.param_path == path => Some(v.param_value.as_str()),
        _ => None,
    })
}

impl H {
    fn connect(&mut self, at: Duration) -> Vec<Out> {
        self.a.on_connected(self.t0 + at, "usp/agent/x")
    }

    fn request(&mut self, at: Duration, m: &usp::Msg) -> Vec<Out> {
        let bytes = wrap(m, CONTROLLER, &self.a.eid).encode_to_vec();
        self.a.on_record(self.t0 + at, &bytes, Some(REPLY.into()))
    }

    fn ack_all(&mut self, at: Duration, outs: &[Out]) {
        for (id, n) in notifies(outs) {
            if n.send_resp {
                let r = builder::notify_resp(&id, &n.subscription_id);
                assert!(self.request(at, &r).is_empty());
            }
        }
    }

    fn int(&self, path: &str) -> i64 {
        self.a.int(path).unwrap_or_else(|| panic!("{path} missing"))
    }
}

#[test]
fn connect_sends_mqtt_connect_then_boot() {
    let mut h = agent(1, &[]);
    let outs = h.connect(S);
    let Out::Publish { payload, to } = &outs[0] else {
        panic!()
    };
    assert_eq!(*to, Dest::Controller);
    let rec = validate(payload, &Limits::default()).unwrap().record;
    assert!(
        matches!(rec.record_type, Some(RecordType::MqttConnect(ref c)) if c.subscribed_topic == "usp/agent/x")
    );
    let ns = notifies(&outs);
    assert_eq!(ns.len(), 2, "Boot! and the start-up Channel report");
    assert!(value_of(&ns, "Device.WiFi.Radio.1.Channel").is_some());
    let (_, boot) = &ns[0];
    assert!(boot.send_resp);
    assert_eq!(boot.subscription_id, "uspwatch-boot");
    let e = event_of(boot).unwrap();
    assert_eq!(
        (e.obj_path.as_str(), e.event_name.as_str()),
        ("Device.", "Boot!")
    );
    assert_eq!(e.params["Cause"], "LocalReboot");
    assert_eq!(e.params["FirmwareUpdated"], "false");
    let map: serde_json::Value = serde_json::from_str(&e.params["ParameterMap"]).unwrap();
    assert_eq!(map["Device.DeviceInfo.ModelName"], "SimGateway-PON");
    assert!(map["Device.DeviceInfo.SoftwareVersion"].is_string());
    assert!(h.status.lock().connected);
    // A reconnect without a reboot sends no new Boot!, but the unacknowledged one again.
    let boot_id = ns[0].0.clone();
    h.a.on_disconnected();
    let again = notifies(&h.connect(2 * S));
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].0, boot_id);
    assert_eq!(again[1].0, ns[1].0);
    assert_eq!(h.status.lock().boots, 1);
}

#[test]
fn unacknowledged_notify_is_retried_with_backoff_until_acked() {
    let mut h = agent(1, &[]);
    let outs = h.connect(Duration::ZERO);
    let mut first = notifies(&outs);
    let (boot_id, _) = first.remove(0);
    // Only the Boot! stays unacknowledged.
    for (id, n) in first {
        h.request(
            Duration::ZERO,
            &builder::notify_resp(&id, &n.subscription_id),
        );
    }
    // Ack nothing; collect the instants at which the Boot! goes out again.
    let mut sent_at = Vec::new();
    let mut t = h.t0;
    while sent_at.len() < 3 {
        t = h.a.next_deadline().max(t);
        let outs = h.a.on_timer(t);
        if notifies(&outs).iter().any(|(id, _)| *id == boot_id) {
            sent_at.push(t - h.t0);
        }
        for (id, n) in notifies(&outs) {
            if id != boot_id && n.send_resp {
                h.request(t - h.t0, &builder::notify_resp(&id, &n.subscription_id));
            }
        }
    }
    // R-NOT.2: retry n waits within [m·2^(n-1), m·2^n], m = 5 s.
    let gaps = [sent_at[0], sent_at[1] - sent_at[0], sent_at[2] - sent_at[1]];
    for (n, g) in gaps.iter().enumerate() {
        let low = 5 * S * 2u32.pow(n as u32);
        assert!(
            *g >= low && *g <= low * 2 + Duration::from_millis(1),
            "retry {} after {g:?}",
            n + 1
        );
    }
    assert_eq!(
        h.counters
            .retries
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    let r = builder::notify_resp(&boot_id, "uspwatch-boot");
    h.request(sent_at[2], &r);
    assert_eq!(h.a.unacked(), 0);
    assert!(h.status.lock().notifies.iter().all(|n| n.acked));
    let later = h.a.on_timer(h.t0 + Duration::from_secs(3600));
    assert!(notifies(&later).iter().all(|(id, _)| *id != boot_id));
}

#[test]
fn backoff_caps_after_ten_retries() {
    let mut rng = SmallRng::seed_from_u64(1);
    for n in 0..15 {
        let d = backoff(&mut rng, 5 * S, n);
        let low = 5 * S * 2u32.pow(n.min(9));
        assert!(d >= low && d <= low * 2, "{n}: {d:?}");
    }
    assert!(backoff(&mut rng, 5 * S, 20) <= Duration::from_secs(5120));
}

#[test]
fn get_with_partial_paths_and_wildcards() {
    let mut h = agent(2, &[]);
    h.connect(Duration::ZERO);
    let g = builder::get(
        "g1",
        &[
            "Device.WiFi.Radio.*.Channel",
            "Device.DeviceInfo.",
            "Device.Nope",
        ],
        0,
    );
    let response::RespType::GetResp(r) = response(&h.request(S, &g)) else {
        panic!()
    };
    let ch = &r.req_path_results[0].resolved_path_results[0];
    assert_eq!(ch.resolved_path, "Device.WiFi.Radio.1.");
    assert!(["1", "6", "11"].contains(&ch.result_params["Channel"].as_str()));
    let di = &r.req_path_results[1].resolved_path_results;
    assert_eq!(di[0].result_params["ModelName"], "SimGateway-DSL");
    assert!(
        di.iter()
            .any(|o| o.resolved_path == "Device.DeviceInfo.MemoryStatus."
                && o.result_params["Total"] == "524288")
    );
    assert_eq!(r.req_path_results[2].err_code, 7026);
    assert_eq!(h.status.lock().commands[0].kind, "get");
}

#[test]
fn set_channel_clears_wifi_interference() {
    let mut h = agent(1, &[(Scenario::WifiInterference, Duration::ZERO)]);
    let outs = h.connect(Duration::ZERO);
    h.ack_all(Duration::ZERO, &outs);
    for k in 1..=3 {
        let outs = h.a.on_timer(h.t0 + k * 5 * S);
        let noise: i64 = value_of(&notifies(&outs), "Device.WiFi.Radio.1.Stats.Noise")
            .unwrap()
            .parse()
            .unwrap();
        assert!((-65..=-55).contains(&noise), "{noise}");
    }
    let cur =
        h.a.tree
            .get("Device.WiFi.Radio.1.Channel")
            .unwrap()
            .to_string();
    let new = if cur == "1" { "6" } else { "1" };
    let bad = builder::set(
        "s0",
        false,
        &[ObjectSettings {
            obj_path: "Device.WiFi.Radio.1.".into(),
            params: vec![("Channel".into(), "13".into(), true)],
        }],
    );
    let outs = h.request(16 * S, &bad);
    let (_, m) = &msgs(&outs)[0];
    assert!(
        matches!(m.body.as_ref().and_then(|b| b.msg_body.as_ref()), Some(body::MsgBody::Error(e)) if e.param_errs[0].err_code == 7012)
    );
    let set = builder::set(
        "s1",
        false,
        &[ObjectSettings {
            obj_path: "Device.WiFi.Radio.1.".into(),
            params: vec![("Channel".into(), new.into(), true)],
        }],
    );
    let outs = h.request(16 * S, &set);
    let response::RespType::SetResp(r) = response(&outs) else {
        panic!()
    };
    assert_eq!(r.updated_obj_results.len(), 1);
    assert_eq!(
        value_of(&notifies(&outs), "Device.WiFi.Radio.1.Channel"),
        Some(new)
    );
    let st = h.status.lock().clone();
    assert!(
        st.fault_cleared(Scenario::WifiInterference)
            && !st.fault_active(Scenario::WifiInterference)
    );
    assert_eq!(
        st.commands.last().unwrap().path,
        "Device.WiFi.Radio.1.Channel"
    );
    let outs = h.a.on_timer(h.t0 + 20 * S);
    let noise: i64 = value_of(&notifies(&outs), "Device.WiFi.Radio.1.Stats.Noise")
        .unwrap()
        .parse()
        .unwrap();
    assert!((-95..=-85).contains(&noise), "{noise}");
}

#[test]
fn remote_reboot_reconnects_with_boot_and_clears_leak_and_silence() {
    let mut h = agent(
        3,
        &[
            (Scenario::MemoryLeak, Duration::ZERO),
            (Scenario::Silent, 65 * S),
        ],
    );
    let outs = h.connect(Duration::ZERO);
    h.ack_all(Duration::ZERO, &outs);
    let total = i64::from(crate::faults::MEMORY_TOTAL);
    for k in 1..=12 {
        let outs = h.a.on_timer(h.t0 + k * 5 * S);
        let cpu: i64 = value_of(&notifies(&outs), "Device.DeviceInfo.ProcessStatus.CPUUsage")
            .unwrap()
            .parse()
            .unwrap();
        assert!(cpu >= 90, "{cpu}");
        h.ack_all(k * 5 * S, &outs);
    }
    assert!(h.int("Device.DeviceInfo.MemoryStatus.Free") < total / 20);
    // Silent from 65 s: nothing at all, not even Periodic!.
    assert!(notifies(&h.a.on_timer(h.t0 + 75 * S)).is_empty());
    assert!(h.status.lock().fault_active(Scenario::Silent));
    let op = builder::operate("o1", "Device.Reboot()", "fix-1", true, BTreeMap::new());
    let outs = h.request(76 * S, &op);
    let response::RespType::OperateResp(r) = response(&outs) else {
        panic!()
    };
    assert!(matches!(
        r.operation_results[0].operation_resp,
        Some(usp::operate_resp::operation_result::OperationResp::ReqOutputArgs(_))
    ));
    assert_eq!(outs.last(), Some(&Out::Reboot { graceful: true }));
    h.a.on_disconnected();
    assert!(!h.status.lock().connected);
    let outs = h.connect(79 * S);
    let ns = notifies(&outs);
    let boot = ns
        .iter()
        .find_map(|(_, n)| event_of(n).filter(|e| e.event_name == "Boot!"))
        .unwrap();
    assert_eq!(boot.params["Cause"], "RemoteReboot");
    assert_eq!(boot.params["CommandKey"], "fix-1");
    let st = h.status.lock().clone();
    assert!(st.fault_cleared(Scenario::MemoryLeak) && st.fault_cleared(Scenario::Silent));
    assert!(h.int("Device.DeviceInfo.MemoryStatus.Free") >= 200_000);
    assert_eq!(h.counters.snapshot(1).reboots, 1);
    assert!(
        !notifies(&h.a.on_timer(h.t0 + 95 * S)).is_empty(),
        "talks again"
    );
}

#[test]
fn ipping_is_async_and_diag_failure_fails_it() {
    for (faults, ok) in [
        (vec![], true),
        (vec![(Scenario::DiagFailure, Duration::ZERO)], false),
    ] {
        let mut h = agent(1, &faults);
        h.connect(Duration::ZERO);
        for i in 0..4 {
            let at = S * (10 * i + 1);
            h.a.on_timer(h.t0 + at - S);
            let key = format!("ping-{i}");
            let op = builder::operate(
                "p",
                "Device.IP.Diagnostics.IPPing()",
                &key,
                true,
                BTreeMap::from([("Host".into(), "example.net".into())]),
            );
            let outs = h.request(at, &op);
            let response::RespType::OperateResp(r) = response(&outs) else {
                panic!()
            };
            let Some(usp::operate_resp::operation_result::OperationResp::ReqObjPath(p)) =
                &r.operation_results[0].operation_resp
            else {
                panic!()
            };
            assert!(p.starts_with("Device.LocalAgent.Request.") && p.ends_with('.'));
            let outs = h.a.on_timer(h.t0 + at + S);
            let ns = notifies(&outs);
            let oc = ns.iter().find_map(|(_, n)| match &n.notification {
                Some(Notification::OperComplete(o)) => Some((n, o)),
                _ => None,
            });
            let (n, oc) = oc.expect("OperationComplete");
            assert_eq!(
                (n.subscription_id.as_str(), n.send_resp),
                ("uspwatch-oper", true)
            );
            assert_eq!(
                (
                    oc.obj_path.as_str(),
                    oc.command_name.as_str(),
                    oc.command_key.as_str()
                ),
                ("Device.IP.Diagnostics.", "IPPing()", key.as_str())
            );
            use usp::notify::operation_complete::OperationResp as R;
            match (&oc.operation_resp, ok) {
                (Some(R::ReqOutputArgs(a)), true) => {
                    assert_eq!(a.output_args["Status"], "Complete");
                    assert_eq!(a.output_args["FailureCount"], "0");
                }
                (Some(R::ReqOutputArgs(a)), false) => {
                    assert!(a.output_args["FailureCount"].parse::<u32>().unwrap() >= 3);
                }
                (Some(R::CmdFailure(f)), false) => assert_eq!(f.err_code, 7022),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn other_async_commands_and_unknown_command() {
    let mut h = agent(1, &[(Scenario::WifiInterference, Duration::ZERO)]);
    h.connect(Duration::ZERO);
    for (cmd, obj, name) in [
        (
            "Device.WiFi.NeighboringWiFiDiagnostic()",
            "Device.WiFi.",
            "NeighboringWiFiDiagnostic()",
        ),
        (
            "Device.SelfTestDiagnostics()",
            "Device.",
            "SelfTestDiagnostics()",
        ),
    ] {
        let outs = h.request(S, &builder::operate("x", cmd, "k", true, BTreeMap::new()));
        assert!(matches!(
            response(&outs),
            response::RespType::OperateResp(_)
        ));
        let ns = notifies(&h.a.on_timer(h.t0 + 2 * S + Duration::from_millis(1)));
        let found = ns.iter().any(|(_, n)| matches!(&n.notification, Some(Notification::OperComplete(o)) if o.obj_path == obj && o.command_name == name));
        assert!(found, "{cmd}");
    }
    let outs = h.request(
        3 * S,
        &builder::operate("y", "Device.Nope()", "k", true, BTreeMap::new()),
    );
    let (_, m) = &msgs(&outs)[0];
    assert!(
        matches!(m.body.as_ref().and_then(|b| b.msg_body.as_ref()), Some(body::MsgBody::Error(e)) if e.err_code == 7026)
    );
}

#[test]
fn scenarios_produce_the_contract_values() {
    type Range = std::ops::RangeInclusive<i64>;
    let cases: [(Scenario, usize, &str, Range, Range); 4] = [
        (
            Scenario::Overheating,
            1,
            "Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.Value",
            45..=60,
            90..=100,
        ),
        (
            Scenario::DslDegradation,
            2,
            "Device.DSL.Line.1.DownstreamNoiseMargin",
            60..=120,
            10..=30,
        ),
        (
            Scenario::PonLowPower,
            1,
            "Device.Optical.Interface.1.OpticalSignalLevel",
            -18_000..=-15_000,
            -29_000..=-27_500,
        ),
        (
            Scenario::WifiInterference,
            1,
            "Device.WiFi.Radio.1.Stats.Noise",
            -95..=-85,
            -65..=-55,
        ),
    ];
    for (s, index, path, normal, faulty) in cases {
        let mut h = agent(index, &[(s, 12 * S)]);
        h.connect(Duration::ZERO);
        let mut last = None;
        for k in 1..=5u32 {
            let ns = notifies(&h.a.on_timer(h.t0 + k * 5 * S));
            let v: i64 = value_of(&ns, path)
                .unwrap_or_else(|| panic!("{s}: no {path}"))
                .parse()
                .unwrap();
            let range = if k <= 2 { &normal } else { &faulty };
            assert!(range.contains(&v), "{s} sample {k}: {v}");
            assert_ne!(Some(v), last, "values jitter every sample");
            last = Some(v);
            let free: i64 = value_of(&ns, "Device.DeviceInfo.MemoryStatus.Free")
                .unwrap()
                .parse()
                .unwrap();
            assert!((200_000..=300_000).contains(&free));
        }
        assert!(h.status.lock().fault_active(s));
    }
}

#[test]
fn wan_flap_toggles_and_reboot_loop_reboots_locally() {
    let mut h = agent(1, &[(Scenario::WanFlap, Duration::ZERO)]);
    h.connect(Duration::ZERO);
    let mut states = Vec::new();
    loop {
        let t = h.a.next_deadline();
        if t > h.t0 + 45 * S {
            break;
        }
        let outs = h.a.on_timer(t);
        if let Some(v) = value_of(&notifies(&outs), "Device.IP.Interface.1.Status") {
            states.push(v.to_string());
        }
        h.ack_all(t - h.t0, &outs);
    }
    assert!(states.len() >= 4, "{states:?}");
    assert!(states.windows(2).all(|w| w[0] != w[1]));

    let mut h = agent(1, &[(Scenario::RebootLoop, 5 * S)]);
    h.connect(Duration::ZERO);
    let mut reboots = Vec::new();
    while reboots.len() < 3 {
        let t = h.a.next_deadline();
        let outs = h.a.on_timer(t);
        if outs.contains(&Out::Reboot { graceful: false }) {
            reboots.push(t - h.t0);
            h.a.on_disconnected();
            let outs = h.a.on_connected(t + 2 * S, "usp/agent/x");
            let boot = notifies(&outs)
                .into_iter()
                .find_map(|(_, n)| event_of(&n).cloned())
                .unwrap();
            assert_eq!(boot.params["Cause"], "LocalReboot");
            assert_eq!(boot.params["CommandKey"], "");
        }
    }
    assert!(reboots[0] >= 18 * S && reboots[0] <= 22 * S, "{reboots:?}");
    for w in reboots.windows(2) {
        assert!(
            w[1] - w[0] >= 15 * S && w[1] - w[0] <= 19 * S + Duration::from_millis(1),
            "{reboots:?}"
        );
    }
}

#[test]
fn add_and_delete_subscriptions() {
    let mut h = agent(1, &[]);
    h.connect(Duration::ZERO);
    let add = builder::add(
        "a1",
        false,
        &[ObjectSettings {
            obj_path: "Device.LocalAgent.Subscription.".into(),
            params: vec![
                ("ID".into(), "noc-noise".into(), true),
                ("Enable".into(), "true".into(), true),
                ("NotifType".into(), "ValueChange".into(), true),
                (
                    "ReferenceList".into(),
                    "Device.WiFi.Radio.*.Stats.Noise".into(),
                    true,
                ),
            ],
        }],
    );
    let response::RespType::AddResp(r) = response(&h.request(S, &add)) else {
        panic!()
    };
    use usp::add_resp::created_object_result::operation_status::OperStatus;
    let Some(OperStatus::OperSuccess(ok)) = r.created_obj_results[0]
        .oper_status
        .as_ref()
        .and_then(|s| s.oper_status.clone())
    else {
        panic!()
    };
    assert_eq!(ok.instantiated_path, "Device.LocalAgent.Subscription.5.");
    assert_eq!(ok.unique_keys["ID"], "noc-noise");
    let dup = h.request(S, &add);
    let (_, m) = &msgs(&dup)[0];
    assert!(
        matches!(m.body.as_ref().and_then(|b| b.msg_body.as_ref()), Some(body::MsgBody::Error(e)) if e.err_code == 7025)
    );

    let ns = notifies(&h.a.on_timer(h.t0 + 5 * S));
    let mine: Vec<_> = ns
        .iter()
        .filter(|(_, n)| n.subscription_id == "noc-noise")
        .collect();
    assert_eq!(mine.len(), 1);
    assert!(!mine[0].1.send_resp, "NotifRetry defaults to false");

    let del = builder::delete(
        "d1",
        false,
        &["Device.LocalAgent.Subscription.[ID==noc-noise]."],
    );
    let response::RespType::DeleteResp(r) = response(&h.request(6 * S, &del)) else {
        panic!()
    };
    use usp::delete_resp::deleted_object_result::operation_status::OperStatus as D;
    let Some(D::OperSuccess(ok)) = r.deleted_obj_results[0]
        .oper_status
        .as_ref()
        .and_then(|s| s.oper_status.clone())
    else {
        panic!()
    };
    assert_eq!(ok.affected_paths, ["Device.LocalAgent.Subscription.5."]);
    let ns = notifies(&h.a.on_timer(h.t0 + 10 * S));
    assert!(ns.iter().all(|(_, n)| n.subscription_id != "noc-noise"));
    let bad = builder::delete("d2", false, &["Device.WiFi.Radio.1."]);
    let (_, m) = &msgs(&h.request(11 * S, &bad))[0];
    assert!(
        matches!(m.body.as_ref().and_then(|b| b.msg_body.as_ref()), Some(body::MsgBody::Error(e)) if e.err_code == 7024)
    );
}

#[test]
fn invalid_and_misaddressed_records_are_counted_and_ignored() {
    let mut h = agent(1, &[]);
    h.connect(Duration::ZERO);
    assert!(h.a.on_record(h.t0, b"\xff\x00garbage", None).is_empty());
    let g = builder::get("g", &["Device."], 0);
    let other = wrap(&g, CONTROLLER, "os::00256D-SIM999999").encode_to_vec();
    assert!(h.a.on_record(h.t0, &other, None).is_empty());
    assert_eq!(h.counters.snapshot(1).invalid_records_received, 2);
    // Without a reply topic, the response goes to the sender's controller topic.
    let bytes = wrap(&g, CONTROLLER, &h.a.eid).encode_to_vec();
    let outs = h.a.on_record(h.t0, &bytes, None);
    assert_eq!(msgs(&outs)[0].0, Dest::Reply(REPLY.into()));
}

#[test]
fn periodic_event_follows_the_interval() {
    let mut h = agent(1, &[]);
    h.connect(Duration::ZERO);
    let mut at = Vec::new();
    while at.len() < 3 {
        let t = h.a.next_deadline();
        let outs = h.a.on_timer(t);
        h.ack_all(t - h.t0, &outs);
        let ns = notifies(&outs);
        if ns.iter().any(|(_, n)| {
            n.subscription_id == "uspwatch-periodic"
                && event_of(n).is_some_and(|e| {
                    e.obj_path == "Device.LocalAgent." && e.event_name == "Periodic!"
                })
        }) {
            at.push(t);
        }
    }
    assert_eq!(at[1] - at[0], 10 * S);
    assert_eq!(at[2] - at[1], 10 * S);
}

#[test]
fn periodic_interval_set_by_the_controller_and_instances() {
    let mut h = agent(1, &[]);
    let outs = h.connect(Duration::ZERO);
    h.ack_all(Duration::ZERO, &outs);
    let set = builder::set(
        "s",
        false,
        &[ObjectSettings {
            obj_path: "Device.LocalAgent.Controller.1.".into(),
            params: vec![("PeriodicNotifInterval".into(), "2".into(), true)],
        }],
    );
    assert!(matches!(
        response(&h.request(S, &set)),
        response::RespType::SetResp(_)
    ));
    assert_eq!(h.a.next_periodic, h.t0 + 3 * S);
    let gi = builder::get_instances("i", &["Device.LocalAgent.Subscription."], true);
    let response::RespType::GetInstancesResp(r) = response(&h.request(S, &gi)) else {
        panic!()
    };
    let ids: Vec<_> = r.req_path_results[0]
        .curr_insts
        .iter()
        .map(|i| i.unique_keys["ID"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "uspwatch-vc",
            "uspwatch-boot",
            "uspwatch-periodic",
            "uspwatch-oper"
        ]
    );
    let gsp = builder::get_supported_protocol("p", "1.4");
    assert!(matches!(
        response(&h.request(S, &gsp)),
        response::RespType::GetSupportedProtocolResp(r) if r.agent_supported_protocol_versions.contains("1.4")
    ));
    let ro = builder::set(
        "s2",
        true,
        &[ObjectSettings {
            obj_path: "Device.DeviceInfo.".into(),
            params: vec![("SoftwareVersion".into(), "9".into(), false)],
        }],
    );
    let response::RespType::SetResp(r) = response(&h.request(S, &ro)) else {
        panic!()
    };
    use usp::set_resp::updated_object_result::operation_status::OperStatus;
    let Some(OperStatus::OperSuccess(ok)) = r.updated_obj_results[0]
        .oper_status
        .as_ref()
        .and_then(|s| s.oper_status.clone())
    else {
        panic!()
    };
    assert_eq!(ok.updated_inst_results[0].param_errs[0].err_code, 7013);
    assert_eq!(
        h.a.tree.get("Device.DeviceInfo.SoftwareVersion"),
        Some("1.4.2")
    );
}
