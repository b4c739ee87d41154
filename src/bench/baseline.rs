//! The baseline: stock `rumqttd::Broker` with the router sized as uspwatch sizes it, and a
//! plain in-process subscriber on the controller topic that only counts deliveries.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use rumqttd::{Config, ConnectionSettings, Notification, ServerSettings};
use uspwatch_broker::RouterSizing;

/// A running stock broker. Its router thread has no stop; it idles once its clients leave.
pub struct Plain {
    pub addr: SocketAddr,
    pub delivered: Arc<AtomicU64>,
}

fn router(max_connections: usize, controller_prefix: &str) -> rumqttd::RouterConfig {
    let r = RouterSizing::default();
    rumqttd::RouterConfig {
        max_connections,
        max_outgoing_packet_count: r.max_outgoing_packet_count,
        max_segment_size: r.max_segment_size,
        max_segment_count: r.max_segment_count,
        custom_segment: Some(HashMap::from([(
            format!("{controller_prefix}/#"),
            rumqttd::SegmentConfig {
                max_segment_size: r.controller_segment_size,
                max_segment_count: r.controller_segment_count,
            },
        )])),
        ..Default::default()
    }
}

pub async fn start(
    max_connections: usize,
    controller_prefix: &str,
    controller_topic: &str,
) -> anyhow::Result<Plain> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
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
        router: router(max_connections + 64, controller_prefix),
        v5: Some(HashMap::from([("v5".to_string(), settings)])),
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    let (mut tx, mut rx) = broker.link("bench-plain-subscriber").context("link")?;
    tx.subscribe(controller_topic).context("subscribe")?;
    std::thread::Builder::new()
        .name("plain-rumqttd".into())
        .spawn(move || {
            let _ = broker.start();
        })?;
    let delivered = Arc::new(AtomicU64::new(0));
    let counter = delivered.clone();
    std::thread::Builder::new()
        .name("plain-subscriber".into())
        .spawn(move || {
            // The link must stay alive for the subscription to hold.
            let _tx = tx;
            while let Ok(n) = rx.recv() {
                match n {
                    Some(Notification::Forward(_)) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Notification::Unschedule) if rx.ready().is_err() => return,
                    _ => {}
                }
            }
        })?;
    // The stock server binds in its own thread; wait (bounded) until it accepts.
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            return Ok(Plain {
                addr: listen,
                delivered,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("the stock rumqttd did not start listening on {listen}")
}
