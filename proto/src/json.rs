//! Serde helpers used by the generated protobuf types: bytes as base64, enums by name.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serializer;

/// Serialises bytes as standard base64.
pub fn base64<S: Serializer>(b: &impl AsRef<[u8]>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(b.as_ref()))
}

/// Serialises a list of byte strings as a list of base64 strings.
pub fn base64_list<S: Serializer, B: AsRef<[u8]>>(v: &[B], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|b| STANDARD.encode(b.as_ref())))
}

/// Enum fields (stored as `i32` by prost) serialised by their protobuf name, or by number when
/// the value is not one the schema knows.
pub mod enums {
    use super::Serializer;
    use crate::pb::usp::get_supported_dm_resp as dm;
    use crate::pb::usp::header::MsgType;
    use crate::pb::usp_record::{
        mqtt_connect_record::MqttVersion, record::PayloadSecurity,
        session_context_record::PayloadSarState, stomp_connect_record::StompVersion,
    };

    macro_rules! by_name {
        ($($name:ident => $ty:ty),* $(,)?) => {$(
            #[doc = concat!("Serialises an `i32` as a `", stringify!($ty), "` name.")]
            pub fn $name<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
                match <$ty>::try_from(*v) {
                    Ok(e) => s.serialize_str(e.as_str_name()),
                    Err(_) => s.serialize_i32(*v),
                }
            }
        )*};
    }

    by_name! {
        payload_security => PayloadSecurity,
        sar_state => PayloadSarState,
        mqtt_version => MqttVersion,
        stomp_version => StompVersion,
        msg_type => MsgType,
        obj_access => dm::ObjAccessType,
        param_access => dm::ParamAccessType,
        param_value_type => dm::ParamValueType,
        value_change_type => dm::ValueChangeType,
        cmd_type => dm::CmdType,
    }
}
