//! The malformed-Record corpus: one row per way a Record can be wrong, each with the rejection
//! [`Reason`] it must get. The bytes are written at the wire level (not through prost), so the
//! rows can express what the generated types cannot: bad wire types, truncation, duplicated oneof
//! members, invalid UTF-8.

use std::collections::BTreeSet;

use uspwatch_proto::{Limits, Reason, validate};

// --- a minimal protobuf writer ---------------------------------------------------------------

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn key(field: u32, wire: u8) -> Vec<u8> {
    varint(u64::from(field) << 3 | u64::from(wire))
}

/// A length-delimited field.
fn ld(field: u32, body: &[u8]) -> Vec<u8> {
    [key(field, 2), varint(body.len() as u64), body.to_vec()].concat()
}

fn s(field: u32, v: &str) -> Vec<u8> {
    ld(field, v.as_bytes())
}

/// A varint field.
fn vi(field: u32, v: u64) -> Vec<u8> {
    [key(field, 0), varint(v)].concat()
}

fn fixed32(field: u32, v: u32) -> Vec<u8> {
    [key(field, 5), v.to_le_bytes().to_vec()].concat()
}

// --- building blocks -------------------------------------------------------------------------

const TO: &str = "self::uspwatch";
const FROM: &str = "os::00256D-0123456789";

fn head(version: &str, to: &str, from: &str) -> Vec<u8> {
    [s(1, version), s(2, to), s(3, from)].concat()
}

fn ok_head() -> Vec<u8> {
    head("1.4", TO, FROM)
}

fn nsc(msg: &[u8]) -> Vec<u8> {
    ld(7, &ld(2, msg))
}

fn record(msg: &[u8]) -> Vec<u8> {
    [ok_head(), nsc(msg)].concat()
}

fn msg_header(id: &str, msg_type: u64) -> Vec<u8> {
    ld(1, &[s(1, id), vi(2, msg_type)].concat())
}

fn msg(id: &str, msg_type: u64, body: &[u8]) -> Vec<u8> {
    [msg_header(id, msg_type), ld(2, body)].concat()
}

fn request(member: &[u8]) -> Vec<u8> {
    ld(1, member)
}

fn response(member: &[u8]) -> Vec<u8> {
    ld(2, member)
}

const GET: u64 = 1;
const GET_RESP: u64 = 2;
const NOTIFY: u64 = 3;
const SET: u64 = 4;

fn get_req() -> Vec<u8> {
    request(&ld(1, &s(1, "Device.DeviceInfo.")))
}

fn value_change() -> Vec<u8> {
    ld(
        4,
        &[s(1, "Device.WiFi.Radio.1.Stats.Noise"), s(2, "-92")].concat(),
    )
}

fn notify(notification: &[u8]) -> Vec<u8> {
    request(&ld(8, &[s(1, "sub-1"), notification.to_vec()].concat()))
}

fn mqtt_connect(topic: &str) -> Vec<u8> {
    [ok_head(), ld(10, &[vi(1, 1), s(2, topic)].concat())].concat()
}

fn with_to(id: &str) -> Vec<u8> {
    [head("1.4", id, FROM), nsc(&msg("m", GET, &get_req()))].concat()
}

fn with_from(id: &str) -> Vec<u8> {
    [head("1.4", TO, id), nsc(&msg("m", GET, &get_req()))].concat()
}

fn with_version(v: &str) -> Vec<u8> {
    [head(v, TO, FROM), nsc(&msg("m", GET, &get_req()))].concat()
}

fn good() -> Vec<u8> {
    record(&msg("m", GET, &get_req()))
}

// --- the corpus ------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// A smaller `max_record_size` than the default, where the row is about size.
    limit: Option<usize>,
    want: Reason,
}

fn case(name: &'static str, bytes: Vec<u8>, want: Reason) -> Case {
    Case {
        name,
        bytes,
        limit: None,
        want,
    }
}

fn corpus() -> Vec<Case> {
    use Reason::*;
    let truncated = {
        let mut b = good();
        b.truncate(b.len() - 3);
        b
    };
    let long_instance = format!("self::{}", "a".repeat(51));
    let ten_mb = 10 * 1024 * 1024;
    vec![
        // Size.
        Case {
            limit: Some(64),
            ..case("over a 64-byte limit", good(), TooLarge)
        },
        Case {
            limit: Some(0),
            ..case("any byte over a zero limit", vec![0x0a], TooLarge)
        },
        case(
            "11 MB record over the default limit",
            [ok_head(), ld(7, &vec![0x55; ten_mb + 1024 * 1024])].concat(),
            TooLarge,
        ),
        // Protobuf framing of the Record.
        case("truncated varint key", vec![0x80], Undecodable),
        case(
            "truncated varint length",
            [ok_head(), vec![0x3a, 0xff, 0xff]].concat(),
            Undecodable,
        ),
        case(
            "varint longer than 10 bytes",
            [key(4, 0), vec![0xff; 11]].concat(),
            Undecodable,
        ),
        case("truncated record", truncated, Undecodable),
        case(
            "length past the buffer",
            [s(1, "1.4"), key(2, 2), varint(40), b"self::x".to_vec()].concat(),
            Undecodable,
        ),
        case(
            "10 MB length prefix",
            [
                ok_head(),
                key(7, 2),
                varint(ten_mb as u64),
                vec![0x12, 0x00],
            ]
            .concat(),
            Undecodable,
        ),
        case(
            "u64::MAX length prefix",
            [ok_head(), key(7, 2), varint(u64::MAX)].concat(),
            Undecodable,
        ),
        case(
            "version with varint wire type",
            [vi(1, 14), s(2, TO), s(3, FROM)].concat(),
            Undecodable,
        ),
        case(
            "payload_security with length-delimited wire type",
            [ok_head(), s(4, "x")].concat(),
            Undecodable,
        ),
        case(
            "record_type member with fixed32 wire type",
            [ok_head(), fixed32(7, 1)].concat(),
            Undecodable,
        ),
        case(
            "wire type 6 does not exist",
            [ok_head(), vec![0x0e, 0x00]].concat(),
            Undecodable,
        ),
        case(
            "end group without start group",
            [ok_head(), vec![0x0c]].concat(),
            Undecodable,
        ),
        case(
            "field number zero",
            [vec![0x02, 0x00], ok_head()].concat(),
            Undecodable,
        ),
        case(
            "invalid UTF-8 in to_id",
            [s(1, "1.4"), ld(2, b"self::\xff\xfe"), s(3, FROM)].concat(),
            Undecodable,
        ),
        case(
            "invalid UTF-8 in version",
            [ld(1, b"1.\xc3"), s(2, TO), s(3, FROM)].concat(),
            Undecodable,
        ),
        case(
            "overlong UTF-8 in from_id",
            [s(1, "1.4"), s(2, TO), ld(3, b"os::\xc0\xaf")].concat(),
            Undecodable,
        ),
        // Record structure.
        case("no record_type", ok_head(), NoRecordType),
        case(
            "two record_type members",
            [good(), ld(12, &s(1, "bye"))].concat(),
            MultipleRecordTypes,
        ),
        case(
            "the same record_type member twice",
            [good(), nsc(&msg("n", GET, &get_req()))].concat(),
            MultipleRecordTypes,
        ),
        case(
            "connect and disconnect",
            [mqtt_connect("usp/agent/x"), ld(12, &[])].concat(),
            MultipleRecordTypes,
        ),
        case("empty input", Vec::new(), MissingVersion),
        case(
            "no version",
            [s(2, TO), s(3, FROM), nsc(&msg("m", GET, &get_req()))].concat(),
            MissingVersion,
        ),
        case("version without minor", with_version("1"), InvalidVersion),
        case(
            "version with trailing dot",
            with_version("1."),
            InvalidVersion,
        ),
        case(
            "version with three parts",
            with_version("1.4.1"),
            InvalidVersion,
        ),
        case(
            "version with a v prefix",
            with_version("v1.4"),
            InvalidVersion,
        ),
        case("version with spaces", with_version("1.4 "), InvalidVersion),
        case(
            "version with a huge major",
            with_version("12345.0"),
            InvalidVersion,
        ),
        case(
            "no to_id",
            [s(1, "1.4"), s(3, FROM), nsc(&msg("m", GET, &get_req()))].concat(),
            MissingToId,
        ),
        case(
            "to_id without scheme separator",
            with_to("uspwatch"),
            InvalidToId,
        ),
        case(
            "to_id without authority separator",
            with_to("self:uspwatch"),
            InvalidToId,
        ),
        case(
            "to_id with unknown scheme",
            with_to("bogus::x"),
            InvalidToId,
        ),
        case("to_id with empty scheme", with_to("::x"), InvalidToId),
        case(
            "to_id with empty instance",
            with_to("oui:00256D:"),
            InvalidToId,
        ),
        case(
            "to_id instance over 50 characters",
            with_to(&long_instance),
            InvalidToId,
        ),
        case(
            "to_id instance with a slash",
            with_to("self::a/b"),
            InvalidToId,
        ),
        case(
            "to_id with a bad %-escape",
            with_to("self::%zz"),
            InvalidToId,
        ),
        case(
            "to_id with a truncated %-escape",
            with_to("self::ab%2"),
            InvalidToId,
        ),
        case(
            "to_id self authority over 6 characters",
            with_to("self:toolong7:x"),
            InvalidToId,
        ),
        case(
            "to_id proto authority with a dot",
            with_to("proto:a.b:x"),
            InvalidToId,
        ),
        case(
            "no from_id",
            [s(1, "1.4"), s(2, TO), nsc(&msg("m", GET, &get_req()))].concat(),
            MissingFromId,
        ),
        case(
            "from_id oui authority not hex",
            with_from("oui:XYZ123:abc"),
            InvalidFromId,
        ),
        case(
            "from_id oui authority of 5 digits",
            with_from("oui:00256:abc"),
            InvalidFromId,
        ),
        case(
            "from_id cid authority of 7 digits",
            with_from("cid:3AA3F80:abc"),
            InvalidFromId,
        ),
        case(
            "from_id pen authority not decimal",
            with_from("pen:35x1:abc"),
            InvalidFromId,
        ),
        case(
            "from_id os with an authority",
            with_from("os:abc:00256D-1"),
            InvalidFromId,
        ),
        case(
            "from_id os instance without OUI-",
            with_from("os::nodash"),
            InvalidFromId,
        ),
        case(
            "from_id with a non-ASCII instance",
            with_from("self::é"),
            InvalidFromId,
        ),
        case(
            "payload_security 2",
            [ok_head(), vi(4, 2), nsc(&msg("m", GET, &get_req()))].concat(),
            UnknownPayloadSecurity,
        ),
        case(
            "payload_security -1",
            [ok_head(), vi(4, u64::MAX), nsc(&msg("m", GET, &get_req()))].concat(),
            UnknownPayloadSecurity,
        ),
        case(
            "empty no_session_context payload",
            [ok_head(), ld(7, &[])].concat(),
            EmptyPayload,
        ),
        case(
            "empty TLS12 payload",
            [ok_head(), vi(4, 1), ld(7, &ld(2, &[]))].concat(),
            EmptyPayload,
        ),
        case(
            "session_context without payload",
            [ok_head(), ld(8, &vi(1, 7))].concat(),
            EmptyPayload,
        ),
        case(
            "session_context with empty payloads",
            [
                ok_head(),
                ld(8, &[vi(1, 7), ld(7, &[]), ld(7, &[])].concat()),
            ]
            .concat(),
            EmptyPayload,
        ),
        case(
            "mqtt_connect with + wildcard topic",
            mqtt_connect("usp/agent/+"),
            InvalidConnectRecord,
        ),
        case(
            "mqtt_connect with # wildcard topic",
            mqtt_connect("usp/#"),
            InvalidConnectRecord,
        ),
        case(
            "mqtt_connect without topic",
            [ok_head(), ld(10, &vi(1, 1))].concat(),
            InvalidConnectRecord,
        ),
        // The Msg inside a plaintext payload.
        case(
            "msg is not protobuf",
            record(&[0xff, 0xff, 0xff]),
            MsgUndecodable,
        ),
        case(
            "msg truncated",
            record(&msg("m", GET, &get_req())[..10]),
            MsgUndecodable,
        ),
        case(
            "msg_id with invalid UTF-8",
            record(
                &[
                    ld(1, &[ld(1, b"\xff"), vi(2, GET)].concat()),
                    ld(2, &get_req()),
                ]
                .concat(),
            ),
            MsgUndecodable,
        ),
        case(
            "msg_type with fixed32 wire type",
            record(
                &[
                    ld(1, &[s(1, "m"), fixed32(2, 1)].concat()),
                    ld(2, &get_req()),
                ]
                .concat(),
            ),
            MsgUndecodable,
        ),
        case(
            "msg in an unsegmented session_context, truncated",
            [ok_head(), ld(8, &ld(7, &msg("m", GET, &get_req())[..9]))].concat(),
            MsgUndecodable,
        ),
        case(
            "msg without header",
            record(&ld(2, &get_req())),
            MissingHeader,
        ),
        case(
            "msg with empty msg_id",
            record(&msg("", GET, &get_req())),
            MissingMsgId,
        ),
        case(
            "msg without body",
            record(&msg_header("m", GET)),
            MissingBody,
        ),
        case(
            "body without member",
            record(&[msg_header("m", GET), ld(2, &[])].concat()),
            EmptyBody,
        ),
        case(
            "request without member",
            record(&msg("m", GET, &request(&[]))),
            EmptyBody,
        ),
        case(
            "response without member",
            record(&msg("m", GET_RESP, &response(&[]))),
            EmptyBody,
        ),
        case(
            "two body members",
            record(&msg(
                "m",
                GET,
                &[get_req(), ld(3, &fixed32(1, 7000))].concat(),
            )),
            MultipleBodies,
        ),
        case(
            "two request members",
            record(&msg(
                "m",
                GET,
                &request(&[ld(1, &s(1, "Device.")), ld(4, &vi(1, 1))].concat()),
            )),
            MultipleBodies,
        ),
        case(
            "two response members",
            record(&msg(
                "m",
                GET_RESP,
                &response(&[ld(1, &[]), ld(8, &s(1, "s"))].concat()),
            )),
            MultipleBodies,
        ),
        case(
            "two notification members",
            record(&msg(
                "m",
                NOTIFY,
                &notify(&[value_change(), ld(6, &s(1, "Device.X.1."))].concat()),
            )),
            MultipleBodies,
        ),
        case(
            "msg_type GET on a GetResp body",
            record(&msg("m", GET, &response(&ld(1, &[])))),
            MsgTypeMismatch,
        ),
        case(
            "msg_type SET on a Get body",
            record(&msg("m", SET, &get_req())),
            MsgTypeMismatch,
        ),
        case(
            "msg_type absent (ERROR) on a Notify body",
            record(&[ld(1, &s(1, "m")), ld(2, &notify(&value_change()))].concat()),
            MsgTypeMismatch,
        ),
        case(
            "unknown msg_type 99",
            record(&msg("m", 99, &get_req())),
            MsgTypeMismatch,
        ),
        case(
            "msg_type NOTIFY on an Error body",
            record(&msg("m", NOTIFY, &ld(3, &fixed32(1, 7000)))),
            MsgTypeMismatch,
        ),
        case(
            "notify without notification",
            record(&msg("m", NOTIFY, &notify(&[]))),
            EmptyNotify,
        ),
    ]
}

/// Reasons that `validate` never gives, each with a call into this crate that must give it.
fn other_producers() -> Vec<(Reason, uspwatch_proto::Error)> {
    use uspwatch_proto::{Command, mqtt, validate_endpoint_id};
    let err = |r: uspwatch_proto::Result<()>| r.expect_err("must be refused");
    vec![
        (
            Reason::InvalidReplyTo,
            err(mqtt::split_reply_to("usp/controller/x/reply-to=usp%2Fagent%2F#").map(drop)),
        ),
        (
            Reason::InvalidEndpointId,
            err(validate_endpoint_id("no-authority")),
        ),
        (
            Reason::InvalidCommand,
            err(Command::Get {
                paths: vec![],
                max_depth: 0,
            }
            .validate()),
        ),
    ]
}

/// Reasons decided outside this crate, with the test that covers each there.
const DECIDED_ELSEWHERE: &[(Reason, &str)] = &[
    (
        Reason::WrongContentType,
        "broker acl::tests::record_checks_give_the_right_reason",
    ),
    (
        Reason::MissingReplyTo,
        "broker acl::tests::record_checks_give_the_right_reason",
    ),
    (
        Reason::FromIdMismatch,
        "broker acl::tests::record_checks_give_the_right_reason",
    ),
    (
        Reason::ToIdMismatch,
        "broker acl::tests::record_checks_give_the_right_reason",
    ),
    (
        Reason::ForeignReplyTo,
        "broker identity::reply_routes_naming_someone_else_are_quarantined",
    ),
    (
        Reason::RateLimited,
        "broker conformance::a_flooding_device_is_rate_limited_and_others_keep_being_served",
    ),
    (
        Reason::SecureSessionNotSupported,
        "broker conformance::e2e_and_session_context_records_for_the_built_in_controller_are_refused",
    ),
    (
        Reason::SessionContextNotSupported,
        "broker conformance::e2e_and_session_context_records_for_the_built_in_controller_are_refused",
    ),
    (
        Reason::BulkDataMalformed,
        "pipeline bulkdata::malformed_push_data_is_quarantined_and_the_event_acknowledged",
    ),
    (
        Reason::BulkDataTooLarge,
        "pipeline bulkdata::reports_from_other_transports_are_all_or_nothing",
    ),
];

#[test]
fn the_building_blocks_make_a_valid_record() {
    for bytes in [
        good(),
        mqtt_connect("usp/agent/os::00256D-0123456789"),
        record(&msg("m", NOTIFY, &notify(&value_change()))),
    ] {
        validate(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn every_malformed_record_is_rejected_with_its_reason() {
    let mut failures = Vec::new();
    for c in corpus() {
        let limits = c
            .limit
            .map_or_else(Limits::default, |max_record_size| Limits {
                max_record_size,
            });
        match validate(&c.bytes, &limits) {
            Ok(_) => failures.push(format!("{}: accepted", c.name)),
            Err(e) if e.reason() != c.want => {
                failures.push(format!(
                    "{}: {} ({e}), expected {}",
                    c.name,
                    e.reason(),
                    c.want
                ));
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                assert!(
                    e.reason().usp_err_code().is_some(),
                    "{}: no USP error code",
                    c.name
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn other_producers_give_their_reason() {
    for (want, e) in other_producers() {
        assert_eq!(e.reason(), want, "{e}");
        assert!(!e.to_string().is_empty());
    }
}

/// Every reason there is — taken from the enum itself, so a new one cannot escape — has a
/// corpus row, a producer call above, or a named test where it is decided.
#[test]
fn every_reason_has_a_case() {
    let cases = corpus();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
    let in_corpus: BTreeSet<Reason> = cases.iter().map(|c| c.want).collect();
    let by_call: BTreeSet<Reason> = other_producers().iter().map(|(r, _)| *r).collect();
    let elsewhere: BTreeSet<Reason> = DECIDED_ELSEWHERE.iter().map(|(r, _)| *r).collect();
    let mut problems = Vec::new();
    for r in Reason::iter() {
        let homes = [&in_corpus, &by_call, &elsewhere]
            .iter()
            .filter(|set| set.contains(&r))
            .count();
        match homes {
            0 => problems.push(format!("{r}: no case")),
            1 => {}
            _ => problems.push(format!("{r}: listed in more than one place")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
