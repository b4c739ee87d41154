//! Starts a whole gateway in the test process: broker on loopback port 0, embedded log in a
//! temporary directory, HTTP on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uspwatch::{AppConfig, Gateway};
use uspwatch_broker::ListenerKind;

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct TestGateway {
    pub gw: Arc<Gateway>,
    pub http: SocketAddr,
    pub shutdown: CancellationToken,
    _data: tempfile::TempDir,
}

impl TestGateway {
    pub async fn start(tokens: &[&str]) -> TestGateway {
        Self::start_with(tokens, None).await
    }

    /// Like `start`, with events going to Kafka at `kafka` (a mock cluster's bootstrap).
    pub async fn start_with(tokens: &[&str], kafka: Option<String>) -> TestGateway {
        let data = tempfile::tempdir().expect("tempdir");
        let mut cfg = AppConfig::default();
        cfg.broker.listeners.v5 = Some("127.0.0.1:0".parse().expect("addr"));
        cfg.broker.listeners.v311 = Some("127.0.0.1:0".parse().expect("addr"));
        cfg.broker.allow_anonymous = true;
        cfg.pipeline.log.dir = data.path().join("events");
        cfg.http.listen = "127.0.0.1:0".parse().expect("addr");
        cfg.http.tokens = tokens.iter().map(|t| t.to_string()).collect();
        cfg.http.command_timeout = Duration::from_secs(10);
        cfg.pipeline.kafka = kafka.map(|brokers| uspwatch_pipeline::KafkaConfig {
            brokers,
            ..Default::default()
        });
        Self::start_config(cfg, data).await
    }

    /// Starts a gateway with `cfg` as given; `data` (holding its directories) lives as long as
    /// the gateway.
    pub async fn start_config(cfg: AppConfig, data: tempfile::TempDir) -> TestGateway {
        // Installed first, as `uspwatch run` does, so start-up metrics are recorded.
        let metrics = uspwatch::telemetry::metrics();
        let shutdown = CancellationToken::new();
        let gw = Arc::new(
            Gateway::start(cfg, shutdown.clone())
                .await
                .expect("gateway"),
        );
        let http = uspwatch::http::serve(gw.clone(), metrics, shutdown.clone())
            .await
            .expect("http");
        TestGateway {
            gw,
            http,
            shutdown,
            _data: data,
        }
    }

    pub fn mqtt(&self, kind: ListenerKind) -> String {
        self.gw
            .broker
            .local_addrs()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| a.to_string())
            .expect("listener")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// A small simulated fleet connected to this gateway.
    pub async fn fleet(&self, agents: usize, faults: &str) -> uspwatch_sim::Fleet {
        let fleet = uspwatch_sim::Fleet::start(
            uspwatch_sim::FleetConfig {
                broker: self.mqtt(ListenerKind::V5),
                broker_v311: Some(self.mqtt(ListenerKind::V4)),
                agents,
                mqtt: uspwatch_sim::MqttMode::Mixed,
                controller_eid: self.gw.config.pipeline.controller.endpoint_id.clone(),
                periodic_interval: Duration::from_secs(1),
                sample_interval: Duration::from_millis(500),
                faults: uspwatch_sim::FaultSpec::parse_list(faults).expect("faults"),
                ..Default::default()
            },
            self.shutdown.clone(),
        )
        .await
        .expect("fleet");
        fleet
            .wait_all_connected(Duration::from_secs(30))
            .await
            .expect("fleet connects");
        fleet
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
