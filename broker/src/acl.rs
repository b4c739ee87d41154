//! The per-endpoint topic ACL and the publish checks that run before anything is routed.
//! Pure functions: the connection task supplies the bound identity and the packet fields.

use bytes::Bytes;
use uspwatch_proto::mqtt::{
    is_own_reply_topic, is_usp_content_type, split_reply_to, topic_endpoint,
};
use uspwatch_proto::pb::usp_record::record::{PayloadSecurity, RecordType};
use uspwatch_proto::{Decoded, Error as UspError, Limits};

use crate::auth::Role;
use crate::config::TopicsConfig;

/// The identity a connection is bound to.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub eid: String,
    pub role: Role,
}

/// Topic rules for one broker.
#[derive(Debug, Clone)]
pub(crate) struct Acl {
    topics: TopicsConfig,
}

/// Where a publish may go and how its payload is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// A USP endpoint topic under this prefix: the payload must be a valid Record.
    Usp(Side),
    /// A configured Bulk Data topic: the payload passes untouched.
    BulkData,
}

/// Which prefix a USP topic is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Agent,
    Controller,
}

impl Acl {
    pub(crate) fn new(topics: TopicsConfig) -> Acl {
        Acl { topics }
    }

    /// The topic an endpoint is reached at.
    pub(crate) fn own_topic(&self, id: &Identity) -> String {
        let prefix = match id.role {
            Role::Agent => &self.topics.agent_prefix,
            Role::Controller => &self.topics.controller_prefix,
        };
        format!("{prefix}/{}", id.eid)
    }

    /// Whether `id` may subscribe to `filter`: only its own topic (and the `/#` below it that
    /// MQTT 3.1.1 reply-to topics need); controllers also to the configured Bulk Data
    /// filters. Everything else, including `#`, `usp/#`, `usp/agent/+` and `$share/...`, is
    /// refused.
    pub(crate) fn may_subscribe(&self, id: &Identity, filter: &str) -> bool {
        let own = self.own_topic(id);
        if filter == own || filter.strip_prefix(own.as_str()) == Some("/#") {
            return true;
        }
        id.role == Role::Controller && self.topics.bulk_data_topics.iter().any(|f| f == filter)
    }

    /// Where a publish from `id` to `topic` may go; `None` when the ACL refuses it. Agents
    /// publish to controller topics and Bulk Data topics, controllers to agent topics.
    pub(crate) fn may_publish(&self, id: &Identity, topic: &str) -> Option<Destination> {
        if topic.is_empty() || topic.contains(['+', '#']) || topic.starts_with('$') {
            return None;
        }
        let side = match id.role {
            Role::Agent => Side::Controller,
            Role::Controller => Side::Agent,
        };
        if self.destination_endpoint(side, topic).is_some() {
            return Some(Destination::Usp(side));
        }
        let bulk = self
            .topics
            .bulk_data_topics
            .iter()
            .any(|f| rumqttd::protocol::matches(topic, f));
        (bulk && id.role == Role::Agent).then_some(Destination::BulkData)
    }

    /// The Endpoint ID a USP topic on `side` addresses. Agent topics may have levels below
    /// `<prefix>/<EID>`: an agent may name such a topic as its reply route.
    pub(crate) fn destination_endpoint<'a>(&self, side: Side, topic: &'a str) -> Option<&'a str> {
        let prefix = self.prefix(side);
        topic_endpoint(topic, prefix).or_else(|| match side {
            Side::Controller => None,
            Side::Agent => topic
                .strip_prefix(prefix)?
                .strip_prefix('/')?
                .split('/')
                .next()
                .filter(|eid| !eid.is_empty()),
        })
    }

    pub(crate) fn prefix(&self, side: Side) -> &str {
        match side {
            Side::Agent => &self.topics.agent_prefix,
            Side::Controller => &self.topics.controller_prefix,
        }
    }
}

/// What the broker saw of one PUBLISH on a USP topic.
pub(crate) struct UspPublish<'a> {
    pub topic: &'a str,
    pub payload: &'a Bytes,
    pub content_type: Option<&'a str>,
    /// MQTT 5 Response Topic.
    pub response_topic: Option<&'a str>,
    /// MQTT 3.1.1: the reply-to must travel in the topic.
    pub v311: bool,
    /// The destination is an in-process endpoint (the built-in controller): it speaks plaintext
    /// Records without a session context only.
    pub to_local: bool,
}

/// Checks a Record published on a USP topic: MQTT binding rules first (cheap), then decode
/// and validation, then the Record's addressing against the connection and the topic.
///
/// Reply routes come from identity: whatever route the publish names (Response Topic,
/// `/reply-to=` suffix, MQTTConnect `subscribed_topic`) must be the sender's own topic or
/// below it, so no sender can make an endpoint answer into someone else's topic.
pub(crate) fn check_record(
    acl: &Acl,
    side: Side,
    id: &Identity,
    p: &UspPublish<'_>,
    limits: &Limits,
) -> Result<Decoded, UspError> {
    if let Some(ct) = p.content_type
        && !is_usp_content_type(ct)
    {
        return Err(UspError::WrongContentType(ct.chars().take(128).collect()));
    }
    let own = acl.own_topic(id);
    let suffix = split_reply_to(p.topic)?;
    if p.v311 && suffix.is_none() {
        return Err(UspError::MissingReplyTo(
            p.topic.chars().take(128).collect(),
        ));
    }
    for reply in [p.response_topic, suffix.as_ref().map(|(_, r)| r.as_str())]
        .into_iter()
        .flatten()
    {
        foreign_reply_to(reply, &own)?;
    }
    let decoded = uspwatch_proto::validate(p.payload, limits)?;
    if decoded.record.from_id != id.eid {
        return Err(UspError::FromIdMismatch {
            claimed: decoded.record.from_id.chars().take(128).collect(),
            bound: id.eid.clone(),
        });
    }
    if let Some(RecordType::MqttConnect(c)) = &decoded.record.record_type {
        foreign_reply_to(&c.subscribed_topic, &own)?;
    }
    let dest = acl.destination_endpoint(side, p.topic).unwrap_or_default();
    if decoded.record.to_id != dest {
        return Err(UspError::ToIdMismatch {
            to_id: decoded.record.to_id.chars().take(128).collect(),
            topic_endpoint: dest.to_owned(),
        });
    }
    if p.to_local {
        if decoded.record.payload_security == PayloadSecurity::Tls12 as i32 {
            return Err(UspError::SecureSessionNotSupported);
        }
        if matches!(
            decoded.record.record_type,
            Some(RecordType::SessionContext(_))
        ) {
            return Err(UspError::SessionContextNotSupported);
        }
    }
    Ok(decoded)
}

fn foreign_reply_to(reply: &str, own: &str) -> Result<(), UspError> {
    if is_own_reply_topic(reply, own) {
        Ok(())
    } else {
        Err(UspError::ForeignReplyTo {
            reply_to: reply.chars().take(128).collect(),
            own: own.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uspwatch_proto::{Message, Reason, builder, wrap};

    fn agent(eid: &str) -> Identity {
        Identity {
            eid: eid.into(),
            role: Role::Agent,
        }
    }

    fn acl() -> Acl {
        Acl::new(TopicsConfig {
            bulk_data_topics: vec!["bulk/+/report".into()],
            ..TopicsConfig::default()
        })
    }

    #[test]
    fn subscription_matrix() {
        let a = agent("os::00256D-A");
        let c = Identity {
            eid: "self::ctl".into(),
            role: Role::Controller,
        };
        let acl = acl();
        for (id, filter, ok) in [
            (&a, "usp/agent/os::00256D-A", true),
            (&a, "usp/agent/os::00256D-A/#", true),
            (&a, "usp/agent/os::00256D-B", false),
            (&a, "usp/agent/os::00256D-A/+", false),
            (&a, "usp/agent/+", false),
            (&a, "usp/#", false),
            (&a, "#", false),
            (&a, "$share/g/usp/agent/os::00256D-A", false),
            (&a, "usp/controller/self::ctl", false),
            (&a, "bulk/+/report", false),
            (&c, "usp/controller/self::ctl", true),
            (&c, "usp/controller/self::ctl/#", true),
            (&c, "usp/controller/+", false),
            (&c, "usp/agent/+", false),
            (&c, "bulk/+/report", true),
        ] {
            assert_eq!(acl.may_subscribe(id, filter), ok, "{} {filter}", id.eid);
        }
    }

    #[test]
    fn publish_matrix() {
        let a = agent("os::00256D-A");
        let c = Identity {
            eid: "self::ctl".into(),
            role: Role::Controller,
        };
        let acl = acl();
        let usp_c = Some(Destination::Usp(Side::Controller));
        assert_eq!(acl.may_publish(&a, "usp/controller/self::ctl"), usp_c);
        assert_eq!(
            acl.may_publish(&a, "usp/controller/self::ctl/reply-to=usp%2Fagent%2Fx"),
            usp_c
        );
        assert_eq!(acl.may_publish(&a, "usp/agent/os::00256D-B"), None);
        assert_eq!(acl.may_publish(&a, "usp/agent/os::00256D-A"), None);
        assert_eq!(acl.may_publish(&a, "other/topic"), None);
        assert_eq!(
            acl.may_publish(&a, "bulk/x/report"),
            Some(Destination::BulkData)
        );
        assert_eq!(acl.may_publish(&c, "bulk/x/report"), None);
        assert_eq!(
            acl.may_publish(&c, "usp/agent/os::00256D-B"),
            Some(Destination::Usp(Side::Agent))
        );
        assert_eq!(acl.may_publish(&c, "usp/controller/self::other"), None);
        assert_eq!(
            acl.may_publish(&c, "usp/agent/os::00256D-B/replies"),
            Some(Destination::Usp(Side::Agent))
        );
        assert_eq!(acl.may_publish(&c, "usp/agent//x"), None);
        assert_eq!(acl.may_publish(&a, "usp/controller/self::ctl/x"), None);
    }

    #[test]
    fn record_checks_give_the_right_reason() {
        let acl = acl();
        let msg = builder::value_change("m1", "s", true, "Device.X", "1");
        let good = Bytes::from(wrap(&msg, "os::00256D-A", "self::ctl").encode_to_vec());
        let spoofed = Bytes::from(wrap(&msg, "os::00256D-B", "self::ctl").encode_to_vec());
        let misaddressed = Bytes::from(wrap(&msg, "os::00256D-A", "self::other").encode_to_vec());
        let junk = Bytes::from_static(b"\xff\xff\xff");
        let limits = Limits::default();
        let check = |topic: &str, payload: &Bytes, ct: Option<&str>, v311: bool| {
            let p = UspPublish {
                topic,
                payload,
                content_type: ct,
                response_topic: None,
                v311,
                to_local: false,
            };
            check_record(&acl, Side::Controller, &agent("os::00256D-A"), &p, &limits)
                .map_err(|e| e.reason())
        };
        let t = "usp/controller/self::ctl";
        let t311 = "usp/controller/self::ctl/reply-to=usp%2Fagent%2Fos::00256D-A";
        assert!(check(t, &good, Some("usp.msg"), false).is_ok());
        assert!(check(t, &good, None, false).is_ok());
        assert!(check(t311, &good, None, true).is_ok());
        assert_eq!(
            check(t, &good, None, true).unwrap_err(),
            Reason::MissingReplyTo
        );
        assert_eq!(
            check(t, &good, Some("text/plain"), false).unwrap_err(),
            Reason::WrongContentType
        );
        assert_eq!(
            check(t, &spoofed, None, false).unwrap_err(),
            Reason::FromIdMismatch
        );
        assert_eq!(
            check(t, &misaddressed, None, false).unwrap_err(),
            Reason::ToIdMismatch
        );
        assert_eq!(
            check(t, &junk, None, false).unwrap_err(),
            Reason::Undecodable
        );
    }
}
