//! Properties: no input makes the parser panic, and whatever the writer produces parses back to
//! the same envelope.

use proptest::prelude::*;
use uspwatch_cwmp::{
    Body, DeviceId, Envelope, EventStruct, Fault, Header, IdScheme, Inform, Limits, ParameterValue,
    Version, endpoint_id, parse, write,
};

fn text(max: usize) -> impl Strategy<Value = String> {
    // Printable text with the characters XML must escape; surrounding blanks are not part of
    // trimmed fields.
    proptest::string::string_regex(&format!("[a-zA-Z0-9 .&<>\"'é_:/-]{{0,{max}}}"))
        .expect("regex")
        .prop_map(|s| s.trim().to_string())
}

fn param() -> impl Strategy<Value = ParameterValue> {
    (
        text(40),
        text(40),
        prop_oneof![Just("xsd:string"), Just("xsd:int")],
    )
        .prop_map(|(name, value, t)| ParameterValue {
            name,
            value,
            xsi_type: t.to_string(),
        })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (
            text(20),
            "[0-9A-F]{6}",
            text(20),
            text(20),
            proptest::collection::vec((text(20), text(20)), 0..5),
            any::<u32>(),
            proptest::collection::vec(param(), 0..5),
        )
            .prop_map(
                |(m, oui, pc, sn, ev, retry, parameters)| Body::Inform(Inform {
                    device_id: DeviceId {
                        manufacturer: m,
                        oui,
                        product_class: pc,
                        serial_number: sn,
                    },
                    events: ev
                        .into_iter()
                        .map(|(code, command_key)| EventStruct { code, command_key })
                        .collect(),
                    max_envelopes: 1,
                    current_time: "2025-01-15T10:00:00Z".into(),
                    retry_count: retry,
                    parameters,
                })
            ),
        proptest::collection::vec(text(30), 0..5)
            .prop_map(|names| Body::GetParameterValues { names }),
        proptest::collection::vec(param(), 0..5)
            .prop_map(|parameters| Body::GetParameterValuesResponse { parameters }),
        (proptest::collection::vec(param(), 0..5), text(30)).prop_map(
            |(parameters, parameter_key)| {
                Body::SetParameterValues {
                    parameters,
                    parameter_key,
                }
            }
        ),
        any::<u32>().prop_map(|status| Body::SetParameterValuesResponse { status }),
        text(30).prop_map(|command_key| Body::Reboot { command_key }),
        Just(Body::RebootResponse),
        Just(Body::Empty),
        (8000u32..9900, text(40)).prop_map(|(code, s)| {
            let mut f = Fault::new(code);
            f.string = s;
            Body::Fault(f)
        }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&bytes, &Limits::default());
    }

    #[test]
    fn mutated_envelopes_never_panic(b in body(), cut in any::<usize>(), flip in any::<u8>()) {
        let env = Envelope { version: Version::V1_2, header: Header::default(), body: b };
        let mut bytes = write(&env).into_bytes();
        if !bytes.is_empty() {
            let i = cut % bytes.len();
            bytes[i] ^= flip;
            let _ = parse(&bytes, &Limits::default());
            bytes.truncate(i);
            let _ = parse(&bytes, &Limits::default());
        }
    }

    #[test]
    fn written_envelopes_parse_back(
        b in body(),
        v in proptest::sample::select(Version::ALL.to_vec()),
        id in proptest::option::of(text(20)),
        hold in proptest::option::of(any::<bool>()),
    ) {
        let env = Envelope {
            version: v,
            header: Header { id, hold_requests: hold, ..Header::default() },
            body: b,
        };
        let out = write(&env);
        let back = parse(out.as_bytes(), &Limits::default());
        prop_assert_eq!(back, Ok(Some(env)), "{}", out);
    }

    #[test]
    fn derived_ids_are_valid_endpoint_ids(
        pc in "\\PC{1,64}",
        sn in "\\PC{1,64}",
        ops in any::<bool>(),
    ) {
        let d = DeviceId { manufacturer: String::new(), oui: "00256D".into(), product_class: pc, serial_number: sn };
        let scheme = if ops { IdScheme::Ops } else { IdScheme::Os };
        let id = endpoint_id(&d, scheme).expect("derivable");
        prop_assert!(uspwatch_proto::validate_endpoint_id(&id).is_ok(), "{}", id);
        prop_assert_eq!(id, endpoint_id(&d, scheme).expect("derivable"));
    }
}
