//! Load harness: N simulated agents against a stock rumqttd in this process, plus a controller
//! that answers every Notify. Prints the fleet's totals and the process's CPU time (broker,
//! controller and fleet together, so an upper bound for the fleet).
//!
//! `cargo run -p uspwatch-sim --release --example load -- [agents] [seconds]`

#[path = "../tests/fleet/broker.rs"]
mod broker;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio_util::sync::CancellationToken;
use uspwatch_proto::pb::usp::{body, request};
use uspwatch_proto::{Limits, Message, builder, mqtt, validate, wrap};
use uspwatch_sim::{Fleet, FleetConfig, MqttMode};

const CONTROLLER: &str = "self::uspwatch";

/// User + system CPU seconds of this process (Linux `/proc/self/stat`, 100 ticks/s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

async fn controller(addr: std::net::SocketAddr) {
    let mut o = MqttOptions::new(CONTROLLER, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(o, 100_000);
    client
        .subscribe("usp/controller/self::uspwatch/#", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    tokio::spawn(async move {
        loop {
            let Ok(Event::Incoming(Packet::Publish(p))) = events.poll().await else {
                continue;
            };
            let topic = String::from_utf8_lossy(&p.topic).into_owned();
            let props = p.properties.unwrap_or_default();
            let v5 = props.response_topic.is_some();
            let reply = props
                .response_topic
                .or_else(|| mqtt::split_reply_to(&topic).ok().flatten().map(|(_, r)| r));
            let (Ok(d), Some(reply)) = (validate(&p.payload, &Limits::default()), reply) else {
                continue;
            };
            let Some(m) = d.msg() else { continue };
            let (Some(h), Some(body::MsgBody::Request(r))) =
                (&m.header, m.body.as_ref().and_then(|b| b.msg_body.as_ref()))
            else {
                continue;
            };
            let Some(request::ReqType::Notify(n)) = &r.req_type else {
                continue;
            };
            if !n.send_resp {
                continue;
            }
            let resp = builder::notify_resp(&h.msg_id, &n.subscription_id);
            let payload = Bytes::from(wrap(&resp, CONTROLLER, &d.record.from_id).encode_to_vec());
            let _ = if v5 {
                let props = PublishProperties {
                    content_type: Some(mqtt::CONTENT_TYPE.into()),
                    response_topic: Some("usp/controller/self::uspwatch".into()),
                    ..Default::default()
                };
                client.try_publish_with_properties(reply, QoS::AtLeastOnce, false, payload, props)
            } else {
                let t = mqtt::with_reply_to(&reply, "usp/controller/self::uspwatch");
                client.try_publish(t, QoS::AtLeastOnce, false, payload)
            };
        }
    });
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let agents: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let b = broker::start();
    controller(b.v5).await;
    let cfg = FleetConfig {
        broker: b.v5.to_string(),
        broker_v311: Some(b.v311.to_string()),
        agents,
        mqtt: MqttMode::Mixed,
        track_notifies: false,
        ..Default::default()
    };
    let started = Instant::now();
    let fleet = Fleet::start(cfg, CancellationToken::new())
        .await
        .expect("fleet");
    fleet
        .wait_all_connected(Duration::from_secs(120))
        .await
        .expect("all connected");
    let connected_after = started.elapsed();
    let (cpu0, s0, t0) = (cpu_seconds(), fleet.stats(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, s1, elapsed) = (cpu_seconds(), fleet.stats(), t0.elapsed().as_secs_f64());
    println!(
        "agents={agents} connected_in={connected_after:.1?} notifies/s={:.0} acked/s={:.0} \
         unacked_now={} retries={} cpu={:.1}% of one core ({:.1} µs CPU per notify, all in-process)",
        (s1.notifies_sent - s0.notifies_sent) as f64 / elapsed,
        (s1.notify_resps_received - s0.notify_resps_received) as f64 / elapsed,
        s1.unacked_now,
        s1.retries,
        (cpu1 - cpu0) / elapsed * 100.0,
        (cpu1 - cpu0) * 1e6 / (s1.notifies_sent - s0.notifies_sent).max(1) as f64,
    );
    fleet.stop().await;
}
