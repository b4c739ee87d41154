//! SUBSCRIBE and UNSUBSCRIBE: only the filters the ACL grants reach the router.

use rumqttd::protocol::{
    Filter, Packet, SubAck, Subscribe, SubscribeProperties, SubscribeReasonCode, UnsubAck,
    UnsubAckReason, Unsubscribe,
};
use tracing::debug;

use super::{Connection, End, truncate};
use crate::metrics;
use crate::state::Counters;

impl Connection {
    pub(super) fn on_subscribe(&mut self, s: Subscribe, props: Option<SubscribeProperties>) {
        let refused = if self.codec.is_v5() {
            SubscribeReasonCode::NotAuthorized
        } else {
            SubscribeReasonCode::Failure
        };
        let mut slots = Vec::with_capacity(s.filters.len());
        let mut allowed: Vec<Filter> = Vec::new();
        for f in s.filters {
            if rumqttd::protocol::valid_filter(&f.path)
                && self.shared.acl.may_subscribe(&self.identity, &f.path)
            {
                slots.push(None);
                allowed.push(f);
            } else {
                Counters::inc(&self.shared.counters.acl_denied_subscribe);
                ::metrics::counter!(metrics::ACL_DENIED, "op" => "subscribe").increment(1);
                debug!(endpoint_id = %self.identity.eid, filter = %truncate(&f.path), "subscription refused by ACL");
                slots.push(Some(refused));
            }
        }
        if allowed.is_empty() {
            let codes = slots.into_iter().map(|s| s.unwrap_or(refused)).collect();
            self.codec.write(
                Packet::SubAck(
                    SubAck {
                        pkid: s.pkid,
                        return_codes: codes,
                    },
                    None,
                ),
                &mut self.wbuf,
            );
            return;
        }
        if slots.iter().any(Option::is_some) {
            self.pending_subacks.insert(s.pkid, slots);
        }
        self.to_router.push(Packet::Subscribe(
            Subscribe {
                pkid: s.pkid,
                filters: allowed,
            },
            props,
        ));
    }

    /// rumqttd answers UNSUBSCRIBE only for filters it holds, one UNSUBACK per filter; we
    /// answer once, ourselves, and drop the router's. Filters the ACL would never have granted
    /// cannot be held, so they are answered "no subscription existed" without asking.
    pub(super) fn on_unsubscribe(&mut self, u: Unsubscribe) -> Result<(), End> {
        // MQTT-3.10.3-2: at least one filter.
        if u.filters.is_empty() {
            return Err(End::ProtocolError);
        }
        let mut reasons = Vec::with_capacity(u.filters.len());
        let mut own = Vec::new();
        for f in u.filters {
            if self.shared.acl.may_subscribe(&self.identity, &f) {
                reasons.push(UnsubAckReason::Success);
                own.push(f);
            } else {
                reasons.push(UnsubAckReason::NoSubscriptionExisted);
            }
        }
        if !own.is_empty() {
            self.to_router.push(Packet::Unsubscribe(
                Unsubscribe {
                    pkid: u.pkid,
                    filters: own,
                },
                None,
            ));
        }
        self.codec.write(
            Packet::UnsubAck(
                UnsubAck {
                    pkid: u.pkid,
                    reasons,
                },
                None,
            ),
            &mut self.wbuf,
        );
        Ok(())
    }
}
