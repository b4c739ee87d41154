//! The USP MQTT binding (TR-369 §4.5): content types and the MQTT 3.1.1 reply-to suffix.

use crate::error::{Error, Result};

/// Content Type a USP sender sets on MQTT 5 PUBLISH (R-MQTT.27).
pub const CONTENT_TYPE: &str = "usp.msg";
/// The other Content Type a receiver must accept (R-MQTT.27a).
pub const CONTENT_TYPE_ALT: &str = "application/vnd.bbf.usp.msg";
/// MQTT 5 user property carrying the sender's Endpoint ID in CONNECT (R-MQTT.13).
pub const USER_PROPERTY_ENDPOINT_ID: &str = "usp-endpoint-id";
/// CONNACK user property naming a topic the client should subscribe to (R-MQTT.44).
pub const USER_PROPERTY_SUBSCRIBE_TOPIC: &str = "subscribe-topic";

const REPLY_TO: &str = "/reply-to=";

/// Whether an MQTT 5 Content Type marks a USP Record.
pub fn is_usp_content_type(ct: &str) -> bool {
    ct == CONTENT_TYPE || ct == CONTENT_TYPE_ALT
}

/// Appends the MQTT 3.1.1 reply-to suffix: `<topic>/reply-to=<reply with "/" as "%2F">`
/// (R-MQTT.24).
pub fn with_reply_to(topic: &str, reply_topic: &str) -> String {
    let mut out = String::with_capacity(topic.len() + REPLY_TO.len() + reply_topic.len() + 16);
    out.push_str(topic);
    out.push_str(REPLY_TO);
    for c in reply_topic.chars() {
        if c == '/' {
            out.push_str("%2F");
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits an MQTT 3.1.1 topic into the destination topic and the decoded reply topic, taking
/// the text after the last `/reply-to=` (R-MQTT.25). `Ok(None)` when there is no suffix.
pub fn split_reply_to(topic: &str) -> Result<Option<(&str, String)>> {
    let Some(at) = topic.rfind(REPLY_TO) else {
        return Ok(None);
    };
    let (dest, rest) = (&topic[..at], &topic[at + REPLY_TO.len()..]);
    let reply = decode_slashes(rest);
    if dest.is_empty() || reply.is_empty() || reply.contains(['+', '#']) {
        return Err(Error::InvalidReplyTo(topic.chars().take(128).collect()));
    }
    Ok(Some((dest, reply)))
}

fn decode_slashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.len() >= 3 && tail[1..3].eq_ignore_ascii_case("2F") {
            out.push('/');
            rest = &tail[3..];
        } else {
            out.push('%');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Whether a reply route a sender names (MQTT 5 Response Topic, 3.1.1 `/reply-to=`, MQTTConnect
/// `subscribed_topic`) is the sender's own topic or a topic below it. Anything else would make
/// the receiver publish its answers, and every later request, to somebody else's topic.
/// Wildcards and `$` topics are never routes (MQTT-3.3.2-14).
pub fn is_own_reply_topic(reply_topic: &str, own_topic: &str) -> bool {
    if reply_topic.contains(['+', '#', '\0']) || reply_topic.starts_with('$') {
        return false;
    }
    match reply_topic.strip_prefix(own_topic) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The Endpoint ID addressed by a topic `<prefix>/<EID>` (ignoring a reply-to suffix), if the
/// topic has that prefix.
pub fn topic_endpoint<'a>(topic: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let rest = match rest.rfind(REPLY_TO) {
        Some(at) => &rest[..at],
        None => rest,
    };
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_to_round_trip() {
        let t = with_reply_to("usp/controller/self::c", "usp/agent/os::012345-obuspa-test");
        assert_eq!(
            t,
            "usp/controller/self::c/reply-to=usp%2Fagent%2Fos::012345-obuspa-test"
        );
        let (dest, reply) = split_reply_to(&t).unwrap().unwrap();
        assert_eq!(dest, "usp/controller/self::c");
        assert_eq!(reply, "usp/agent/os::012345-obuspa-test");
    }

    #[test]
    fn last_reply_to_wins_and_lowercase_escape_is_accepted() {
        let (dest, reply) = split_reply_to("a/reply-to=x/reply-to=b%2fc")
            .unwrap()
            .unwrap();
        assert_eq!(dest, "a/reply-to=x");
        assert_eq!(reply, "b/c");
    }

    #[test]
    fn bad_reply_to() {
        assert_eq!(split_reply_to("usp/controller/x").unwrap(), None);
        assert!(split_reply_to("a/reply-to=").is_err());
        assert!(split_reply_to("/reply-to=a").is_err());
        assert!(split_reply_to("a/reply-to=usp%2F#").is_err());
    }

    #[test]
    fn endpoint_of_topic() {
        assert_eq!(
            topic_endpoint("usp/agent/os::1-2", "usp/agent"),
            Some("os::1-2")
        );
        assert_eq!(
            topic_endpoint("usp/controller/self::c/reply-to=a%2Fb", "usp/controller"),
            Some("self::c")
        );
        assert_eq!(topic_endpoint("usp/agent/a/b", "usp/agent"), None);
        assert_eq!(topic_endpoint("usp/agentx/a", "usp/agent"), None);
        assert_eq!(topic_endpoint("usp/agent/", "usp/agent"), None);
    }

    #[test]
    fn only_the_senders_own_topic_is_a_reply_route() {
        let own = "usp/agent/os::00256D-A";
        for (t, ok) in [
            ("usp/agent/os::00256D-A", true),
            ("usp/agent/os::00256D-A/replies", true),
            ("usp/agent/os::00256D-AB", false),
            ("usp/agent/os::00256D-B", false),
            ("usp/controller/self::other", false),
            ("usp/agent/os::00256D-A/#", false),
            ("usp/agent/os::00256D-A/+", false),
            ("$SYS/usp/agent/os::00256D-A", false),
            ("usp/agent", false),
            ("", false),
        ] {
            assert_eq!(is_own_reply_topic(t, own), ok, "{t}");
        }
    }

    #[test]
    fn content_types() {
        assert!(is_usp_content_type("usp.msg"));
        assert!(is_usp_content_type("application/vnd.bbf.usp.msg"));
        assert!(!is_usp_content_type("application/json"));
    }
}
