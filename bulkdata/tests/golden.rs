//! Hand-written reports shaped like the TR-369 Annex A / TR-181 examples (and the `Data` of a
//! `Push!` captured from the BBF reference agent), decoded to the expected readings; and
//! malformed reports refused whole.

use uspwatch_bulkdata::{CsvOptions, Error, Format, Hints, Limits, Reading, decode};

/// (name, value, number, collection time ms, report index), sorted by report then name.
type Row = (String, String, Option<f64>, Option<i64>, usize);

fn rows(body: &str, hints: &Hints) -> Vec<Row> {
    let mut out: Vec<Row> = decode(body.as_bytes(), hints, &Limits::default())
        .unwrap_or_else(|e| panic!("{e}\n{body}"))
        .into_iter()
        .map(|r: Reading| (r.name, r.value, r.number, r.collection_time_ms, r.report))
        .collect();
    out.sort_by(|a, b| (a.4, &a.0).cmp(&(b.4, &b.0)));
    out
}

fn row(name: &str, value: &str, number: Option<f64>, at: Option<i64>, report: usize) -> Row {
    (name.into(), value.into(), number, at, report)
}

const T0: i64 = 1_736_935_200_000; // 2025-01-15T10:00:00Z
const T1: i64 = 1_736_935_500_000; // five minutes later

fn auto() -> Hints {
    Hints::default()
}

fn format(f: Format) -> Hints {
    Hints {
        format: Some(f),
        ..Hints::default()
    }
}

#[test]
fn json_name_value_pair_iso_8601() {
    let body = r#"{"Report":[{"CollectionTime":"2025-01-15T10:00:00Z",
  "Device.DeviceInfo.UpTime":86400,
  "Device.WiFi.SSID.1.Enable":true,
  "Device.WiFi.SSID.1.SSID":"lab-net"}]}"#;
    let want = vec![
        row(
            "Device.DeviceInfo.UpTime",
            "86400",
            Some(86400.0),
            Some(T0),
            0,
        ),
        row("Device.WiFi.SSID.1.Enable", "true", None, Some(T0), 0),
        row("Device.WiFi.SSID.1.SSID", "lab-net", None, Some(T0), 0),
    ];
    assert_eq!(rows(body, &auto()), want);
    assert_eq!(rows(body, &format(Format::NameValuePair)), want);
}

#[test]
fn json_retained_reports_epoch_seconds_and_alt_names() {
    let body = r#"{"Report":[
  {"CollectionTime":1736935200,"Up":86100},
  {"CollectionTime":1736935500,"Up":86400}]}"#;
    assert_eq!(
        rows(body, &auto()),
        vec![
            row("Up", "86100", Some(86100.0), Some(T0), 0),
            row("Up", "86400", Some(86400.0), Some(T1), 1),
        ]
    );
}

#[test]
fn json_epoch_milliseconds_as_tr181_defines_them() {
    let body =
        r#"{"Report":[{"CollectionTime":1736935200123,"Device.WiFi.Radio.1.Stats.Noise":-61}]}"#;
    assert_eq!(
        rows(body, &auto()),
        vec![row(
            "Device.WiFi.Radio.1.Stats.Noise",
            "-61",
            Some(-61.0),
            Some(T0 + 123),
            0
        )]
    );
}

#[test]
fn json_object_hierarchy_without_timestamp() {
    let body = r#"{"Report":[{"Device":{"DeviceInfo":{"UpTime":86400},
  "WiFi":{"SSID":{"1":{"Enable":true},"2":{"Enable":false}}}}}]}"#;
    let want = vec![
        row("Device.DeviceInfo.UpTime", "86400", Some(86400.0), None, 0),
        row("Device.WiFi.SSID.1.Enable", "true", None, None, 0),
        row("Device.WiFi.SSID.2.Enable", "false", None, None, 0),
    ];
    assert_eq!(rows(body, &auto()), want);
    assert_eq!(rows(body, &format(Format::ObjectHierarchy)), want);
    // The same body claimed to be NameValuePair is refused, not half read.
    assert!(matches!(
        decode(
            body.as_bytes(),
            &format(Format::NameValuePair),
            &Limits::default()
        ),
        Err(Error::Shape(_))
    ));
}

#[test]
fn json_object_hierarchy_with_collection_time_beside_device() {
    let body = r#"{"Report":[{"CollectionTime":1736935200,"Device":{"WiFi":{"Radio":{"1":{"Stats":{"Noise":-58}}}}}}]}"#;
    assert_eq!(
        rows(body, &auto()),
        vec![row(
            "Device.WiFi.Radio.1.Stats.Noise",
            "-58",
            Some(-58.0),
            Some(T0),
            0
        )]
    );
}

#[test]
fn reference_agent_push_data() {
    // The `Data` argument of a Push! captured from OB-USP-Agent 11.0.4 (pretty-printed,
    // CollectionTime in seconds, values as JSON numbers).
    let body = "{\n \"Report\": [\n  {\n   \"CollectionTime\": 1795627109,\n   \"Device.DeviceInfo.UpTime\": 6338,\n   \"Device.LocalAgent.Controller.1.PeriodicNotifInterval\": 86400\n  }\n ]\n}\n";
    let at = Some(1_795_627_109_000);
    assert_eq!(
        rows(body, &auto()),
        vec![
            row("Device.DeviceInfo.UpTime", "6338", Some(6338.0), at, 0),
            row(
                "Device.LocalAgent.Controller.1.PeriodicNotifInterval",
                "86400",
                Some(86400.0),
                at,
                0
            ),
        ]
    );
}

#[test]
fn csv_parameter_per_row() {
    let body = "ReportTimestamp,ParameterName,ParameterValue,ParameterType\r\n\
1736935200,Device.DeviceInfo.UpTime,86400,unsignedInt\r\n\
1736935200,Device.DeviceInfo.Description,\"Gateway, lab 2\",string\r\n";
    let want = vec![
        row(
            "Device.DeviceInfo.Description",
            "Gateway, lab 2",
            None,
            Some(T0),
            0,
        ),
        row(
            "Device.DeviceInfo.UpTime",
            "86400",
            Some(86400.0),
            Some(T0),
            0,
        ),
    ];
    assert_eq!(rows(body, &auto()), want);
    assert_eq!(rows(body, &format(Format::ParameterPerRow)), want);
}

#[test]
fn csv_parameter_per_row_without_timestamp_and_retained_rows() {
    let body = "ParameterName,ParameterValue,ParameterType\n\
Device.WiFi.Radio.1.Stats.Noise,-71,int\n";
    assert_eq!(
        rows(body, &auto()),
        vec![row(
            "Device.WiFi.Radio.1.Stats.Noise",
            "-71",
            Some(-71.0),
            None,
            0
        )]
    );
    let retained = "ReportTimestamp,ParameterName,ParameterValue,ParameterType\r\n\
2025-01-15T10:00:00Z,Up,86100,unsignedInt\r\n\
2025-01-15T10:05:00Z,Up,86400,unsignedInt\r\n";
    assert_eq!(
        rows(retained, &auto()),
        vec![
            row("Up", "86100", Some(86100.0), Some(T0), 0),
            row("Up", "86400", Some(86400.0), Some(T1), 1),
        ]
    );
}

#[test]
fn csv_parameter_per_column_with_retained_report() {
    let body = "ReportTimestamp,Up,MemFree\r\n1736935200,86100,51234\r\n1736935500,86400,51010\r\n";
    let want = vec![
        row("MemFree", "51234", Some(51234.0), Some(T0), 0),
        row("Up", "86100", Some(86100.0), Some(T0), 0),
        row("MemFree", "51010", Some(51010.0), Some(T1), 1),
        row("Up", "86400", Some(86400.0), Some(T1), 1),
    ];
    assert_eq!(rows(body, &auto()), want);
    assert_eq!(rows(body, &format(Format::ParameterPerColumn)), want);
}

#[test]
fn csv_parameter_per_column_without_timestamp_and_custom_separators() {
    let hints = Hints {
        csv: CsvOptions {
            field_separator: ';',
            escape: '\'',
        },
        ..Hints::default()
    };
    let body = "Device.WiFi.Radio.1.Stats.Noise;Device.DeviceInfo.Description\n-66;'a;b'\n";
    assert_eq!(
        rows(body, &hints),
        vec![
            row("Device.DeviceInfo.Description", "a;b", None, None, 0),
            row(
                "Device.WiFi.Radio.1.Stats.Noise",
                "-66",
                Some(-66.0),
                None,
                0
            ),
        ]
    );
}

#[test]
fn http_headers_select_the_decoder() {
    let h = Hints::from_headers(
        Some("text/csv; charset=UTF-8; header=present"),
        Some("\"ParameterPerRow\""),
    )
    .unwrap();
    let body = "ParameterName,ParameterValue,ParameterType\nDevice.X,1,int\n";
    assert_eq!(rows(body, &h).len(), 1);
    // A JSON body sent as CSV is refused.
    let json = r#"{"Report":[{"Device.X":1}]}"#;
    assert!(decode(json.as_bytes(), &h, &Limits::default()).is_err());
    let h = Hints::from_headers(
        Some("application/json; charset=UTF-8"),
        Some("NameValuePair"),
    )
    .unwrap();
    assert!(matches!(
        decode(body.as_bytes(), &h, &Limits::default()),
        Err(Error::HintMismatch { .. })
    ));
}

/// Recognises the error a malformed report must give.
type Check = fn(&Error) -> bool;

/// Each malformed report is refused with the expected error, whatever valid parts it has.
#[test]
fn malformed_reports_are_refused_whole() {
    let cases: &[(&str, Check)] = &[
        ("", |e| matches!(e, Error::Empty)),
        ("  \r\n ", |e| matches!(e, Error::Empty)),
        ("{\"Report\":[{\"Device.X\":1}]", |e| {
            matches!(e, Error::Json(_))
        }),
        ("{\"Report\":{}}", |e| matches!(e, Error::Shape(_))),
        ("{\"Reports\":[]}", |e| matches!(e, Error::Shape(_))),
        ("{\"Report\":[],\"Extra\":1}", |e| {
            matches!(e, Error::Shape(_))
        }),
        ("{\"Report\":[1]}", |e| matches!(e, Error::Shape(_))),
        ("{\"Report\":[{\"Device.X\":1},{\"Device.Y\":null}]}", |e| {
            matches!(e, Error::Shape(_))
        }),
        ("{\"Report\":[{\"Device.X\":[1,2]}]}", |e| {
            matches!(e, Error::Shape(_))
        }),
        ("{\"Report\":[{\"\":1}]}", |e| matches!(e, Error::Shape(_))),
        ("{\"Report\":[{\"Device.X\\n\":1}]}", |e| {
            matches!(e, Error::InvalidName(_))
        }),
        (
            "{\"Report\":[{\"CollectionTime\":\"soon\",\"Device.X\":1}]}",
            |e| matches!(e, Error::Timestamp(_)),
        ),
        (
            "{\"Report\":[{\"CollectionTime\":true,\"Device.X\":1}]}",
            |e| matches!(e, Error::Timestamp(_)),
        ),
        (
            "ParameterName,ParameterValue\nDevice.X,1\nDevice.Y\n",
            |e| matches!(e, Error::Csv { line: 3, .. }),
        ),
        (
            "ParameterName,ParameterValue,Colour\nDevice.X,1,red\n",
            |e| matches!(e, Error::Csv { line: 1, .. }),
        ),
        (
            "ReportTimestamp,ParameterName,ParameterValue\nlater,Device.X,1\n",
            |e| matches!(e, Error::Timestamp(_)),
        ),
        ("ReportTimestamp,Up\n1736935200,\"86100\n", |e| {
            matches!(e, Error::Csv { .. })
        }),
        ("Up,Down\n1,2,3\n", |e| {
            matches!(e, Error::Csv { line: 2, .. })
        }),
        ("Up,\n1,2\n", |e| matches!(e, Error::InvalidName(_))),
    ];
    for (body, expected) in cases {
        match decode(body.as_bytes(), &Hints::default(), &Limits::default()) {
            Ok(r) => panic!("accepted {body:?}: {r:?}"),
            Err(e) => assert!(expected(&e), "{body:?} gave {e:?}"),
        }
    }
    assert_eq!(
        decode(&[0xff, 0xfe, b'{'], &Hints::default(), &Limits::default()),
        Err(Error::NotUtf8)
    );
}

#[test]
fn limits_bound_size_and_sample_count() {
    let limits = Limits {
        max_report_bytes: 64,
        max_samples: 2,
    };
    let big = format!("{{\"Report\":[{{\"Device.X\":\"{}\"}}]}}", "a".repeat(64));
    assert_eq!(
        decode(big.as_bytes(), &Hints::default(), &limits),
        Err(Error::TooLarge {
            size: big.len(),
            limit: 64
        })
    );
    let three = r#"{"Report":[{"A":1,"B":2,"C":3}]}"#;
    let e = decode(three.as_bytes(), &Hints::default(), &limits).unwrap_err();
    assert_eq!(e, Error::TooManySamples { limit: 2 });
    assert!(e.is_too_large());
    let two = r#"{"Report":[{"A":1,"B":2}]}"#;
    assert_eq!(
        decode(two.as_bytes(), &Hints::default(), &limits)
            .unwrap()
            .len(),
        2
    );
}
