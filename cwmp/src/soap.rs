//! The envelope model and its parser: the subset of CWMP an ACS exchanges with a CPE.

use crate::error::{Error, Result};
use crate::xml::{self, Element, Ns};
use crate::{Limits, Version};

/// One SOAP envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The CWMP version of the namespace used (replies use the same).
    pub version: Version,
    pub header: Header,
    pub body: Body,
}

/// The CWMP SOAP headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// `cwmp:ID`: picked by a request's sender, echoed in its response.
    pub id: Option<String>,
    /// `cwmp:HoldRequests`: true asks the CPE to send no requests in its next POST.
    pub hold_requests: Option<bool>,
    /// `cwmp:SessionTimeout` in seconds (CWMP 1.3+).
    pub session_timeout: Option<u32>,
    /// `cwmp:SupportedCWMPVersions` (CWMP 1.4), as sent.
    pub supported_versions: Option<String>,
    /// `cwmp:UseCWMPVersion` (CWMP 1.4), the ACS's choice.
    pub use_version: Option<String>,
}

/// The DeviceId of an Inform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceId {
    pub manufacturer: String,
    /// Six uppercase hex digits.
    pub oui: String,
    pub product_class: String,
    pub serial_number: String,
}

/// One `EventStruct`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStruct {
    /// E.g. `1 BOOT`, `M Reboot`.
    pub code: String,
    pub command_key: String,
}

/// One `ParameterValueStruct`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterValue {
    pub name: String,
    pub value: String,
    /// The `xsi:type` (e.g. `xsd:string`); `xsd:string` when the CPE sent none.
    pub xsi_type: String,
}

/// An Inform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inform {
    pub device_id: DeviceId,
    pub events: Vec<EventStruct>,
    pub max_envelopes: u32,
    /// As sent (xs:dateTime).
    pub current_time: String,
    pub retry_count: u32,
    pub parameters: Vec<ParameterValue>,
}

/// `FaultStruct` of a TransferComplete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultStruct {
    /// 0 = success.
    pub code: u32,
    pub string: String,
}

/// One `SetParameterValuesFault` of a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpvFault {
    pub parameter_name: String,
    pub code: u32,
    pub string: String,
}

/// A SOAP fault carrying a `cwmp:Fault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `Client` or `Server`.
    pub faultcode: String,
    pub code: u32,
    pub string: String,
    pub set_parameter_values_faults: Vec<SpvFault>,
}

impl Fault {
    /// A fault with the XSD's description of `code`.
    pub fn new(code: u32) -> Fault {
        Fault {
            faultcode: crate::fault::soap_faultcode(code).to_string(),
            code,
            string: crate::fault::describe(code).to_string(),
            set_parameter_values_faults: Vec::new(),
        }
    }
}

/// The RPC an envelope carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A SOAP Body with no RPC in it.
    Empty,
    Inform(Inform),
    InformResponse {
        max_envelopes: u32,
    },
    GetParameterValues {
        names: Vec<String>,
    },
    GetParameterValuesResponse {
        parameters: Vec<ParameterValue>,
    },
    SetParameterValues {
        parameters: Vec<ParameterValue>,
        parameter_key: String,
    },
    SetParameterValuesResponse {
        /// 0 = applied, 1 = committed, applied later (e.g. at reboot).
        status: u32,
    },
    Reboot {
        command_key: String,
    },
    RebootResponse,
    TransferComplete {
        command_key: String,
        fault: FaultStruct,
        start_time: String,
        complete_time: String,
    },
    TransferCompleteResponse,
    GetRpcMethods,
    GetRpcMethodsResponse {
        methods: Vec<String>,
    },
    Fault(Fault),
}

impl Body {
    /// The RPC element's name (`Fault` for a fault, empty for [`Body::Empty`]).
    pub fn name(&self) -> &'static str {
        match self {
            Body::Empty => "",
            Body::Inform(_) => "Inform",
            Body::InformResponse { .. } => "InformResponse",
            Body::GetParameterValues { .. } => "GetParameterValues",
            Body::GetParameterValuesResponse { .. } => "GetParameterValuesResponse",
            Body::SetParameterValues { .. } => "SetParameterValues",
            Body::SetParameterValuesResponse { .. } => "SetParameterValuesResponse",
            Body::Reboot { .. } => "Reboot",
            Body::RebootResponse => "RebootResponse",
            Body::TransferComplete { .. } => "TransferComplete",
            Body::TransferCompleteResponse => "TransferCompleteResponse",
            Body::GetRpcMethods => "GetRPCMethods",
            Body::GetRpcMethodsResponse { .. } => "GetRPCMethodsResponse",
            Body::Fault(_) => "Fault",
        }
    }
}

/// Parses one envelope. `Ok(None)` for an empty (or whitespace-only) HTTP body, which is how a
/// CPE says it has no more requests.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Option<Envelope>> {
    let Some(root) = xml::parse(bytes, limits)? else {
        return Ok(None);
    };
    if root.name != "Envelope" {
        return Err(Error::NotSoap(format!(
            "root element is <{}>",
            clip(&root.name)
        )));
    }
    expect_soap(&root, "Envelope")?;
    let mut header = Header::default();
    let mut version = None;
    let mut body = None;
    for c in &root.children {
        match c.name.as_str() {
            "Header" => {
                expect_soap(c, "Header")?;
                version = parse_header(c, &mut header)?.or(version);
            }
            "Body" => {
                expect_soap(c, "Body")?;
                if body.replace(c).is_some() {
                    return Err(Error::NotSoap("more than one Body".into()));
                }
            }
            _ if c.ns == Ns::Soap => {
                return Err(Error::NotSoap(format!("unexpected <{}>", clip(&c.name))));
            }
            _ => {}
        }
    }
    let body = body.ok_or(Error::Missing {
        parent: "Envelope",
        child: "Body",
    })?;
    let (body, body_version) = parse_body(body)?;
    // An envelope without any CWMP element (an empty Body) still declares the namespace the
    // CPE speaks; replies use it.
    let version = body_version
        .or(version)
        .or(root.declared_cwmp)
        .unwrap_or(Version::V1_2);
    Ok(Some(Envelope {
        version,
        header,
        body,
    }))
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn expect_soap(e: &Element, name: &'static str) -> Result<()> {
    match e.ns {
        Ns::Soap => Ok(()),
        _ => Err(Error::WrongNamespace {
            element: name.to_string(),
            found: e.ns.describe(),
            expected: xml::SOAP_ENV,
        }),
    }
}

fn must_understand(e: &Element) -> bool {
    matches!(e.attr("mustUnderstand").map(str::trim), Some("1" | "true"))
}

fn parse_header(h: &Element, out: &mut Header) -> Result<Option<Version>> {
    let mut version = None;
    for c in &h.children {
        let Ns::Cwmp(v) = c.ns else {
            if must_understand(c) {
                return Err(Error::MustUnderstand(clip(&c.name)));
            }
            continue;
        };
        version = Some(v);
        match c.name.as_str() {
            "ID" => out.id = Some(bounded("ID", &c.text, 256)?.to_string()),
            "HoldRequests" => out.hold_requests = Some(boolean("HoldRequests", &c.text)?),
            // Pre-1.1 CPEs use it for the same purpose as an empty POST; nothing to keep.
            "NoMoreRequests" => {}
            "SessionTimeout" => out.session_timeout = Some(uint("SessionTimeout", &c.text)?),
            "SupportedCWMPVersions" => {
                out.supported_versions = Some(bounded("SupportedCWMPVersions", &c.text, 64)?.into())
            }
            "UseCWMPVersion" => {
                out.use_version = Some(bounded("UseCWMPVersion", &c.text, 64)?.into())
            }
            _ if must_understand(c) => return Err(Error::MustUnderstand(clip(&c.name))),
            _ => {}
        }
    }
    Ok(version)
}

fn parse_body(b: &Element) -> Result<(Body, Option<Version>)> {
    let mut rpcs = b.children.iter();
    let Some(rpc) = rpcs.next() else {
        return Ok((Body::Empty, None));
    };
    if rpcs.next().is_some() {
        return Err(Error::NotSoap("more than one element in Body".into()));
    }
    if rpc.ns == Ns::Soap && rpc.name == "Fault" {
        return parse_fault(rpc);
    }
    let Ns::Cwmp(v) = rpc.ns else {
        return Err(Error::WrongNamespace {
            element: clip(&rpc.name),
            found: rpc.ns.describe(),
            expected: "a urn:dslforum-org:cwmp-1-x namespace",
        });
    };
    let body = match rpc.name.as_str() {
        "Inform" => Body::Inform(parse_inform(rpc)?),
        "InformResponse" => Body::InformResponse {
            max_envelopes: uint(
                "MaxEnvelopes",
                text_of(rpc, "InformResponse", "MaxEnvelopes")?,
            )?,
        },
        "GetParameterValues" => {
            let names = required(rpc, "GetParameterValues", "ParameterNames")?;
            let names = names
                .children_named("string")
                .map(|s| bounded("ParameterNames", &s.text, 256).map(str::to_string))
                .collect::<Result<_>>()?;
            Body::GetParameterValues { names }
        }
        "GetParameterValuesResponse" => Body::GetParameterValuesResponse {
            parameters: parameter_list(required(
                rpc,
                "GetParameterValuesResponse",
                "ParameterList",
            )?)?,
        },
        "SetParameterValues" => Body::SetParameterValues {
            parameters: parameter_list(required(rpc, "SetParameterValues", "ParameterList")?)?,
            parameter_key: optional_text(rpc, "ParameterKey", 32)?,
        },
        "SetParameterValuesResponse" => Body::SetParameterValuesResponse {
            status: uint(
                "Status",
                text_of(rpc, "SetParameterValuesResponse", "Status")?,
            )?,
        },
        "Reboot" => Body::Reboot {
            command_key: optional_text(rpc, "CommandKey", 32)?,
        },
        "RebootResponse" => Body::RebootResponse,
        "TransferComplete" => {
            let fs = required(rpc, "TransferComplete", "FaultStruct")?;
            Body::TransferComplete {
                command_key: optional_text(rpc, "CommandKey", 32)?,
                fault: FaultStruct {
                    code: uint("FaultCode", text_of(fs, "FaultStruct", "FaultCode")?)?,
                    string: optional_text(fs, "FaultString", 256)?,
                },
                start_time: optional_text(rpc, "StartTime", 64)?,
                complete_time: optional_text(rpc, "CompleteTime", 64)?,
            }
        }
        "TransferCompleteResponse" => Body::TransferCompleteResponse,
        "GetRPCMethods" => Body::GetRpcMethods,
        "GetRPCMethodsResponse" => {
            let list = required(rpc, "GetRPCMethodsResponse", "MethodList")?;
            Body::GetRpcMethodsResponse {
                methods: list
                    .children_named("string")
                    .map(|s| bounded("MethodList", &s.text, 64).map(str::to_string))
                    .collect::<Result<_>>()?,
            }
        }
        other => return Err(Error::UnsupportedMethod(clip(other))),
    };
    Ok((body, Some(v)))
}

fn parse_fault(f: &Element) -> Result<(Body, Option<Version>)> {
    let faultcode = optional_text(f, "faultcode", 64)?;
    // The faultcode may carry the envelope prefix (`soap-env:Client`).
    let faultcode = faultcode.rsplit(':').next().unwrap_or_default().to_string();
    let detail = required(f, "Fault", "detail")?;
    let cwmp = detail.child("Fault").ok_or(Error::Missing {
        parent: "detail",
        child: "Fault",
    })?;
    let Ns::Cwmp(v) = cwmp.ns else {
        return Err(Error::WrongNamespace {
            element: "Fault".into(),
            found: cwmp.ns.describe(),
            expected: "a urn:dslforum-org:cwmp-1-x namespace",
        });
    };
    let spv = cwmp
        .children_named("SetParameterValuesFault")
        .map(|s| {
            Ok(SpvFault {
                parameter_name: bounded(
                    "ParameterName",
                    text_of(s, "SetParameterValuesFault", "ParameterName")?,
                    256,
                )?
                .to_string(),
                code: uint(
                    "FaultCode",
                    text_of(s, "SetParameterValuesFault", "FaultCode")?,
                )?,
                string: optional_text(s, "FaultString", 256)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok((
        Body::Fault(Fault {
            faultcode,
            code: uint("FaultCode", text_of(cwmp, "Fault", "FaultCode")?)?,
            string: optional_text(cwmp, "FaultString", 256)?,
            set_parameter_values_faults: spv,
        }),
        Some(v),
    ))
}

fn parse_inform(i: &Element) -> Result<Inform> {
    let d = required(i, "Inform", "DeviceId")?;
    let oui = text_of(d, "DeviceId", "OUI")?.trim();
    if oui.len() != 6 || !oui.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidField {
            field: "OUI",
            detail: format!("{:?} is not 6 hex digits", clip(oui)),
        });
    }
    let device_id = DeviceId {
        manufacturer: bounded("Manufacturer", text_of(d, "DeviceId", "Manufacturer")?, 64)?.into(),
        oui: oui.to_ascii_uppercase(),
        product_class: optional_text(d, "ProductClass", 64)?,
        serial_number: bounded("SerialNumber", text_of(d, "DeviceId", "SerialNumber")?, 64)?.into(),
    };
    let ev = required(i, "Inform", "Event")?;
    let mut events = Vec::new();
    for s in ev.children_named("EventStruct") {
        if events.len() == 64 {
            return Err(Error::InvalidField {
                field: "Event",
                detail: "more than 64 EventStructs".into(),
            });
        }
        events.push(EventStruct {
            code: bounded("EventCode", text_of(s, "EventStruct", "EventCode")?, 64)?.into(),
            command_key: optional_text(s, "CommandKey", 32)?,
        });
    }
    Ok(Inform {
        device_id,
        events,
        max_envelopes: uint("MaxEnvelopes", text_of(i, "Inform", "MaxEnvelopes")?)?,
        current_time: bounded("CurrentTime", text_of(i, "Inform", "CurrentTime")?, 64)?.into(),
        retry_count: uint("RetryCount", text_of(i, "Inform", "RetryCount")?)?,
        parameters: parameter_list(required(i, "Inform", "ParameterList")?)?,
    })
}

fn parameter_list(list: &Element) -> Result<Vec<ParameterValue>> {
    list.children_named("ParameterValueStruct")
        .map(|p| {
            let value = required(p, "ParameterValueStruct", "Value")?;
            Ok(ParameterValue {
                name: bounded("Name", text_of(p, "ParameterValueStruct", "Name")?, 256)?.into(),
                value: value.text.clone(),
                xsi_type: value
                    .attr("type")
                    .map(|t| bounded("xsi:type", t, 64).map(str::to_string))
                    .transpose()?
                    .unwrap_or_else(|| "xsd:string".to_string()),
            })
        })
        .collect()
}

fn required<'a>(e: &'a Element, parent: &'static str, child: &'static str) -> Result<&'a Element> {
    e.child(child).ok_or(Error::Missing { parent, child })
}

fn text_of<'a>(e: &'a Element, parent: &'static str, child: &'static str) -> Result<&'a str> {
    required(e, parent, child).map(|c| c.text.as_str())
}

/// The text of an optional child (empty when absent), at most `max` characters.
fn optional_text(e: &Element, child: &'static str, max: usize) -> Result<String> {
    match e.child(child) {
        Some(c) => bounded(child, &c.text, max).map(str::to_string),
        None => Ok(String::new()),
    }
}

fn bounded<'a>(field: &'static str, s: &'a str, max: usize) -> Result<&'a str> {
    let s = s.trim();
    if s.chars().count() > max {
        return Err(Error::InvalidField {
            field,
            detail: format!("longer than {max} characters"),
        });
    }
    Ok(s)
}

fn uint(field: &'static str, s: &str) -> Result<u32> {
    s.trim().parse().map_err(|_| Error::InvalidField {
        field,
        detail: format!("{:?} is not an unsignedInt", clip(s)),
    })
}

fn boolean(field: &'static str, s: &str) -> Result<bool> {
    match s.trim() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        other => Err(Error::InvalidField {
            field,
            detail: format!("{:?} is not a boolean", clip(other)),
        }),
    }
}
