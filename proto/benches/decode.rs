//! Throughput of the broker's and controller's per-Record work: decode + validate a typical
//! ValueChange Notify, then turn it into an Event and its JSON.
//!
//! Run: `cargo bench -p uspwatch-proto --bench decode -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uspwatch_proto::pb::usp::Msg;
use uspwatch_proto::pb::usp_record::{Record, record::RecordType};
use uspwatch_proto::{Event, Limits, Message, builder, validate, validate_bytes, wrap};

/// A ValueChange as a mesh node sends it: realistic Endpoint IDs, a deep TR-181 path and the
/// timestamped msg_id style of OB-USP-Agent.
fn value_change_record() -> Vec<u8> {
    let msg = builder::value_change(
        "Event-2026-11-25T07:29:30Z-123",
        "uspwatch-sub-wifi-radio-stats-noise-0001",
        true,
        "Device.WiFi.DataElements.Network.Device.1.Radio.2.BSS.3.STA.12.WiFi6Capabilities.SignalStrength",
        "-67",
    );
    wrap(
        &msg,
        "os::00D09E-HG8245W5-6T00000123456789",
        "self::uspwatch-noc-controller-eu-west-1",
    )
    .encode_to_vec()
}

fn bench(c: &mut Criterion) {
    let bytes = value_change_record();
    println!("ValueChange record: {} bytes", bytes.len());
    let limits = Limits::default();

    let mut g = c.benchmark_group("value_change");
    g.throughput(Throughput::Elements(1));
    // The floor: protobuf decoding of the Record and its Msg with no checks at all.
    g.bench_function("prost_decode_only", |b| {
        b.iter(|| {
            let r = Record::decode(black_box(bytes.as_slice())).ok()?;
            let Some(RecordType::NoSessionContext(n)) = &r.record_type else {
                return None;
            };
            Msg::decode(n.payload.as_ref()).ok()
        })
    });
    g.bench_function("decode_validate", |b| {
        b.iter(|| validate(black_box(&bytes), &limits).map(|d| d.payload))
    });
    // What the broker does with a PUBLISH payload it already holds as `Bytes`.
    let shared = bytes::Bytes::from(bytes.clone());
    g.bench_function("decode_validate_bytes", |b| {
        b.iter(|| validate_bytes(black_box(&shared), &limits).map(|d| d.payload))
    });
    g.bench_function("decode_validate_event", |b| {
        b.iter(|| {
            let d = validate(black_box(&bytes), &limits).ok()?;
            Event::from_notify(&d.record, d.msg()?, 1_764_055_770_123)
        })
    });
    g.bench_function("decode_validate_event_json", |b| {
        b.iter(|| {
            let d = validate(black_box(&bytes), &limits).ok()?;
            let e = Event::from_notify(&d.record, d.msg()?, 1_764_055_770_123)?;
            serde_json::to_vec(&e).ok()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
