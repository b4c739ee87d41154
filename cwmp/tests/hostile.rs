//! Hostile envelopes: each is refused with a typed error that names the fault code the ACS
//! answers with, and nothing is returned that a caller could store.

use uspwatch_cwmp::{Error, Limits, fault, parse};

const ENV: &str = r#"xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2""#;

fn body(rpc: &str) -> String {
    format!(r#"<soap-env:Envelope {ENV}><soap-env:Body>{rpc}</soap-env:Body></soap-env:Envelope>"#)
}

fn inform_with(device: &str, events: &str) -> String {
    body(&format!(
        "<cwmp:Inform><DeviceId>{device}</DeviceId><Event>{events}</Event><MaxEnvelopes>1</MaxEnvelopes><CurrentTime>2025-01-15T10:00:00Z</CurrentTime><RetryCount>0</RetryCount><ParameterList></ParameterList></cwmp:Inform>"
    ))
}

const DEVICE: &str = "<Manufacturer>X</Manufacturer><OUI>00256D</OUI><ProductClass>P</ProductClass><SerialNumber>1</SerialNumber>";

fn err(text: &str) -> Error {
    parse(text.as_bytes(), &Limits::default()).expect_err("refused")
}

#[test]
fn the_valid_baseline_parses() {
    assert!(parse(inform_with(DEVICE, "").as_bytes(), &Limits::default()).is_ok());
}

#[test]
fn billion_laughs_is_refused_at_the_doctype() {
    let text = format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>{}"#,
        inform_with(
            "<Manufacturer>&lol3;</Manufacturer><OUI>00256D</OUI><SerialNumber>1</SerialNumber>",
            ""
        )
    );
    let e = err(&text);
    assert_eq!(e, Error::Doctype);
    assert_eq!(e.fault_code(), fault::INVALID_ARGUMENTS);
}

#[test]
fn external_entities_are_refused() {
    let text = format!(
        r#"<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>{}"#,
        inform_with(
            "<Manufacturer>&xxe;</Manufacturer><OUI>00256D</OUI><SerialNumber>1</SerialNumber>",
            ""
        )
    );
    assert_eq!(err(&text), Error::Doctype);
}

#[test]
fn undeclared_entities_are_refused_and_predefined_ones_resolved() {
    let text = inform_with(
        "<Manufacturer>&xxe;</Manufacturer><OUI>00256D</OUI><SerialNumber>1</SerialNumber>",
        "",
    );
    assert_eq!(err(&text), Error::Entity("xxe".into()));
    let ok = inform_with(
        "<Manufacturer>&lt;&#65;&#x42;&quot;&apos;&gt;</Manufacturer><OUI>00256D</OUI><SerialNumber>1</SerialNumber>",
        "",
    );
    let env = parse(ok.as_bytes(), &Limits::default()).unwrap().unwrap();
    let uspwatch_cwmp::Body::Inform(i) = env.body else {
        panic!()
    };
    assert_eq!(i.device_id.manufacturer, "<AB\"'>");
}

#[test]
fn deep_nesting_is_refused() {
    let text = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
    let e = err(&text);
    assert_eq!(e, Error::TooDeep { limit: 16 });
    assert_eq!(e.fault_code(), fault::RESOURCES_EXCEEDED);
}

#[test]
fn huge_bodies_are_refused_before_parsing() {
    let big = "x".repeat(300 * 1024);
    let text = inform_with(&format!("<Manufacturer>{big}</Manufacturer>"), "");
    let e = err(&text);
    assert!(matches!(e, Error::TooLarge { limit: 262_144, .. }), "{e:?}");
    assert_eq!(e.fault_code(), fault::RESOURCES_EXCEEDED);
}

#[test]
fn long_text_and_many_elements_are_refused() {
    let long = "x".repeat(20 * 1024);
    let text = inform_with(&format!("<Manufacturer>{long}</Manufacturer>"), "");
    assert!(matches!(err(&text), Error::TextTooLong { .. }));
    let many = "<EventStruct/>".repeat(17_000);
    let e = err(&inform_with(DEVICE, &many));
    assert_eq!(e, Error::TooManyElements { limit: 16_384 });
}

#[test]
fn wrong_namespaces_are_named() {
    let soap12 =
        r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>"#;
    let e = err(soap12);
    assert!(
        matches!(&e, Error::WrongNamespace { found, .. } if found.contains("2003/05")),
        "{e:?}"
    );
    let cwmp2 = r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:c="urn:dslforum-org:cwmp-2-0"><soap-env:Body><c:Inform/></soap-env:Body></soap-env:Envelope>"#;
    let e = err(cwmp2);
    assert!(
        matches!(&e, Error::WrongNamespace { found, .. } if found == "urn:dslforum-org:cwmp-2-0"),
        "{e:?}"
    );
    let unbound = body("<Inform/>");
    assert!(matches!(err(&unbound), Error::WrongNamespace { .. }));
    let undeclared = body("<zz:Inform/>");
    assert!(matches!(
        err(&undeclared),
        Error::WrongNamespace { .. } | Error::Xml(_)
    ));
    assert!(matches!(err("<html><body/></html>"), Error::NotSoap(_)));
}

#[test]
fn unknown_methods_and_headers_get_8000() {
    let e = err(&body("<cwmp:Kicked/>"));
    assert_eq!(e, Error::UnsupportedMethod("Kicked".into()));
    assert_eq!(e.fault_code(), fault::METHOD_NOT_SUPPORTED);
    let h = format!(
        r#"<soap-env:Envelope {ENV}><soap-env:Header><cwmp:Surprise soap-env:mustUnderstand="1">1</cwmp:Surprise></soap-env:Header><soap-env:Body/></soap-env:Envelope>"#
    );
    assert_eq!(err(&h), Error::MustUnderstand("Surprise".into()));
    let ignorable = h.replace(r#"mustUnderstand="1""#, r#"mustUnderstand="0""#);
    assert!(parse(ignorable.as_bytes(), &Limits::default()).is_ok());
}

#[test]
fn schema_violations_are_invalid_arguments() {
    let bad_oui = "<Manufacturer>X</Manufacturer><OUI>00256</OUI><SerialNumber>1</SerialNumber>";
    let e = err(&inform_with(bad_oui, ""));
    assert!(matches!(e, Error::InvalidField { field: "OUI", .. }));
    assert_eq!(e.fault_code(), fault::INVALID_ARGUMENTS);
    let long_serial = format!(
        "<Manufacturer>X</Manufacturer><OUI>00256D</OUI><SerialNumber>{}</SerialNumber>",
        "9".repeat(65)
    );
    assert!(matches!(
        err(&inform_with(&long_serial, "")),
        Error::InvalidField {
            field: "SerialNumber",
            ..
        }
    ));
    let ev = "<EventStruct><EventCode>2 PERIODIC</EventCode></EventStruct>".repeat(65);
    assert!(matches!(
        err(&inform_with(DEVICE, &ev)),
        Error::InvalidField { field: "Event", .. }
    ));
    let no_serial = "<Manufacturer>X</Manufacturer><OUI>00256D</OUI>";
    assert_eq!(
        err(&inform_with(no_serial, "")),
        Error::Missing {
            parent: "DeviceId",
            child: "SerialNumber"
        }
    );
    let retry = body(
        "<cwmp:SetParameterValuesResponse><Status>-1</Status></cwmp:SetParameterValuesResponse>",
    );
    assert!(matches!(
        err(&retry),
        Error::InvalidField {
            field: "Status",
            ..
        }
    ));
}

#[test]
fn malformed_documents_are_refused() {
    for text in [
        "<soap-env:Envelope",
        &body("<cwmp:Reboot>")[..],
        "<a></b>",
        "text only",
        "<a/><b/>",
    ] {
        let e = err(text);
        assert!(
            matches!(e, Error::Xml(_) | Error::NotSoap(_)),
            "{text}: {e:?}"
        );
    }
    let two_bodies =
        format!(r#"<soap-env:Envelope {ENV}><soap-env:Body/><soap-env:Body/></soap-env:Envelope>"#);
    assert!(matches!(err(&two_bodies), Error::NotSoap(_)));
    assert!(matches!(
        parse(&[0x3c, 0xff, 0xfe, 0x3e], &Limits::default()),
        Err(Error::Xml(_))
    ));
}
