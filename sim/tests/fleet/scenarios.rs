//! Every fault scenario produces the values the rule-pack contract names, and the fixes a
//! Controller can apply (channel change, Reboot) clear the fixable ones.

use std::collections::BTreeMap;
use tokio_util::sync::CancellationToken;
use uspwatch_proto::builder::{self, ObjectSettings};
use uspwatch_proto::pb::usp::{
    notify::Notification, notify::operation_complete::OperationResp, response::RespType,
};
use uspwatch_sim::{FaultSpec, Fleet, FleetConfig, MqttMode, Scenario};

use crate::controller::{Controller, Received, resp};
use crate::{MS, S, broker, config, reboot};

fn values_after(log: &[Received], start: usize, eid: &str, path: &str) -> Vec<String> {
    log.get(start..)
        .unwrap_or_default()
        .iter()
        .filter(|r| r.from == eid)
        .filter_map(|r| r.value(path).map(str::to_string))
        .collect()
}

fn ints(v: Vec<String>) -> Vec<i64> {
    v.iter().filter_map(|s| s.parse().ok()).collect()
}

fn boot_causes_after(log: &[Received], start: usize, eid: &str) -> Vec<(String, String)> {
    log[start..]
        .iter()
        .filter(|r| r.from == eid)
        .filter_map(|r| r.event("Boot!"))
        .map(|e| (e.params["Cause"].clone(), e.params["CommandKey"].clone()))
        .collect()
}

/// Waits until the last `n` values of `path` from `eid` lie in `range`.
async fn settles_in(
    c: &Controller,
    eid: &str,
    path: &str,
    n: usize,
    range: std::ops::RangeInclusive<i64>,
) {
    let start = c.log().len();
    c.wait_for(10 * S, |log| {
        let v = ints(values_after(log, start, eid, path));
        (v.len() >= n && v[v.len() - n..].iter().all(|x| range.contains(x))).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_produce_contract_values_and_fixes_clear_them() {
    let b = broker::start();
    let c = Controller::start(b.v5).await;
    let faults = "dsl_degradation:0.25,pon_low_power:0.2,wifi_interference:0.12,wan_flap:0.12,\
                  reboot_loop:0.12@2s,memory_leak:0.12,overheating:0.12,silent:0.12@1s,diag_failure:0.12";
    let cfg = FleetConfig {
        sample_interval: 250 * MS,
        periodic_interval: 500 * MS,
        notify_retry_min_wait: 2 * S,
        reboot_loop_period: 800 * MS,
        wan_flap_period: 300 * MS,
        seed: 11,
        faults: FaultSpec::parse_list(faults).unwrap(),
        ..config(&b, 9, MqttMode::Mixed)
    };
    let fleet = Fleet::start(cfg, CancellationToken::new()).await.unwrap();
    let one = |s: Scenario| {
        let v = fleet.faulty(s);
        assert_eq!(v.len(), 1, "{s}: {v:?}");
        v[0].clone()
    };
    let eids: Vec<String> = Scenario::ALL.into_iter().map(one).collect();
    let mut distinct = eids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 9, "one scenario per agent");
    fleet.wait_all_connected(10 * S).await.unwrap();

    // Symptoms.
    let hot = one(Scenario::Overheating);
    settles_in(
        &c,
        &hot,
        "Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.Value",
        3,
        90..=100,
    )
    .await;
    let dsl = one(Scenario::DslDegradation);
    assert!(
        fleet.agent(&dsl).unwrap().index % 2 == 0,
        "DSL agents have even indices"
    );
    settles_in(
        &c,
        &dsl,
        "Device.DSL.Line.1.DownstreamNoiseMargin",
        3,
        10..=30,
    )
    .await;
    let pon = one(Scenario::PonLowPower);
    settles_in(
        &c,
        &pon,
        "Device.Optical.Interface.1.OpticalSignalLevel",
        3,
        -29_000..=-27_500,
    )
    .await;
    let noisy = one(Scenario::WifiInterference);
    settles_in(&c, &noisy, "Device.WiFi.Radio.1.Stats.Noise", 2, -65..=-55).await;
    let leaky = one(Scenario::MemoryLeak);
    settles_in(
        &c,
        &leaky,
        "Device.DeviceInfo.ProcessStatus.CPUUsage",
        2,
        90..=99,
    )
    .await;
    settles_in(
        &c,
        &leaky,
        "Device.DeviceInfo.MemoryStatus.Free",
        1,
        0..=52_428,
    )
    .await;

    let flappy = one(Scenario::WanFlap);
    c.wait_for(10 * S, |log| {
        let v = values_after(log, 0, &flappy, "Device.IP.Interface.1.Status");
        (v.len() >= 4 && v.windows(2).all(|w| w[0] != w[1])).then_some(())
    })
    .await;

    let looping = one(Scenario::RebootLoop);
    c.wait_for(15 * S, |log| {
        let causes = boot_causes_after(log, 0, &looping);
        (causes.len() >= 4).then_some(())
    })
    .await;
    assert!(
        boot_causes_after(&c.log(), 0, &looping)
            .iter()
            .all(|(cause, key)| cause == "LocalReboot" && key.is_empty())
    );

    let failing = one(Scenario::DiagFailure);
    let ping = builder::operate(
        &c.next_id(),
        "Device.IP.Diagnostics.IPPing()",
        "diag",
        true,
        BTreeMap::new(),
    );
    let RespType::OperateResp(_) = resp(&c.request(&failing, &ping).await).clone() else {
        panic!()
    };
    let result = c
        .wait_for(5 * S, |log| {
            log.iter().filter(|r| r.from == failing).find_map(|r| {
                match &r.notify()?.1.notification {
                    Some(Notification::OperComplete(o)) if o.command_key == "diag" => {
                        o.operation_resp.clone()
                    }
                    _ => None,
                }
            })
        })
        .await;
    match result {
        OperationResp::ReqOutputArgs(a) => {
            assert_eq!(a.output_args["Status"], "Complete");
            assert!(
                a.output_args["FailureCount"].parse::<u32>().unwrap() >= 3,
                "{a:?}"
            );
        }
        OperationResp::CmdFailure(f) => assert_eq!(f.err_code, 7022),
    }

    let silent = one(Scenario::Silent);
    let eid = silent.clone();
    crate::eventually(5 * S, || {
        fleet.agent(&eid).unwrap().fault_active(Scenario::Silent)
    })
    .await;
    let start = c.log().len();
    let quiet = c
        .stays_false(2 * S, |log| log[start..].iter().any(|r| r.from == silent))
        .await;
    assert!(quiet, "a silent agent sends nothing");
    assert!(
        fleet.agent(&silent).unwrap().connected,
        "but stays connected"
    );

    // Fixes.
    let start = c.log().len();
    let set = |channel: &str| {
        builder::set(
            &c.next_id(),
            false,
            &[ObjectSettings {
                obj_path: "Device.WiFi.Radio.1.".into(),
                params: vec![("Channel".into(), channel.into(), true)],
            }],
        )
    };
    let g = builder::get(&c.next_id(), &["Device.WiFi.Radio.1.Channel"], 0);
    let RespType::GetResp(r) = resp(&c.request(&noisy, &g).await).clone() else {
        panic!()
    };
    let current = r.req_path_results[0].resolved_path_results[0].result_params["Channel"].clone();
    let RespType::SetResp(_) = resp(&c.request(&noisy, &set(&current)).await).clone() else {
        panic!()
    };
    assert!(
        fleet
            .agent(&noisy)
            .unwrap()
            .fault_active(Scenario::WifiInterference),
        "the same channel fixes nothing"
    );
    let other = if current == "1" { "6" } else { "1" };
    let RespType::SetResp(_) = resp(&c.request(&noisy, &set(other)).await).clone() else {
        panic!()
    };
    let st = fleet.agent(&noisy).unwrap();
    assert!(
        st.fault_cleared(Scenario::WifiInterference)
            && !st.fault_active(Scenario::WifiInterference)
    );
    settles_in(&c, &noisy, "Device.WiFi.Radio.1.Stats.Noise", 2, -95..=-85).await;

    for (eid, key) in [
        (&leaky, "fix-leak"),
        (&silent, "fix-silent"),
        (&looping, "fix-loop"),
    ] {
        let RespType::OperateResp(_) = resp(&c.request(eid, &reboot(&c, key)).await).clone() else {
            panic!()
        };
        c.wait_for(10 * S, |log| {
            boot_causes_after(log, start, eid)
                .contains(&("RemoteReboot".to_string(), key.to_string()))
                .then_some(())
        })
        .await;
    }
    settles_in(
        &c,
        &leaky,
        "Device.DeviceInfo.MemoryStatus.Free",
        1,
        200_000..=300_000,
    )
    .await;
    assert!(
        fleet
            .agent(&leaky)
            .unwrap()
            .fault_cleared(Scenario::MemoryLeak)
    );
    let after = c.log().len();
    c.wait_for(5 * S, |log| {
        log[after..]
            .iter()
            .any(|r| r.from == silent && r.event("Periodic!").is_some())
            .then_some(())
    })
    .await;
    assert!(
        fleet
            .agent(&silent)
            .unwrap()
            .fault_cleared(Scenario::Silent)
    );
    // Nothing the Controller does stops a reboot loop.
    c.wait_for(10 * S, |log| {
        boot_causes_after(log, after, &looping)
            .iter()
            .any(|(cause, _)| cause == "LocalReboot")
            .then_some(())
    })
    .await;
    assert!(
        fleet
            .agent(&looping)
            .unwrap()
            .fault_active(Scenario::RebootLoop)
    );
    for s in [
        Scenario::Overheating,
        Scenario::DslDegradation,
        Scenario::PonLowPower,
        Scenario::WanFlap,
        Scenario::DiagFailure,
    ] {
        assert!(
            fleet.agent(&one(s)).unwrap().fault_active(s),
            "{s} is not fixable"
        );
    }
    fleet.stop().await;
}
