//! The connection's read path without a socket or a router, for the fuzz target in `fuzz/`.

use bytes::BytesMut;
use rumqttd::protocol::Packet;
use uspwatch_proto::Limits;

use crate::acl::{self, Acl, Destination, Identity, UspPublish};
use crate::auth::Role;
use crate::codec::Codec;
use crate::config::TopicsConfig;

/// Decodes every packet in `data` the way a connection does (the first byte picks the MQTT
/// version and a small or the default maximum packet size) and runs the checks a connection
/// applies to each decoded packet. Panics only on a bug.
pub fn read_path(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut codec = if mode & 1 == 0 {
        Codec::V4(rumqttd::protocol::v4::V4)
    } else {
        Codec::V5(rumqttd::protocol::v5::V5)
    };
    let max = if mode & 2 == 0 { 1024 } else { 1024 * 1024 };
    let acl = Acl::new(TopicsConfig {
        bulk_data_topics: vec!["bulk/+/report".into()],
        ..TopicsConfig::default()
    });
    let limits = Limits::default();
    let id = Identity {
        eid: "os::00256D-FUZZ".into(),
        role: if mode & 4 == 0 {
            Role::Agent
        } else {
            Role::Controller
        },
    };
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(packet)) = codec.read(&mut buf, max) {
        let Packet::Publish(p, props) = packet else {
            continue;
        };
        let Ok(topic) = std::str::from_utf8(&p.topic) else {
            continue;
        };
        let Some(Destination::Usp(side)) = acl.may_publish(&id, topic) else {
            continue;
        };
        let publish = UspPublish {
            topic,
            payload: &p.payload,
            content_type: props.as_ref().and_then(|p| p.content_type.as_deref()),
            response_topic: props.as_ref().and_then(|p| p.response_topic.as_deref()),
            v311: !codec.is_v5(),
            to_local: mode & 8 != 0,
        };
        if let Err(e) = acl::check_record(&acl, side, &id, &publish, &limits) {
            let _ = (e.reason().as_str(), e.to_string());
        }
    }
}
