//! PUBLISH from a client: MQTT property rules, the ingress limit, the ACL, Record validation,
//! and the quarantine of whatever fails.

use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use rumqttd::protocol::{Packet, PubAckReason, Publish, PublishProperties};
use tracing::warn;
use uspwatch_proto::{QuarantineEvent, rfc3339_millis};

use super::{Connection, End, QUARANTINE_TOPIC, truncate};
use crate::acl::{self, Destination, UspPublish};
use crate::auth::Role;
use crate::metrics;
use crate::ratelimit::Verdict;
use crate::state::{Counters, now_ms};

impl Connection {
    /// `id`: QoS and packet id of a QoS 1 or 2 publish.
    pub(super) fn on_publish(
        &mut self,
        mut p: Publish,
        props: Option<PublishProperties>,
        id: Option<(u8, u16)>,
    ) -> Result<(), End> {
        if let Some(pp) = &props {
            if pp.topic_alias.is_some() || !pp.subscription_identifiers.is_empty() {
                return Err(End::ProtocolError);
            }
            // MQTT-3.3.2-14: a Response Topic is a topic name, never a filter; `$` topics are
            // the server's. Either is a protocol error, whatever the destination.
            if pp
                .response_topic
                .as_deref()
                .is_some_and(|t| t.is_empty() || t.contains(['+', '#']) || t.starts_with('$'))
            {
                warn!(endpoint_id = %self.identity.eid, "PUBLISH with a wildcard or $ Response Topic");
                return Err(End::ProtocolError);
            }
        }
        let Ok(topic) = std::str::from_utf8(&p.topic) else {
            return Err(End::ProtocolError);
        };
        let topic = topic.to_owned();
        let shared = self.shared.clone();
        let rate_limited = self.identity.role == Role::Agent
            && match self.bucket.lock().take(p.payload.len(), Instant::now()) {
                Verdict::Pass => false,
                Verdict::Refuse(report) => {
                    // One QuarantineEvent per device per second at most; every refused
                    // publish is counted.
                    if let Some(n) = report {
                        let e = uspwatch_proto::Error::RateLimited(format!(
                            "{n} publish(es) refused since the last report; limits: {} records/s, {} bytes/s",
                            shared.config.ingress_rate, shared.config.ingress_byte_rate
                        ));
                        self.quarantine(&topic, &p.payload, &e);
                    } else {
                        Self::count_rejected(uspwatch_proto::Reason::RateLimited, 1);
                        Counters::inc(&shared.counters.records_rejected);
                    }
                    true
                }
            };
        if rate_limited {
            self.refuse_ack(id, PubAckReason::QuotaExceeded);
            self.retarget(p);
            return Ok(());
        }
        match shared.acl.may_publish(&self.identity, &topic) {
            None => {
                Counters::inc(&shared.counters.acl_denied_publish);
                ::metrics::counter!(metrics::ACL_DENIED, "op" => "publish").increment(1);
                warn!(endpoint_id = %self.identity.eid, topic = %truncate(&topic), "publish refused by ACL");
                self.refuse_ack(id, PubAckReason::NotAuthorized);
                self.retarget(p);
            }
            Some(Destination::BulkData) => {
                Counters::inc(&shared.counters.bulk_data);
                ::metrics::counter!(metrics::BULK_DATA).increment(1);
                // The payload names no sender, so subscribers learn it from the connection's
                // bound Endpoint ID; a value the client set itself is dropped.
                let mut props = props.unwrap_or_default();
                props
                    .user_properties
                    .retain(|(k, _)| k != crate::BULK_DATA_PUBLISHER);
                props.user_properties.push((
                    crate::BULK_DATA_PUBLISHER.to_owned(),
                    self.identity.eid.clone(),
                ));
                self.to_router.push(Packet::Publish(p, Some(props)));
            }
            Some(Destination::Usp(side)) => {
                let to_local =
                    uspwatch_proto::mqtt::topic_endpoint(&topic, shared.acl.prefix(side))
                        .is_some_and(|eid| shared.is_local_endpoint(eid));
                let check = acl::check_record(
                    &shared.acl,
                    side,
                    &self.identity,
                    &UspPublish {
                        topic: &topic,
                        payload: &p.payload,
                        content_type: props.as_ref().and_then(|p| p.content_type.as_deref()),
                        response_topic: props.as_ref().and_then(|p| p.response_topic.as_deref()),
                        v311: !self.codec.is_v5(),
                        to_local,
                    },
                    &shared.limits,
                );
                match check {
                    Ok(decoded) => {
                        Counters::inc(&shared.counters.records_accepted);
                        let rt = decoded.record_type();
                        if rt == "no_session_context" {
                            self.accepted.increment(1);
                        } else {
                            ::metrics::counter!(metrics::RECORDS_ACCEPTED, "record_type" => rt)
                                .increment(1);
                        }
                        if !shared.config.retain_usp {
                            p.retain = false;
                        }
                        self.to_router.push(Packet::Publish(p, props));
                    }
                    Err(e) => {
                        self.quarantine(&topic, &p.payload, &e);
                        self.retarget(p);
                    }
                }
            }
        }
        Ok(())
    }

    fn count_rejected(reason: uspwatch_proto::Reason, n: u64) {
        ::metrics::counter!(metrics::RECORDS_REJECTED, "reason" => reason.as_str()).increment(n);
    }

    /// Counts a rejected publish and emits its QuarantineEvent.
    fn quarantine(&self, topic: &str, payload: &Bytes, e: &uspwatch_proto::Error) {
        let shared = &self.shared;
        let reason = e.reason();
        Counters::inc(&shared.counters.records_rejected);
        Self::count_rejected(reason, 1);
        warn!(endpoint_id = %self.identity.eid, reason = %reason, detail = %e, "rejected USP record");
        let cap = shared.config.quarantine_payload_cap.min(payload.len());
        let at_ms = now_ms();
        let _ = shared.quarantine.send(QuarantineEvent {
            endpoint_id: self.identity.eid.clone(),
            client_id: self.client_id.clone(),
            topic: truncate(topic),
            reason: reason.as_str().to_owned(),
            usp_err_code: reason.usp_err_code(),
            detail: e.to_string(),
            size: payload.len(),
            payload_b64: base64::engine::general_purpose::STANDARD
                .encode(payload.get(..cap).unwrap_or_default()),
            truncated: cap < payload.len(),
            at: rfc3339_millis(at_ms),
            at_ms,
        });
    }

    /// MQTT 5 QoS 1: the router's PUBACK for this packet id carries `reason` instead of
    /// success. (QoS 2 keeps a successful PUBREC: an error there would leave the router's
    /// QoS 2 state for the packet id waiting for a PUBREL that never comes.)
    fn refuse_ack(&mut self, id: Option<(u8, u16)>, reason: PubAckReason) {
        if let Some((1, pkid)) = id
            && self.codec.is_v5()
        {
            self.ack_overrides.insert(pkid, reason);
        }
    }

    /// Sends a publish to the router as an empty message on the quarantine topic: the router
    /// acknowledges it (PUBACK/PUBREC in order) and delivers it nowhere.
    pub(super) fn retarget(&mut self, mut p: Publish) {
        p.topic = Bytes::from_static(QUARANTINE_TOPIC.as_bytes());
        p.payload = Bytes::new();
        p.retain = false;
        self.to_router.push(Packet::Publish(p, None));
    }
}
