//! Inform parse + Event conversion throughput, against writing the InformResponse as the
//! baseline measured in the same run.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use uspwatch_cwmp::{
    Body, Envelope, Header, IdScheme, Limits, Version, endpoint_id, inform_events, parse, write,
};

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/inform_boot_reboot.xml"
    ))
    .expect("fixture")
}

/// A periodic Inform with `n` extra value parameters, as a busy CPE sends.
fn large(n: usize) -> Vec<u8> {
    let base = String::from_utf8(fixture()).expect("utf-8");
    let mut extra = String::new();
    for i in 0..n {
        extra.push_str(&format!(
            "<ParameterValueStruct><Name>Device.WiFi.Radio.{i}.Stats.Noise</Name><Value xsi:type=\"xsd:int\">-{}</Value></ParameterValueStruct>",
            60 + i % 30
        ));
    }
    base.replace("</ParameterList>", &format!("{extra}</ParameterList>"))
        .into_bytes()
}

fn session(bytes: &[u8], limits: &Limits) -> usize {
    let env = parse(bytes, limits).ok().flatten().expect("an Inform");
    let Body::Inform(i) = &env.body else {
        panic!("not an Inform")
    };
    let eid = endpoint_id(&i.device_id, IdScheme::Os).expect("id");
    let events = inform_events(i, &eid, "self::uspwatch", 0);
    let reply = write(&Envelope {
        version: env.version,
        header: Header {
            id: env.header.id.clone(),
            ..Header::default()
        },
        body: Body::InformResponse { max_envelopes: 1 },
    });
    events.len() + reply.len()
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("cwmp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_write_inform_response", |b| {
        b.iter(|| {
            black_box(write(&Envelope {
                version: Version::V1_2,
                header: Header {
                    id: Some("cpe-1".into()),
                    ..Header::default()
                },
                body: Body::InformResponse { max_envelopes: 1 },
            }))
        })
    });
    for (name, bytes) in [
        ("inform_7_params", fixture()),
        ("inform_57_params", large(50)),
    ] {
        g.bench_function(format!("parse_{name}"), |b| {
            b.iter(|| black_box(parse(black_box(&bytes), &limits)))
        });
        g.bench_function(format!("parse_convert_reply_{name}"), |b| {
            b.iter(|| black_box(session(black_box(&bytes), &limits)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
