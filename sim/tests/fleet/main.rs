//! The fleet against a real MQTT broker (stock rumqttd, MQTT 5 and 3.1.1 listeners) and a small
//! test Controller: connection and Boot!, Notify retries, requests, fault scenarios and fixes.

mod broker;
mod controller;
mod scenarios;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uspwatch_proto::builder::{self, ObjectSettings};
use uspwatch_proto::pb::usp::{self, notify::Notification, response::RespType};
use uspwatch_proto::pb::usp_record::record::RecordType;
use uspwatch_sim::{Fleet, FleetConfig, MqttMode, MqttVersion, Scenario};

use broker::Broker;
use controller::{Controller, Received, resp};

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

fn config(b: &Broker, agents: usize, mqtt: MqttMode) -> FleetConfig {
    FleetConfig {
        broker: b.v5.to_string(),
        broker_v311: Some(b.v311.to_string()),
        agents,
        mqtt,
        periodic_interval: 3600 * S,
        sample_interval: 3600 * S,
        notify_retry_min_wait: 5 * S,
        reboot_delay: 100 * MS,
        operation_duration: 100 * MS,
        seed: 7,
        ..Default::default()
    }
}

/// Polls a condition on the fleet (it has no change feed) until it holds.
async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(20 * MS).await;
    }
}

fn boots(log: &[Received], eid: &str) -> Vec<usp::notify::Event> {
    log.iter()
        .filter(|r| r.from == eid)
        .filter_map(|r| r.event("Boot!").cloned())
        .collect()
}

fn reboot(c: &Controller, key: &str) -> usp::Msg {
    builder::operate(&c.next_id(), "Device.Reboot()", key, true, BTreeMap::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_and_v311_agents_connect_then_boot_and_get_acked() {
    let b = broker::start();
    let c = Controller::start(b.v5).await;
    let fleet = Fleet::start(config(&b, 4, MqttMode::Mixed), CancellationToken::new())
        .await
        .unwrap();
    fleet.wait_all_connected(10 * S).await.unwrap();
    let agents = fleet.agents();
    assert!(agents.iter().any(|a| a.mqtt == MqttVersion::V5));
    assert!(agents.iter().any(|a| a.mqtt == MqttVersion::V311));
    for a in &agents {
        let eid = a.eid.clone();
        c.wait_for(10 * S, |log| (!boots(log, &eid).is_empty()).then_some(()))
            .await;
        let recs = c.from(&eid);
        let topic = format!("usp/agent/{eid}");
        let Some(RecordType::MqttConnect(mc)) = &recs[0].record.record_type else {
            panic!(
                "{eid}: first record is not MQTTConnect: {:?}",
                recs[0].record
            )
        };
        assert_eq!(mc.subscribed_topic, topic);
        assert_eq!(
            mc.version == 0,
            a.mqtt == MqttVersion::V311,
            "{eid}: version {}",
            mc.version
        );
        let boot = recs[1]
            .event("Boot!")
            .expect("Boot! right after MQTTConnect");
        assert_eq!(boot.params["Cause"], "LocalReboot");
        for r in &recs {
            assert_eq!(r.record.to_id, controller::EID);
            assert_eq!(r.reply.as_deref(), Some(topic.as_str()));
            if a.mqtt == MqttVersion::V5 {
                assert!(r.v5);
                assert_eq!(r.topic, "usp/controller/self::uspwatch");
                assert_eq!(r.content_type.as_deref(), Some("usp.msg"));
            } else {
                assert!(!r.v5);
                assert!(
                    r.topic
                        .starts_with("usp/controller/self::uspwatch/reply-to=usp%2Fagent%2F")
                );
            }
        }
    }
    eventually(10 * S, || {
        let s = fleet.stats();
        s.notify_resps_received >= 4 && s.unacked_now == 0
    })
    .await;
    for a in fleet.agents() {
        assert!(
            !a.notifies.is_empty() && a.notifies.iter().all(|n| n.acked),
            "{a:?}"
        );
    }
    let s = fleet.stats();
    assert_eq!((s.agents, s.connected, s.retries), (4, 4, 0));
    fleet.stop().await;
    c.wait_for(5 * S, |log| {
        (log.iter().filter(|r| r.is_disconnect()).count() == 4).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_notifies_are_retried_with_backoff_until_acked() {
    let b = broker::start();
    let c = Controller::start(b.v5).await;
    c.auto_ack.store(false, std::sync::atomic::Ordering::SeqCst);
    let m = 150 * MS;
    let cfg = FleetConfig {
        notify_retry_min_wait: m,
        ..config(&b, 2, MqttMode::Mixed)
    };
    let fleet = Fleet::start(cfg, CancellationToken::new()).await.unwrap();
    let eids: Vec<String> = fleet.agents().into_iter().map(|a| a.eid).collect();
    // Broker latency (stock rumqttd has no TCP_NODELAY) blurs each arrival by tens of ms.
    let tolerance = 150 * MS;
    for eid in &eids {
        let copies: Vec<Instant> = c
            .wait_for(15 * S, |log| {
                let first = log
                    .iter()
                    .filter(|r| r.from == *eid)
                    .find_map(|r| r.notify().map(|(id, _)| id.to_string()))?;
                let at: Vec<Instant> = log
                    .iter()
                    .filter(|r| r.from == *eid && r.notify().is_some_and(|(id, _)| id == first))
                    .map(|r| r.at)
                    .collect();
                (at.len() >= 4).then_some(at)
            })
            .await;
        for n in 1..4 {
            let gap = copies[n] - copies[n - 1];
            let low = m * 2u32.pow(n as u32 - 1);
            assert!(
                gap + tolerance >= low && gap <= low * 2 + tolerance,
                "{eid}: retry {n} after {gap:?}, expected {low:?}..{:?}",
                low * 2
            );
        }
    }
    assert!(fleet.stats().retries >= 6);
    c.auto_ack.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually(10 * S, || fleet.stats().unacked_now == 0).await;
    for a in fleet.agents() {
        assert!(a.notifies.iter().all(|n| n.acked), "{a:?}");
    }
    let count = c.log().len();
    // Unacknowledged, a fifth retry would have come within 32 × m = 4.8 s.
    let quiet = c.stays_false(5 * S, |log| log.len() > count).await;
    assert!(quiet, "Notifies were sent again after their NotifyResp");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_set_operate_and_reboot_over_both_mqtt_versions() {
    let b = broker::start();
    let c = Controller::start(b.v5).await;
    let fleet = Fleet::start(config(&b, 2, MqttMode::Mixed), CancellationToken::new())
        .await
        .unwrap();
    for a in fleet.agents() {
        let eid = a.eid.clone();
        c.wait_for(10 * S, |log| (!boots(log, &eid).is_empty()).then_some(()))
            .await;

        let g = builder::get(
            &c.next_id(),
            &["Device.WiFi.Radio.*.Channel", "Device.DeviceInfo."],
            0,
        );
        let RespType::GetResp(r) = resp(&c.request(&eid, &g).await).clone() else {
            panic!()
        };
        let channel =
            r.req_path_results[0].resolved_path_results[0].result_params["Channel"].clone();
        assert!(r.req_path_results[1].resolved_path_results.len() >= 4);

        let new = if channel == "1" { "6" } else { "1" };
        let set = builder::set(
            &c.next_id(),
            false,
            &[ObjectSettings {
                obj_path: "Device.WiFi.Radio.1.".into(),
                params: vec![("Channel".into(), new.into(), true)],
            }],
        );
        let RespType::SetResp(r) = resp(&c.request(&eid, &set).await).clone() else {
            panic!()
        };
        assert_eq!(r.updated_obj_results.len(), 1);
        c.wait_for(5 * S, |log| {
            log.iter()
                .any(|r| r.from == eid && r.value("Device.WiFi.Radio.1.Channel") == Some(new))
                .then_some(())
        })
        .await;

        let ping = builder::operate(
            &c.next_id(),
            "Device.IP.Diagnostics.IPPing()",
            "k-ping",
            true,
            BTreeMap::from([("Host".into(), "localhost".into())]),
        );
        let RespType::OperateResp(r) = resp(&c.request(&eid, &ping).await).clone() else {
            panic!()
        };
        use usp::operate_resp::operation_result::OperationResp;
        assert!(
            matches!(&r.operation_results[0].operation_resp, Some(OperationResp::ReqObjPath(p)) if p.starts_with("Device.LocalAgent.Request."))
        );
        let done = c
            .wait_for(5 * S, |log| {
                log.iter().filter(|r| r.from == eid).find_map(|r| {
                    match &r.notify()?.1.notification {
                        Some(Notification::OperComplete(o)) if o.command_key == "k-ping" => {
                            Some(o.clone())
                        }
                        _ => None,
                    }
                })
            })
            .await;
        use usp::notify::operation_complete::OperationResp as Done;
        let Some(Done::ReqOutputArgs(out)) = done.operation_resp else {
            panic!("{done:?}")
        };
        assert_eq!(
            (
                out.output_args["Status"].as_str(),
                out.output_args["FailureCount"].as_str()
            ),
            ("Complete", "0")
        );

        c.send_raw(&eid, b"not a USP record");
        let start = c.log().len();
        let RespType::OperateResp(_) =
            resp(&c.request(&eid, &reboot(&c, "k-reboot")).await).clone()
        else {
            panic!()
        };
        let tail = c
            .wait_for(10 * S, |log| {
                let tail: Vec<Received> = log[start..]
                    .iter()
                    .filter(|r| r.from == eid)
                    .cloned()
                    .collect();
                tail.iter()
                    .any(|r| r.event("Boot!").is_some())
                    .then_some(tail)
            })
            .await;
        let disc = tail
            .iter()
            .position(Received::is_disconnect)
            .expect("DisconnectRecord");
        let conn = tail
            .iter()
            .position(Received::is_mqtt_connect)
            .expect("MQTTConnect");
        let boot = tail
            .iter()
            .position(|r| r.event("Boot!").is_some())
            .unwrap();
        assert!(disc < conn && conn < boot, "order: {tail:?}");
        let e = tail[boot].event("Boot!").unwrap();
        assert_eq!(
            (e.params["Cause"].as_str(), e.params["CommandKey"].as_str()),
            ("RemoteReboot", "k-reboot")
        );
        let st = fleet.agent(&eid).unwrap();
        assert_eq!(st.boots, 2);
        let cmds: Vec<(&str, &str, &str)> = st
            .commands
            .iter()
            .map(|c| (c.kind.as_str(), c.path.as_str(), c.detail.as_str()))
            .collect();
        assert!(
            cmds.contains(&("operate", "Device.Reboot()", "k-reboot")),
            "{cmds:?}"
        );
        assert!(
            cmds.contains(&("set", "Device.WiFi.Radio.1.Channel", new)),
            "{cmds:?}"
        );
    }
    let s = fleet.stats();
    assert_eq!(s.reboots, 2);
    assert_eq!(s.invalid_records_received, 2);
    assert_eq!(s.requests_received["operate"], 4);
    assert_eq!(
        (s.requests_received["get"], s.requests_received["set"]),
        (2, 2)
    );
    fleet.wait_all_connected(5 * S).await.unwrap();
    fleet.stop().await;
}

#[tokio::test]
async fn fault_assignment_is_deterministic_with_the_seed() {
    let cfg = |seed| FleetConfig {
        broker: "127.0.0.1:1".into(),
        agents: 40,
        seed,
        faults: uspwatch_sim::FaultSpec::parse_list(
            "wifi_interference:0.1,silent:0.1,reboot_loop:0.05",
        )
        .unwrap(),
        ..Default::default()
    };
    let run = |seed| async move {
        let f = Fleet::start(cfg(seed), CancellationToken::new())
            .await
            .unwrap();
        let picked: Vec<Vec<String>> = [
            Scenario::WifiInterference,
            Scenario::Silent,
            Scenario::RebootLoop,
        ]
        .into_iter()
        .map(|s| f.faulty(s))
        .collect();
        f.stop().await;
        picked
    };
    let (a, b, other) = (run(5).await, run(5).await, run(6).await);
    assert_eq!(a, b);
    assert_ne!(a, other);
    assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
}
