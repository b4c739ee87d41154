//! Serialises an [`Envelope`]. Prefixes follow the usual CWMP spelling (`soap-env`, `soap-enc`,
//! `cwmp`); child elements are unqualified, as `elementFormDefault="unqualified"` requires.

use crate::soap::{Body, Envelope, ParameterValue};
use crate::xml::escape;

/// The envelope as XML text, in the namespace of `env.version`.
pub fn write(env: &Envelope) -> String {
    let mut o = String::with_capacity(768);
    o.push_str(concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/""#,
        r#" xmlns:soap-enc="http://schemas.xmlsoap.org/soap/encoding/""#,
        r#" xmlns:xsd="http://www.w3.org/2001/XMLSchema""#,
        r#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:cwmp=""#
    ));
    o.push_str(env.version.namespace());
    o.push_str(r#""><soap-env:Header>"#);
    let h = &env.header;
    if let Some(id) = &h.id {
        o.push_str(r#"<cwmp:ID soap-env:mustUnderstand="1">"#);
        escape(&mut o, id);
        o.push_str("</cwmp:ID>");
    }
    if let Some(hold) = h.hold_requests {
        o.push_str(r#"<cwmp:HoldRequests soap-env:mustUnderstand="1">"#);
        o.push_str(if hold { "1" } else { "0" });
        o.push_str("</cwmp:HoldRequests>");
    }
    if let Some(t) = h.session_timeout {
        o.push_str(r#"<cwmp:SessionTimeout soap-env:mustUnderstand="0">"#);
        o.push_str(&t.to_string());
        o.push_str("</cwmp:SessionTimeout>");
    }
    if let Some(v) = &h.supported_versions {
        o.push_str(r#"<cwmp:SupportedCWMPVersions soap-env:mustUnderstand="0">"#);
        escape(&mut o, v);
        o.push_str("</cwmp:SupportedCWMPVersions>");
    }
    if let Some(v) = &h.use_version {
        o.push_str(r#"<cwmp:UseCWMPVersion soap-env:mustUnderstand="1">"#);
        escape(&mut o, v);
        o.push_str("</cwmp:UseCWMPVersion>");
    }
    o.push_str("</soap-env:Header><soap-env:Body>");
    body(&mut o, &env.body);
    o.push_str("</soap-env:Body></soap-env:Envelope>");
    o
}

fn el(o: &mut String, name: &str, text: &str) {
    o.push('<');
    o.push_str(name);
    o.push('>');
    escape(o, text);
    o.push_str("</");
    o.push_str(name);
    o.push('>');
}

fn params(o: &mut String, list: &[ParameterValue]) {
    o.push_str(&format!(
        r#"<ParameterList soap-enc:arrayType="cwmp:ParameterValueStruct[{}]">"#,
        list.len()
    ));
    for p in list {
        o.push_str("<ParameterValueStruct>");
        el(o, "Name", &p.name);
        o.push_str(r#"<Value xsi:type=""#);
        escape(o, &p.xsi_type);
        o.push_str(r#"">"#);
        escape(o, &p.value);
        o.push_str("</Value></ParameterValueStruct>");
    }
    o.push_str("</ParameterList>");
}

fn strings(o: &mut String, name: &str, list: &[String]) {
    o.push_str(&format!(
        r#"<{name} soap-enc:arrayType="xsd:string[{}]">"#,
        list.len()
    ));
    for s in list {
        el(o, "string", s);
    }
    o.push_str(&format!("</{name}>"));
}

fn body(o: &mut String, b: &Body) {
    let name = b.name();
    if let Body::Empty = b {
        return;
    }
    if let Body::Fault(f) = b {
        o.push_str("<soap-env:Fault>");
        el(o, "faultcode", &f.faultcode);
        o.push_str("<faultstring>CWMP fault</faultstring><detail><cwmp:Fault>");
        el(o, "FaultCode", &f.code.to_string());
        el(o, "FaultString", &f.string);
        for s in &f.set_parameter_values_faults {
            o.push_str("<SetParameterValuesFault>");
            el(o, "ParameterName", &s.parameter_name);
            el(o, "FaultCode", &s.code.to_string());
            el(o, "FaultString", &s.string);
            o.push_str("</SetParameterValuesFault>");
        }
        o.push_str("</cwmp:Fault></detail></soap-env:Fault>");
        return;
    }
    o.push_str("<cwmp:");
    o.push_str(name);
    o.push('>');
    match b {
        Body::Empty | Body::Fault(_) => {}
        Body::Inform(i) => {
            let d = &i.device_id;
            o.push_str("<DeviceId>");
            el(o, "Manufacturer", &d.manufacturer);
            el(o, "OUI", &d.oui);
            el(o, "ProductClass", &d.product_class);
            el(o, "SerialNumber", &d.serial_number);
            o.push_str("</DeviceId>");
            o.push_str(&format!(
                r#"<Event soap-enc:arrayType="cwmp:EventStruct[{}]">"#,
                i.events.len()
            ));
            for e in &i.events {
                o.push_str("<EventStruct>");
                el(o, "EventCode", &e.code);
                el(o, "CommandKey", &e.command_key);
                o.push_str("</EventStruct>");
            }
            o.push_str("</Event>");
            el(o, "MaxEnvelopes", &i.max_envelopes.to_string());
            el(o, "CurrentTime", &i.current_time);
            el(o, "RetryCount", &i.retry_count.to_string());
            params(o, &i.parameters);
        }
        Body::InformResponse { max_envelopes } => el(o, "MaxEnvelopes", &max_envelopes.to_string()),
        Body::GetParameterValues { names } => strings(o, "ParameterNames", names),
        Body::GetParameterValuesResponse { parameters } => params(o, parameters),
        Body::SetParameterValues {
            parameters,
            parameter_key,
        } => {
            params(o, parameters);
            el(o, "ParameterKey", parameter_key);
        }
        Body::SetParameterValuesResponse { status } => el(o, "Status", &status.to_string()),
        Body::Reboot { command_key } => el(o, "CommandKey", command_key),
        Body::TransferComplete {
            command_key,
            fault,
            start_time,
            complete_time,
        } => {
            el(o, "CommandKey", command_key);
            o.push_str("<FaultStruct>");
            el(o, "FaultCode", &fault.code.to_string());
            el(o, "FaultString", &fault.string);
            o.push_str("</FaultStruct>");
            el(o, "StartTime", start_time);
            el(o, "CompleteTime", complete_time);
        }
        Body::GetRpcMethodsResponse { methods } => strings(o, "MethodList", methods),
        Body::RebootResponse | Body::TransferCompleteResponse | Body::GetRpcMethods => {}
    }
    o.push_str("</cwmp:");
    o.push_str(name);
    o.push('>');
}
