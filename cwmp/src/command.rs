//! A uspwatch [`Command`] as the CWMP RPC that carries it out.
//!
//! | Command | RPC |
//! |---|---|
//! | `get` | GetParameterValues (paths as given; a partial path ends in `.`) |
//! | `set` | SetParameterValues (`obj_path` + param name), `ParameterKey` = the command key |
//! | `operate` `…Reboot()` | Reboot with the command key |
//! | `operate` `Device.IP.Diagnostics.IPPing()` | SetParameterValues of `Device.IP.Diagnostics.IPPing.{args}` and `DiagnosticsState = Requested` (TR-098: `InternetGatewayDevice.IPPingDiagnostics.`); the result arrives later as `8 DIAGNOSTICS COMPLETE` |
//! | `operate` `Device.SelfTestDiagnostics()` | SetParameterValues `Device.SelfTestDiagnostics.DiagnosticsState = Requested` |
//!
//! Anything else has no CWMP equivalent here and is refused before it is queued.

use uspwatch_proto::Command;

use crate::error::{Error, Result};
use crate::soap::{Body, ParameterValue};

/// The RPC for `command`; `key` becomes its CommandKey or ParameterKey (at most 32 characters).
pub fn rpc_for(command: &Command, key: &str) -> Result<Body> {
    let key: String = key.chars().take(32).collect();
    match command {
        Command::Get { paths, .. } => Ok(Body::GetParameterValues {
            names: paths.clone(),
        }),
        Command::Set { objects, .. } => {
            let mut parameters = Vec::new();
            for o in objects {
                let base = if o.obj_path.ends_with('.') {
                    o.obj_path.clone()
                } else {
                    format!("{}.", o.obj_path)
                };
                for (name, value) in &o.params {
                    parameters.push(typed(format!("{base}{name}"), value));
                }
            }
            Ok(Body::SetParameterValues {
                parameters,
                parameter_key: key,
            })
        }
        Command::Operate { command, args, .. } => operate(command, args, key),
        other => Err(Error::UnsupportedMethod(format!(
            "{} has no CWMP equivalent",
            other.kind()
        ))),
    }
}

fn operate(
    command: &str,
    args: &std::collections::BTreeMap<String, String>,
    key: String,
) -> Result<Body> {
    let diag = |object: &str| {
        let mut parameters: Vec<ParameterValue> = args
            .iter()
            .map(|(k, v)| typed(format!("{object}{k}"), v))
            .collect();
        parameters.push(typed(format!("{object}DiagnosticsState"), "Requested"));
        Body::SetParameterValues {
            parameters,
            parameter_key: key.clone(),
        }
    };
    match command {
        "Device.Reboot()" | "InternetGatewayDevice.Reboot()" => Ok(Body::Reboot {
            command_key: key.clone(),
        }),
        "Device.IP.Diagnostics.IPPing()" => Ok(diag("Device.IP.Diagnostics.IPPing.")),
        "InternetGatewayDevice.IPPingDiagnostics()" => {
            Ok(diag("InternetGatewayDevice.IPPingDiagnostics."))
        }
        "Device.SelfTestDiagnostics()" => Ok(diag("Device.SelfTestDiagnostics.")),
        other => Err(Error::UnsupportedMethod(format!(
            "operate {:?} has no CWMP equivalent",
            other.chars().take(80).collect::<String>()
        ))),
    }
}

/// A value with the `xsi:type` its text suggests: CPEs check the type of what is set, and a
/// Command carries strings only.
fn typed(name: String, value: &str) -> ParameterValue {
    let xsi_type = if value == "true" || value == "false" {
        "xsd:boolean"
    } else if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) && value.len() < 10 {
        "xsd:unsignedInt"
    } else if value.len() > 1
        && value.len() < 11
        && value.starts_with('-')
        && value[1..].bytes().all(|b| b.is_ascii_digit())
    {
        "xsd:int"
    } else {
        "xsd:string"
    };
    ParameterValue {
        name,
        value: value.to_string(),
        xsi_type: xsi_type.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use uspwatch_proto::ObjectParams;

    #[test]
    fn set_names_and_types() {
        let c = Command::Set {
            allow_partial: false,
            objects: vec![ObjectParams {
                obj_path: "Device.WiFi.Radio.1.".into(),
                params: BTreeMap::from([
                    ("Channel".into(), "6".into()),
                    ("Enable".into(), "true".into()),
                    ("X_Offset".into(), "-3".into()),
                    ("Name".into(), "lab".into()),
                ]),
            }],
        };
        let Body::SetParameterValues {
            parameters,
            parameter_key,
        } = rpc_for(&c, "k1").unwrap()
        else {
            panic!()
        };
        assert_eq!(parameter_key, "k1");
        let got: Vec<(&str, &str)> = parameters
            .iter()
            .map(|p| (p.name.as_str(), p.xsi_type.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("Device.WiFi.Radio.1.Channel", "xsd:unsignedInt"),
                ("Device.WiFi.Radio.1.Enable", "xsd:boolean"),
                ("Device.WiFi.Radio.1.Name", "xsd:string"),
                ("Device.WiFi.Radio.1.X_Offset", "xsd:int"),
            ]
        );
    }

    #[test]
    fn operate_maps_reboot_and_diagnostics() {
        let op = |command: &str, args: &[(&str, &str)]| Command::Operate {
            command: command.into(),
            command_key: String::new(),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            send_resp: true,
        };
        assert_eq!(
            rpc_for(&op("Device.Reboot()", &[]), "rb").unwrap(),
            Body::Reboot {
                command_key: "rb".into()
            }
        );
        let Body::SetParameterValues { parameters, .. } = rpc_for(
            &op("Device.IP.Diagnostics.IPPing()", &[("Host", "192.0.2.1")]),
            "p",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(parameters[0].name, "Device.IP.Diagnostics.IPPing.Host");
        assert_eq!(
            parameters[1].name,
            "Device.IP.Diagnostics.IPPing.DiagnosticsState"
        );
        assert_eq!(parameters[1].value, "Requested");
        assert!(matches!(
            rpc_for(&op("Device.FactoryReset()", &[]), ""),
            Err(Error::UnsupportedMethod(_))
        ));
        assert!(rpc_for(&Command::GetSupportedProtocol, "").is_err());
        let long = "k".repeat(40);
        let Body::Reboot { command_key } = rpc_for(&op("Device.Reboot()", &[]), &long).unwrap()
        else {
            panic!()
        };
        assert_eq!(command_key.len(), 32);
    }
}
