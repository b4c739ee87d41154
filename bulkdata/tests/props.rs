//! Property tests: no input makes the decoder panic, and whatever it accepts respects the
//! limits; reports built from arbitrary readings decode back to them in every encoding.

use proptest::prelude::*;
use uspwatch_bulkdata::{Format, Hints, Limits, MAX_NAME_LEN, decode};

fn hints() -> impl Strategy<Value = Hints> {
    prop_oneof![
        Just(None),
        Just(Some(Format::NameValuePair)),
        Just(Some(Format::ObjectHierarchy)),
        Just(Some(Format::ParameterPerRow)),
        Just(Some(Format::ParameterPerColumn)),
    ]
    .prop_map(|format| Hints {
        format,
        ..Hints::default()
    })
}

/// Text that looks like the start of a report, so the fuzzing reaches past the first checks.
fn reportish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{\"Report\":[".to_string()),
        Just("{\"CollectionTime\":".to_string()),
        Just("\"Device.X\":".to_string()),
        Just("ParameterName,ParameterValue,ParameterType\r\n".to_string()),
        Just("ReportTimestamp,".to_string()),
        Just("\"".to_string()),
        Just(",".to_string()),
        Just("\r\n".to_string()),
        Just("}]}".to_string()),
        "[-0-9.eE]{1,12}",
        "\\PC{0,8}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn limits() -> Limits {
    Limits {
        max_report_bytes: 4096,
        max_samples: 16,
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), h in hints()) {
        if let Ok(r) = decode(&bytes, &h, &limits()) {
            prop_assert!(r.len() <= 16);
        }
    }

    #[test]
    fn reportish_text_never_panics(text in reportish(), h in hints()) {
        if let Ok(r) = decode(text.as_bytes(), &h, &limits()) {
            prop_assert!(r.len() <= 16);
            for s in r {
                prop_assert!(!s.name.is_empty() && s.name.len() <= MAX_NAME_LEN);
                prop_assert!(s.number.is_none_or(f64::is_finite));
            }
        }
    }

    #[test]
    fn readings_round_trip_through_every_encoding(
        values in prop::collection::btree_map("Device\\.[A-Z][a-z]{1,8}\\.[1-9]\\.[A-Z][a-z]{1,8}", "[ -~]{0,16}", 1..8),
        secs in 0i64..4_000_000_000,
    ) {
        let at = Some(secs * 1000);
        let mut nvp = serde_json::Map::new();
        nvp.insert("CollectionTime".into(), serde_json::json!(secs));
        let mut per_row = String::from("ReportTimestamp,ParameterName,ParameterValue,ParameterType\r\n");
        let mut header = String::from("ReportTimestamp");
        let mut line = secs.to_string();
        for (k, v) in &values {
            nvp.insert(k.clone(), serde_json::json!(v));
            let quoted = format!("\"{}\"", v.replace('"', "\"\""));
            per_row.push_str(&format!("{secs},{k},{quoted},string\r\n"));
            header.push_str(&format!(",{k}"));
            line.push_str(&format!(",{quoted}"));
        }
        let per_column = format!("{header}\r\n{line}\r\n");
        let json = serde_json::json!({"Report": [nvp]}).to_string();
        for body in [json, per_row, per_column] {
            let mut got: Vec<(String, String)> = decode(body.as_bytes(), &Hints::default(), &Limits::default())
                .map_err(|e| TestCaseError::fail(format!("{e}: {body}")))?
                .into_iter()
                .map(|r| {
                    assert_eq!(r.collection_time_ms, at);
                    (r.name, r.value)
                })
                .collect();
            got.sort();
            let want: Vec<(String, String)> = values.clone().into_iter().collect();
            prop_assert_eq!(got, want);
        }
    }
}
