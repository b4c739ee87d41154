//! Hand-written envelopes after the CWMP specification's examples, parsed into the expected
//! values, and the ACS's own messages written byte for byte as expected.

use uspwatch_cwmp::{
    Body, DeviceId, Envelope, EventStruct, Fault, FaultStruct, Header, IdScheme, Inform, Limits,
    ParameterValue, SpvFault, Version, endpoint_id, fault, inform_events, parse,
    transfer_complete_event, write,
};
use uspwatch_proto::EventKind;

fn fixture(name: &str) -> Envelope {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).expect("fixture");
    parse(&bytes, &Limits::default())
        .expect("parses")
        .expect("not empty")
}

fn pv(name: &str, value: &str, t: &str) -> ParameterValue {
    ParameterValue {
        name: name.into(),
        value: value.into(),
        xsi_type: t.into(),
    }
}

fn boot_inform() -> Inform {
    match fixture("inform_boot_reboot.xml").body {
        Body::Inform(i) => i,
        other => panic!("{other:?}"),
    }
}

#[test]
fn inform_with_two_events_parses_field_by_field() {
    let env = fixture("inform_boot_reboot.xml");
    assert_eq!(env.version, Version::V1_2);
    assert_eq!(env.header.id.as_deref(), Some("cpe-1"));
    assert_eq!(env.header.hold_requests, None);
    let Body::Inform(i) = env.body else {
        panic!("not an Inform")
    };
    assert_eq!(
        i.device_id,
        DeviceId {
            manufacturer: "ExampleCo".into(),
            oui: "00256D".into(),
            product_class: "HGW".into(),
            serial_number: "SN0001".into(),
        }
    );
    assert_eq!(
        i.events,
        vec![
            EventStruct {
                code: "1 BOOT".into(),
                command_key: String::new()
            },
            EventStruct {
                code: "M Reboot".into(),
                command_key: "rb-42".into()
            },
        ]
    );
    assert_eq!((i.max_envelopes, i.retry_count), (1, 0));
    assert_eq!(i.current_time, "2025-01-15T10:00:00Z");
    assert_eq!(i.parameters.len(), 7);
    assert_eq!(
        i.parameters[5],
        pv(
            "Device.ManagementServer.ConnectionRequestURL",
            "http://192.0.2.10:7547/cr-4f1a9c",
            "xsd:string"
        )
    );
    assert_eq!(i.parameters[3].value, "");
    assert_eq!(i.parameters[6].xsi_type, "xsd:boolean");
}

#[test]
fn inform_becomes_boot_and_value_change_events() {
    let i = boot_inform();
    let eid = endpoint_id(&i.device_id, IdScheme::Os).unwrap();
    assert_eq!(eid, "os::00256D-SN0001");
    let events = inform_events(&i, &eid, "self::uspwatch", 1_736_935_200_000);
    assert_eq!(events.len(), 2 + 7);
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e.protocol.as_deref(), Some("cwmp"));
        assert_eq!(e.endpoint_id, eid);
        assert_eq!(e.event_id, format!("{eid}/{}/{n}", e.msg_id));
        assert_eq!(e.received_at, "2025-01-15T10:00:00.000Z");
    }
    let boot = &events[0];
    assert_eq!(
        (boot.kind, boot.path.as_str()),
        (EventKind::Event, "Device.")
    );
    assert_eq!(boot.name.as_deref(), Some("Boot!"));
    assert_eq!(boot.args["Cause"], "RemoteReboot");
    assert_eq!(boot.args["CommandKey"], "rb-42");
    assert_eq!(boot.args["FirmwareUpdated"], "false");
    assert_eq!(boot.args["cwmp_event_code"], "1 BOOT");
    let reboot = &events[1];
    assert_eq!(reboot.name.as_deref(), Some("M Reboot"));
    assert_eq!(reboot.command_key.as_deref(), Some("rb-42"));
    let sw = &events[4];
    assert_eq!(sw.kind, EventKind::ValueChange);
    assert_eq!(sw.path, "Device.DeviceInfo.SoftwareVersion");
    assert_eq!(sw.value.as_deref(), Some("1.2.3"));
}

#[test]
fn a_retried_inform_has_the_same_event_ids() {
    let mut i = boot_inform();
    let first = inform_events(&i, "os::00256D-SN0001", "self::a", 1);
    i.retry_count = 3;
    let retry = inform_events(&i, "os::00256D-SN0001", "self::a", 2);
    assert_eq!(first[0].event_id, retry[0].event_id);
    i.current_time = "2025-01-15T10:15:00Z".into();
    let next = inform_events(&i, "os::00256D-SN0001", "self::a", 3);
    assert_ne!(first[0].event_id, next[0].event_id);
}

#[test]
fn cwmp_1_0_tr098_inform_with_entities_cdata_and_noise_headers() {
    let env = fixture("inform_tr098_periodic_v10.xml");
    assert_eq!(env.version, Version::V1_0);
    assert_eq!(env.header.id.as_deref(), Some("1804289383"));
    let Body::Inform(i) = env.body else {
        panic!("not an Inform")
    };
    assert_eq!(i.device_id.manufacturer, "Example & Sons");
    assert_eq!(i.device_id.oui, "00256D", "normalised to uppercase");
    assert_eq!(i.retry_count, 2);
    assert_eq!(i.parameters[0].value, "4.0.1-rc");
    assert_eq!(
        i.parameters[2].value,
        "http://[2001:db8::1]:7547/cr?a=1&b=2"
    );
    assert_eq!(i.parameters[2].xsi_type, "xsd:string", "absent xsi:type");
    assert_eq!(
        endpoint_id(&i.device_id, IdScheme::Ops).unwrap(),
        "ops::00256D-Home%20Gateway-A1%3AB2%2F77"
    );
    let events = inform_events(&i, "os::00256D-A1%3AB2%2F77", "self::a", 0);
    let names: Vec<_> = events.iter().filter_map(|e| e.name.as_deref()).collect();
    assert_eq!(names, ["2 PERIODIC", "4 VALUE CHANGE"]);
    assert_eq!(events[0].path, "InternetGatewayDevice.");
    assert_eq!(events[3].value_f64(), Some(-65.0));
}

#[test]
fn get_parameter_values_response() {
    let env = fixture("gpv_response.xml");
    assert_eq!(env.header.id.as_deref(), Some("acs-101"));
    assert_eq!(
        env.body,
        Body::GetParameterValuesResponse {
            parameters: vec![
                pv("Device.DeviceInfo.UpTime", "86400", "xsd:unsignedInt"),
                pv("Device.WiFi.SSID.1.Enable", "true", "xsd:boolean"),
                pv("Device.WiFi.SSID.1.SSID", "lab-net", "xsd:string"),
            ]
        }
    );
}

#[test]
fn set_parameter_values_fault_with_per_parameter_detail() {
    let env = fixture("spv_fault.xml");
    assert_eq!(env.header.id.as_deref(), Some("acs-102"));
    assert_eq!(
        env.body,
        Body::Fault(Fault {
            faultcode: "Client".into(),
            code: 9003,
            string: "Invalid arguments".into(),
            set_parameter_values_faults: vec![SpvFault {
                parameter_name: "Device.WiFi.SSID.1.SSID".into(),
                code: 9007,
                string: "Invalid parameter value".into(),
            }],
        })
    );
}

#[test]
fn transfer_complete_in_the_1_4_namespace_with_session_headers() {
    let env = fixture("transfer_complete_v14.xml");
    assert_eq!(env.version, Version::V1_4);
    assert_eq!(env.header.session_timeout, Some(60));
    assert_eq!(
        env.header.supported_versions.as_deref(),
        Some("1.0,1.1,1.2,1.3,1.4")
    );
    let Body::TransferComplete {
        command_key,
        fault,
        complete_time,
        ..
    } = env.body
    else {
        panic!("not a TransferComplete")
    };
    assert_eq!(
        fault,
        FaultStruct {
            code: 9018,
            string: "File corrupted".into()
        }
    );
    let e = transfer_complete_event(
        &command_key,
        &fault,
        &complete_time,
        "os::00256D-1",
        "self::a",
        5,
    );
    assert_eq!(e.kind, EventKind::OperationComplete);
    assert_eq!(e.command_key.as_deref(), Some("fw-2025-01"));
    assert_eq!(e.error.as_ref().map(|x| x.code), Some(9018));
    assert_eq!(e.protocol.as_deref(), Some("cwmp"));
}

#[test]
fn hold_requests_and_spv_status_in_1_1() {
    let env = fixture("responses_v11.xml");
    assert_eq!(env.version, Version::V1_1);
    assert_eq!(env.header.hold_requests, Some(true));
    assert_eq!(env.body, Body::SetParameterValuesResponse { status: 1 });
}

#[test]
fn empty_http_body_and_empty_soap_body() {
    assert_eq!(parse(b"", &Limits::default()).unwrap(), None);
    assert_eq!(parse(b" \r\n", &Limits::default()).unwrap(), None);
    let env = parse(
        br#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>"#,
        &Limits::default(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(env.body, Body::Empty);
}

const HEAD: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?><soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/""#,
    r#" xmlns:soap-enc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:xsd="http://www.w3.org/2001/XMLSchema""#,
    r#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:cwmp="urn:dslforum-org:cwmp-1-2">"#
);

fn acs(id: &str, body: Body) -> String {
    write(&Envelope {
        version: Version::V1_2,
        header: Header {
            id: Some(id.into()),
            ..Header::default()
        },
        body,
    })
}

#[test]
fn acs_messages_are_written_as_expected() {
    assert_eq!(
        acs("cpe-1", Body::InformResponse { max_envelopes: 1 }),
        format!(
            "{HEAD}<soap-env:Header><cwmp:ID soap-env:mustUnderstand=\"1\">cpe-1</cwmp:ID></soap-env:Header><soap-env:Body><cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse></soap-env:Body></soap-env:Envelope>"
        )
    );
    assert_eq!(
        acs(
            "acs-101",
            Body::GetParameterValues {
                names: vec![
                    "Device.DeviceInfo.UpTime".into(),
                    "Device.WiFi.SSID.1.".into()
                ]
            }
        ),
        format!(
            "{HEAD}<soap-env:Header><cwmp:ID soap-env:mustUnderstand=\"1\">acs-101</cwmp:ID></soap-env:Header><soap-env:Body><cwmp:GetParameterValues><ParameterNames soap-enc:arrayType=\"xsd:string[2]\"><string>Device.DeviceInfo.UpTime</string><string>Device.WiFi.SSID.1.</string></ParameterNames></cwmp:GetParameterValues></soap-env:Body></soap-env:Envelope>"
        )
    );
    assert_eq!(
        acs(
            "acs-102",
            Body::SetParameterValues {
                parameters: vec![pv("Device.WiFi.Radio.1.Channel", "6", "xsd:unsignedInt")],
                parameter_key: "k<1>".into()
            }
        ),
        format!(
            "{HEAD}<soap-env:Header><cwmp:ID soap-env:mustUnderstand=\"1\">acs-102</cwmp:ID></soap-env:Header><soap-env:Body><cwmp:SetParameterValues><ParameterList soap-enc:arrayType=\"cwmp:ParameterValueStruct[1]\"><ParameterValueStruct><Name>Device.WiFi.Radio.1.Channel</Name><Value xsi:type=\"xsd:unsignedInt\">6</Value></ParameterValueStruct></ParameterList><ParameterKey>k&lt;1&gt;</ParameterKey></cwmp:SetParameterValues></soap-env:Body></soap-env:Envelope>"
        )
    );
    assert_eq!(
        acs(
            "acs-103",
            Body::Reboot {
                command_key: "rb-42".into()
            }
        ),
        format!(
            "{HEAD}<soap-env:Header><cwmp:ID soap-env:mustUnderstand=\"1\">acs-103</cwmp:ID></soap-env:Header><soap-env:Body><cwmp:Reboot><CommandKey>rb-42</CommandKey></cwmp:Reboot></soap-env:Body></soap-env:Envelope>"
        )
    );
    assert_eq!(
        acs("cpe-2", Body::Fault(Fault::new(fault::RETRY_REQUEST))),
        format!(
            "{HEAD}<soap-env:Header><cwmp:ID soap-env:mustUnderstand=\"1\">cpe-2</cwmp:ID></soap-env:Header><soap-env:Body><soap-env:Fault><faultcode>Client</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault><FaultCode>8005</FaultCode><FaultString>Retry request</FaultString></cwmp:Fault></detail></soap-env:Fault></soap-env:Body></soap-env:Envelope>"
        )
    );
}

#[test]
fn replies_keep_the_cpe_namespace_and_hold_requests() {
    for v in Version::ALL {
        let out = write(&Envelope {
            version: v,
            header: Header {
                id: Some("x".into()),
                hold_requests: Some(true),
                ..Header::default()
            },
            body: Body::InformResponse { max_envelopes: 1 },
        });
        assert!(out.contains(v.namespace()), "{out}");
        assert!(
            out.contains(r#"<cwmp:HoldRequests soap-env:mustUnderstand="1">1</cwmp:HoldRequests>"#)
        );
        let back = parse(out.as_bytes(), &Limits::default()).unwrap().unwrap();
        assert_eq!(back.version, v);
        assert_eq!(back.header.hold_requests, Some(true));
    }
}
