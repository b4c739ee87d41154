//! Notify → Kafka-acknowledged latency and sustained throughput, against librdkafka's
//! in-process mock cluster. Not a test: run with `cargo bench -p uspwatch-pipeline --bench
//! notify_kafka` and read the figures it prints.
//!
//! Latency is measured from handing a Notify Record to the pipeline to the NotifyResp it
//! publishes — which happens only after Kafka's delivery report — at a paced 10,000
//! Notify/s. Throughput is the rate at which an unpaced burst is acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::mocking::MockCluster;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uspwatch_pipeline::{InboundRecord, KafkaConfig, Mtp, Pipeline, PipelineConfig};
use uspwatch_proto::{Limits, Message, builder, wrap};

const CONTROLLER: &str = "self::uspwatch";
const AGENTS: usize = 1000;

struct Acks {
    tx: mpsc::UnboundedSender<(Instant, Bytes)>,
}

#[async_trait::async_trait]
impl Mtp for Acks {
    async fn publish(
        &self,
        _topic: &str,
        payload: Bytes,
        _response_topic: Option<&str>,
        _content_type: Option<&str>,
    ) -> uspwatch_pipeline::Result<()> {
        self.tx
            .send((Instant::now(), payload))
            .map_err(|_| uspwatch_pipeline::Error::Closed)
    }
}

fn notify(i: usize) -> InboundRecord {
    let agent = format!("os::00256D-bench{}", i % AGENTS);
    let m = builder::value_change(
        &i.to_string(),
        "sub",
        true,
        "Device.WiFi.Radio.1.Stats.Noise",
        "-70",
    );
    InboundRecord {
        topic: format!("usp/controller/{CONTROLLER}"),
        payload: Bytes::from(wrap(&m, &agent, CONTROLLER).encode_to_vec()),
        response_topic: Some(format!("usp/agent/{agent}")),
        content_type: Some("usp.msg".into()),
    }
}

fn acked_index(payload: &[u8]) -> Option<usize> {
    let d = uspwatch_proto::validate(payload, &Limits::default()).ok()?;
    d.msg()?.header.as_ref()?.msg_id.parse().ok()
}

struct Run {
    pipeline: Pipeline,
    to_pipeline: mpsc::Sender<InboundRecord>,
    acks: mpsc::UnboundedReceiver<(Instant, Bytes)>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start(bootstrap: &str) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = PipelineConfig::default();
    cfg.log.dir = dir.path().to_path_buf();
    let mut kafka = KafkaConfig {
        brokers: bootstrap.to_string(),
        ..KafkaConfig::default()
    };
    // Producer tuning to compare, e.g. BENCH_KAFKA_PROPS="linger.ms=5,batch.num.messages=2000".
    if let Ok(props) = std::env::var("BENCH_KAFKA_PROPS") {
        for kv in props.split(',').filter(|s| !s.is_empty()) {
            if let Some((k, v)) = kv.split_once('=') {
                kafka
                    .properties
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    cfg.kafka = Some(kafka);
    let (tx, acks) = mpsc::unbounded_channel();
    let (to_pipeline, inbound) = mpsc::channel(4096);
    let shutdown = CancellationToken::new();
    let pipeline = Pipeline::start(cfg, Arc::new(Acks { tx }), inbound, shutdown.clone())
        .await
        .expect("pipeline");
    Run {
        pipeline,
        to_pipeline,
        acks,
        shutdown,
        _dir: dir,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sends `n` Notifies at `rate` per second, returns each one's acknowledgement latency.
async fn paced(run: &mut Run, first: usize, n: usize, rate: usize) -> Vec<Duration> {
    let per_ms = rate / 1000;
    let mut sent_at = vec![None; n];
    let records: Vec<_> = (first..first + n).map(notify).collect();
    let tx = run.to_pipeline.clone();
    let (times_tx, mut times_rx) = mpsc::unbounded_channel();
    let feeder = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut it = records.into_iter().enumerate();
        'outer: loop {
            tick.tick().await;
            for _ in 0..per_ms {
                let Some((i, r)) = it.next() else {
                    break 'outer;
                };
                let _ = times_tx.send((i, Instant::now()));
                if tx.send(r).await.is_err() {
                    break 'outer;
                }
            }
        }
    });
    let mut lat: Vec<Option<Duration>> = vec![None; n];
    let mut done = 0;
    let mut early = Vec::new();
    while done < n {
        tokio::select! {
            Some((i, t)) = times_rx.recv() => sent_at[i] = Some(t),
            Some((t, p)) = run.acks.recv() => early.push((t, p)),
        }
        // An acknowledgement can be seen before its send time is: keep it until it is.
        early.retain(
            |(t, p)| match acked_index(p).and_then(|i| i.checked_sub(first)) {
                Some(i) if i < n => match sent_at[i] {
                    Some(s) => {
                        if lat[i].replace(t.duration_since(s)).is_none() {
                            done += 1;
                        }
                        false
                    }
                    None => true,
                },
                _ => false,
            },
        );
    }
    feeder.await.expect("feeder");
    lat.into_iter().flatten().collect()
}

/// Sends `n` Notifies as fast as the pipeline takes them; returns acknowledged Notifies/s.
async fn burst(run: &mut Run, first: usize, n: usize) -> f64 {
    let records: Vec<_> = (first..first + n).map(notify).collect();
    let tx = run.to_pipeline.clone();
    let start = Instant::now();
    let feeder = tokio::spawn(async move {
        for r in records {
            if tx.send(r).await.is_err() {
                break;
            }
        }
    });
    let mut acked = 0;
    while acked < n {
        if run.acks.recv().await.is_none() {
            break;
        }
        acked += 1;
    }
    feeder.await.expect("feeder");
    acked as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("usp.events.v1", 4, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    rt.block_on(async {
        let mut run = start(&bootstrap).await;
        // Warm-up: producer id, metadata, connections.
        let _ = burst(&mut run, 0, 5_000).await;

        let lat = paced(&mut run, 10_000_000, 100_000, 10_000).await;
        // Per-second p99 (in send order): shows whether the tail is steady or a few stalls.
        let windows: Vec<String> = lat
            .chunks(10_000)
            .map(|w| {
                let mut w = w.to_vec();
                w.sort();
                format!("{:.1}", pct(&w, 0.99).as_secs_f64() * 1e3)
            })
            .collect();
        let mut lat = lat;
        lat.sort();
        println!("p99 per second (ms): {}", windows.join(" "));
        println!(
            "notify->kafka-ack latency at 10000/s over {} notifies: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            lat.len(),
            pct(&lat, 0.50).as_secs_f64() * 1e3,
            pct(&lat, 0.99).as_secs_f64() * 1e3,
            pct(&lat, 0.999).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );

        let rate = burst(&mut run, 20_000_000, 300_000).await;
        let s = run.pipeline.stats();
        println!(
            "sustained throughput: {rate:.0} notifies/s acknowledged (300000 notifies; spool depth {}, kafka up {:?})",
            s.spool_depth, s.kafka_up
        );
        run.shutdown.cancel();
        run.pipeline.join().await;
    });
}
