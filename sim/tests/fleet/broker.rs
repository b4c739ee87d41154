//! A stock rumqttd broker with MQTT 5 and 3.1.1 listeners on loopback, for the fleet to talk
//! through.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

pub struct Broker {
    pub v5: SocketAddr,
    pub v311: SocketAddr,
}

/// A loopback port the OS considers free. rumqttd binds its listeners itself and cannot report
/// the port it got, so the port is reserved here, released, and handed to it.
fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

fn listener(name: &str, addr: SocketAddr) -> serde_json::Value {
    serde_json::json!({
        "1": {
            "name": name,
            "listen": addr.to_string(),
            "next_connection_delay_ms": 0,
            "connections": {
                "connection_timeout_ms": 60000,
                "max_payload_size": 1048576,
                "max_inflight_count": 200,
                "dynamic_filters": true
            }
        }
    })
}

/// Starts rumqttd on a background thread (it runs until the test process exits) and waits
/// until both listeners accept connections.
pub fn start() -> Broker {
    let (v5, v311) = (free_port(), free_port());
    let config = serde_json::json!({
        "id": 0,
        "router": {
            "max_connections": 10010,
            "max_outgoing_packet_count": 200,
            "max_segment_size": 104857600,
            "max_segment_count": 10
        },
        "v4": listener("v4", v311),
        "v5": listener("v5", v5),
    });
    let config: rumqttd::Config = serde_json::from_value(config).expect("rumqttd config");
    std::thread::spawn(move || {
        let mut broker = rumqttd::Broker::new(config);
        if let Err(e) = broker.start() {
            eprintln!("rumqttd stopped: {e}");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    for addr in [v5, v311] {
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "rumqttd did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Broker { v5, v311 }
}
