//! Throughput with the USP plugin on (our broker) vs off (stock `rumqttd::Broker`, same router
//! settings), same load, same process: N MQTT 5 agents publish valid Notify Records at QoS 1
//! to the controller topic; an in-process local link counts deliveries.
//!
//! `cargo bench -p uspwatch-broker --bench throughput` (release). Environment: `AGENTS`
//! (default 10), `MESSAGES` per agent (default 5000), `ROUNDS` (default 2).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::{AsyncClient, MqttOptions};
use rumqttd::{Config, ConnectionSettings, Notification, ServerSettings};
use tokio_util::sync::CancellationToken;
use uspwatch_broker::{Broker, BrokerConfig};
use uspwatch_proto::{Message, builder, wrap};

const CTL: &str = "self::ctl";
const CTL_TOPIC: &str = "usp/controller/self::ctl";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18830)
}

/// Runs the agents against `addr` and returns messages per second once `count_done`
/// reports every message delivered.
async fn load(
    addr: SocketAddr,
    agents: usize,
    messages: usize,
    done: tokio::sync::oneshot::Receiver<()>,
) -> f64 {
    let start = Instant::now();
    for a in 0..agents {
        let eid = format!("os::00256D-B{a}");
        let record = Bytes::from(
            wrap(
                &builder::value_change("m", "s", false, "Device.X", "1"),
                &eid,
                CTL,
            )
            .encode_to_vec(),
        );
        let mut o = MqttOptions::new(eid.clone(), addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(60));
        let (client, mut el) = AsyncClient::new(o, 1000);
        tokio::spawn(async move {
            // Ends once the publishing task drops its client and every request is sent.
            while el.poll().await.is_ok() {}
        });
        tokio::spawn(async move {
            let props = PublishProperties {
                content_type: Some("usp.msg".into()),
                response_topic: Some(format!("usp/agent/{eid}")),
                ..Default::default()
            };
            for _ in 0..messages {
                if client
                    .publish_with_properties(
                        CTL_TOPIC,
                        QoS::AtLeastOnce,
                        false,
                        record.clone(),
                        props.clone(),
                    )
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    let _ = done.await;
    (agents * messages) as f64 / start.elapsed().as_secs_f64()
}

fn router() -> rumqttd::RouterConfig {
    let r = uspwatch_broker::RouterSizing::default();
    rumqttd::RouterConfig {
        max_connections: 10_064,
        max_outgoing_packet_count: r.max_outgoing_packet_count,
        max_segment_size: r.max_segment_size,
        max_segment_count: r.max_segment_count,
        custom_segment: Some(HashMap::from([(
            "usp/controller/#".to_string(),
            rumqttd::SegmentConfig {
                max_segment_size: r.controller_segment_size,
                max_segment_count: r.controller_segment_count,
            },
        )])),
        ..Default::default()
    }
}

async fn plugin_on(agents: usize, messages: usize) -> f64 {
    let mut c = BrokerConfig::default();
    c.listeners.v5 = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    c.listeners.v311 = None;
    c.allow_anonymous = true;
    // Load agents send at full speed, far above a real device's ingress limit.
    c.ingress_rate = 0;
    c.ingress_byte_rate = 0;
    let token = CancellationToken::new();
    let b = Broker::start(c, token.clone()).await.expect("broker");
    let addr = b.local_addrs()[0].1;
    let (_p, mut rx) = b.local_link(CTL, &[CTL_TOPIC.to_string()]).expect("link");
    let total = agents * messages;
    let (tx, done) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
            if n == total {
                let _ = tx.send(());
                break;
            }
        }
    });
    let rate = load(addr, agents, messages, done).await;
    token.cancel();
    rate
}

async fn plugin_off(agents: usize, messages: usize) -> f64 {
    let port = free_port();
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let settings = ServerSettings {
        name: "v5".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: 1024 * 1024,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: false,
        },
    };
    let config = Config {
        router: router(),
        v5: Some(HashMap::from([("v5".to_string(), settings)])),
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    let (mut tx, mut rx) = broker.link("bench-ctl").expect("link");
    tx.subscribe(CTL_TOPIC).expect("subscribe");
    std::thread::spawn(move || {
        let _ = broker.start().map_err(|e| e.to_string());
    });
    let total = agents * messages;
    let (done_tx, done) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut n = 0;
        while let Ok(notification) = rx.recv() {
            match notification {
                Some(Notification::Forward(_)) => {
                    n += 1;
                    if n == total {
                        let _ = done_tx.send(());
                        return;
                    }
                }
                Some(Notification::Unschedule) if rx.ready().is_err() => return,
                _ => {}
            }
        }
    });
    // The stock server binds in its own thread; wait until it accepts.
    while tokio::net::TcpStream::connect(listen).await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    load(listen, agents, messages, done).await
}

fn main() {
    let agents = env("AGENTS", 10);
    let messages = env("MESSAGES", 5000);
    let rounds = env("ROUNDS", 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let r_off = rt.block_on(plugin_off(agents, messages));
        println!(
            "round {round}: plugin off (stock rumqttd) {r_off:>10.0} msg/s  rss {:.0} MiB",
            rss_mib()
        );
        let r_on = rt.block_on(plugin_on(agents, messages));
        println!(
            "round {round}: plugin on  (uspwatch)     {r_on:>10.0} msg/s  rss {:.0} MiB",
            rss_mib()
        );
        off.push(r_off);
        on.push(r_on);
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (b_off, b_on) = (best(&off), best(&on));
    println!(
        "{agents} agents x {messages} QoS 1 Notify records: plugin off {b_off:.0} msg/s, plugin on {b_on:.0} msg/s, ratio {:.2}",
        b_on / b_off
    );
}
