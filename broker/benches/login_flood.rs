//! Password logins under a wrong-password flood: the rate of real logins (rumqttc clients with
//! the right password, from 127.0.0.1) without a flood, then while `FLOOD` concurrent
//! attackers, each from its own 127.0.1.x address, send wrong-password CONNECTs as fast as the
//! broker answers them. Both rates come from the same run; the ratio is what matters.
//!
//! `cargo bench -p uspwatch-broker --bench login_flood` (release). Environment: `FLOOD`
//! (default 100 attackers), `LEGIT` (default 4 concurrent real clients), `SECS` per phase
//! (default 20), `MODE` (`victim`: every attacker guesses one valid username's password;
//! `spray`: every attempt uses a fresh username, so only the per-source limits and the
//! shared check slots stand between the flood and real logins).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttd::protocol::{Connect, Login, Packet, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use uspwatch_broker::{Broker, BrokerConfig, ListenerKind};

const USERS: usize = 64;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Real clients log in and out in a loop for `secs`; returns successful logins per second.
async fn legit(addr: SocketAddr, clients: usize, secs: u64, round: usize) -> (f64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (ok, failed) = (ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < end {
                n += 1;
                let user = (c * 7919 + n) % USERS;
                let mut o = rumqttc::MqttOptions::new(
                    format!("legit-{round}-{c}-{n}"),
                    addr.ip().to_string(),
                    addr.port(),
                );
                o.set_credentials(format!("dev-{user}"), format!("pw-{user}"));
                o.set_keep_alive(Duration::from_secs(30));
                let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
                let r = tokio::time::timeout(Duration::from_secs(30), async {
                    loop {
                        match el.poll().await {
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                                return a.code == rumqttc::ConnectReturnCode::Success;
                            }
                            Ok(_) => {}
                            Err(_) => return false,
                        }
                    }
                })
                .await;
                if r == Ok(true) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                let _ = client.disconnect().await;
                let _ = tokio::time::timeout(Duration::from_millis(200), el.poll()).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    (
        ok.load(Ordering::Relaxed) as f64 / secs,
        failed.load(Ordering::Relaxed),
    )
}

/// One attacker: wrong-password CONNECTs from its own source address, back to back.
async fn attacker(addr: SocketAddr, source: IpAddr, spray: bool, stop: Arc<AtomicBool>) -> u64 {
    let mut sent = 0u64;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let username = if spray {
            format!("guess-{source}-{n}")
        } else {
            "dev-0".to_string()
        };
        let connect = Packet::Connect(
            Connect {
                keep_alive: 30,
                client_id: format!("atk-{source}-{n}"),
                clean_session: true,
            },
            None,
            None,
            None,
            Some(Login {
                username,
                password: format!("wrong-{n}"),
            }),
        );
        let mut buf = BytesMut::new();
        if rumqttd::protocol::v4::V4.write(connect, &mut buf).is_err() {
            return sent;
        }
        let Ok(sock) = tokio::net::TcpSocket::new_v4() else {
            return sent;
        };
        if sock.bind(SocketAddr::new(source, 0)).is_err() {
            return sent;
        }
        let Ok(mut s) = sock.connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if s.write_all(&buf).await.is_ok() {
            let mut ack = [0u8; 4];
            let _ = tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut ack)).await;
            sent += 1;
        }
    }
    sent
}

fn main() {
    let flood = env("FLOOD", 100);
    let clients = env("LEGIT", 4);
    let secs = env("SECS", 20) as u64;
    let spray = std::env::var("MODE").is_ok_and(|m| m == "spray");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let creds = dir.path().join("credentials.toml");
        let mut text = String::new();
        for u in 0..USERS {
            let hash = uspwatch_broker::hash_password(&format!("pw-{u}")).expect("hash");
            text.push_str(&format!(
                "[[client]]\nusername = \"dev-{u}\"\npassword_hash = \"{hash}\"\nendpoint_id = \"os::00256D-L{u}\"\nrole = \"agent\"\n"
            ));
        }
        std::fs::write(&creds, text).expect("credentials file");
        let mut c = BrokerConfig::default();
        c.listeners.v5 = None;
        c.listeners.v311 = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.credentials_file = Some(creds);
        c.max_connections = flood + clients + 100;
        let shutdown = CancellationToken::new();
        let broker = Broker::start(c, shutdown.clone()).await.expect("broker");
        let addr = broker
            .local_addrs()
            .into_iter()
            .find(|(k, _)| *k == ListenerKind::V4)
            .map(|(_, a)| a)
            .expect("listener");

        let (quiet, quiet_failed) = legit(addr, clients, secs, 0).await;
        let before = broker.stats();
        let stop = Arc::new(AtomicBool::new(false));
        let attackers: Vec<_> = (0..flood)
            .map(|i| {
                let source = IpAddr::V4(Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8));
                tokio::spawn(attacker(addr, source, spray, stop.clone()))
            })
            .collect();
        let (flooded, flooded_failed) = legit(addr, clients, secs, 1).await;
        stop.store(true, Ordering::Relaxed);
        let mut attempts = 0;
        for a in attackers {
            attempts += a.await.unwrap_or(0);
        }
        let after = broker.stats();
        println!(
            "login_flood mode={} flood={flood} legit_clients={clients} secs_per_phase={secs}",
            if spray { "spray" } else { "victim" }
        );
        println!("legit logins/s without flood: {quiet:.1} (failed {quiet_failed})");
        println!("legit logins/s during flood:  {flooded:.1} (failed {flooded_failed})");
        println!("ratio: {:.2}", flooded / quiet.max(1e-9));
        println!(
            "attacker CONNECTs answered: {attempts} ({:.0}/s); password checks run during the flood: {}",
            attempts as f64 / secs as f64,
            after.login_checks - before.login_checks
        );
        shutdown.cancel();
    });
}
