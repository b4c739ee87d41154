//! [`Command`]: a request to an Agent, in a form rules, the HTTP API and Kafka command topics
//! can write as JSON. [`Command::to_msg`] turns it into the USP Msg.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::builder::{self, ObjectSettings};
use crate::error::{Error, Result};
use crate::pb::usp::Msg;

/// Parameters of one object in a Set or Add (all marked required).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectParams {
    pub obj_path: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// A request a Controller sends to an Agent.
///
/// JSON form: `{"type": "operate", "command": "Device.IP.Diagnostics.IPPing()", "args": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    Get {
        paths: Vec<String>,
        #[serde(default)]
        max_depth: u32,
    },
    Set {
        #[serde(default)]
        allow_partial: bool,
        objects: Vec<ObjectParams>,
    },
    Add {
        #[serde(default)]
        allow_partial: bool,
        objects: Vec<ObjectParams>,
    },
    Delete {
        #[serde(default)]
        allow_partial: bool,
        paths: Vec<String>,
    },
    Operate {
        command: String,
        #[serde(default)]
        command_key: String,
        #[serde(default)]
        args: BTreeMap<String, String>,
        #[serde(default = "yes")]
        send_resp: bool,
    },
    GetSupportedDm {
        paths: Vec<String>,
        #[serde(default)]
        first_level_only: bool,
    },
    GetInstances {
        paths: Vec<String>,
        #[serde(default)]
        first_level_only: bool,
    },
    GetSupportedProtocol,
}

fn yes() -> bool {
    true
}

impl Command {
    /// The snake_case kind (a bounded metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Get { .. } => "get",
            Command::Set { .. } => "set",
            Command::Add { .. } => "add",
            Command::Delete { .. } => "delete",
            Command::Operate { .. } => "operate",
            Command::GetSupportedDm { .. } => "get_supported_dm",
            Command::GetInstances { .. } => "get_instances",
            Command::GetSupportedProtocol => "get_supported_protocol",
        }
    }

    /// Checks that the command names at least one path and that paths look like TR-181 paths.
    pub fn validate(&self) -> Result<()> {
        let bad = |s: &str| Err(Error::InvalidCommand(s.to_string()));
        let check_paths = |paths: &mut dyn Iterator<Item = &String>| -> Result<()> {
            let mut any = false;
            for p in paths {
                any = true;
                if !p.starts_with("Device.") || p.len() > 1024 {
                    return bad("paths must start with \"Device.\" and be at most 1024 bytes");
                }
            }
            if any { Ok(()) } else { bad("no path given") }
        };
        match self {
            Command::Get { paths, .. }
            | Command::Delete { paths, .. }
            | Command::GetSupportedDm { paths, .. }
            | Command::GetInstances { paths, .. } => check_paths(&mut paths.iter()),
            Command::Set { objects, .. } | Command::Add { objects, .. } => {
                check_paths(&mut objects.iter().map(|o| &o.obj_path))
            }
            Command::Operate { command, .. } => {
                if !command.ends_with(')') {
                    return bad("an Operate command ends with \"()\"");
                }
                check_paths(&mut std::iter::once(command))
            }
            Command::GetSupportedProtocol => Ok(()),
        }
    }

    /// Builds the USP Msg for this command.
    pub fn to_msg(&self, msg_id: &str) -> Msg {
        let objs = |objects: &[ObjectParams]| -> Vec<ObjectSettings> {
            objects
                .iter()
                .map(|o| ObjectSettings {
                    obj_path: o.obj_path.clone(),
                    params: o
                        .params
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone(), true))
                        .collect(),
                })
                .collect()
        };
        match self {
            Command::Get { paths, max_depth } => builder::get(msg_id, paths, *max_depth),
            Command::Set {
                allow_partial,
                objects,
            } => builder::set(msg_id, *allow_partial, &objs(objects)),
            Command::Add {
                allow_partial,
                objects,
            } => builder::add(msg_id, *allow_partial, &objs(objects)),
            Command::Delete {
                allow_partial,
                paths,
            } => builder::delete(msg_id, *allow_partial, paths),
            Command::Operate {
                command,
                command_key,
                args,
                send_resp,
            } => builder::operate(msg_id, command, command_key, *send_resp, args.clone()),
            Command::GetSupportedDm {
                paths,
                first_level_only,
            } => builder::get_supported_dm(msg_id, paths, *first_level_only),
            Command::GetInstances {
                paths,
                first_level_only,
            } => builder::get_instances(msg_id, paths, *first_level_only),
            Command::GetSupportedProtocol => {
                builder::get_supported_protocol(msg_id, crate::SUPPORTED_PROTOCOL_VERSIONS)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form() {
        let c: Command = serde_json::from_str(
            r#"{"type":"operate","command":"Device.IP.Diagnostics.IPPing()","args":{"Host":"x"}}"#,
        )
        .unwrap();
        assert_eq!(c.kind(), "operate");
        c.validate().unwrap();
        crate::validate_msg(&c.to_msg("m")).unwrap();
        assert!(serde_json::from_str::<Command>(r#"{"type":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"type":"get","paths":[],"x":1}"#).is_err());
        let empty = Command::Get {
            paths: vec![],
            max_depth: 0,
        };
        assert!(empty.validate().is_err());
    }
}
