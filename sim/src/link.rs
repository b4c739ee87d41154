//! One agent's MQTT connection, MQTT 5 or 3.1.1, behind one small interface that applies the
//! TR-369 MQTT binding (§4.5): client id = Endpoint ID, the `usp-endpoint-id` user property and
//! Request Response Information on MQTT 5, Content Type `usp.msg` and Response Topic on every
//! MQTT 5 PUBLISH, the `/reply-to=` topic suffix on MQTT 3.1.1.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5;
use uspwatch_proto::mqtt;

/// Requests queued between the agent and its MQTT event loop. The agent never blocks on a
/// full channel: what does not fit waits in the [`Client`]'s own outbox.
const REQUEST_CAPACITY: usize = 64;
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// How to reach the broker.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) v5: bool,
    pub(crate) client_id: String,
    pub(crate) credentials: Option<(String, String)>,
}

/// The sending half.
pub(crate) struct Client {
    inner: ClientInner,
    outbox: VecDeque<(String, Bytes)>,
    reply_topic: String,
    /// DISCONNECT requested: sent once the outbox is empty.
    closing: bool,
    disconnect_queued: bool,
}

enum ClientInner {
    V5(v5::AsyncClient),
    V311(rumqttc::AsyncClient),
}

/// The receiving half: poll it continuously (it also writes what the [`Client`] queued).
pub(crate) enum Events {
    V5(Box<v5::EventLoop>),
    V311(Box<rumqttc::EventLoop>),
}

/// What the event loop reported.
#[derive(Debug)]
pub(crate) enum Ev {
    /// CONNACK. `ok` is false when the broker refused the connection.
    ConnAck {
        ok: bool,
        response_information: Option<String>,
        subscribe_topics: Vec<String>,
    },
    /// SUBACK; `ok` when every filter was granted.
    SubAck { ok: bool },
    Publish {
        topic: String,
        payload: Bytes,
        response_topic: Option<String>,
    },
    /// Our DISCONNECT was written: the connection is over.
    DisconnectSent,
    /// The broker sent DISCONNECT.
    DisconnectReceived,
    /// Anything else (acks, pings, outgoing packets).
    Other,
}

/// Opens a connection (lazily: nothing happens until [`Events::poll`]).
pub(crate) fn connect(ep: &Endpoint, reply_topic: &str) -> (Client, Events) {
    let (inner, events) = if ep.v5 {
        let mut o = v5::MqttOptions::new(ep.client_id.clone(), ep.host.clone(), ep.port);
        o.set_keep_alive(KEEP_ALIVE)
            .set_clean_start(true)
            .set_request_response_info(Some(1))
            .set_user_properties(vec![(
                mqtt::USER_PROPERTY_ENDPOINT_ID.to_string(),
                ep.client_id.clone(),
            )]);
        if let Some((u, p)) = &ep.credentials {
            o.set_credentials(u.clone(), p.clone());
        }
        let (c, e) = v5::AsyncClient::new(o, REQUEST_CAPACITY);
        (ClientInner::V5(c), Events::V5(Box::new(e)))
    } else {
        let mut o = rumqttc::MqttOptions::new(ep.client_id.clone(), ep.host.clone(), ep.port);
        o.set_keep_alive(KEEP_ALIVE).set_clean_session(true);
        if let Some((u, p)) = &ep.credentials {
            o.set_credentials(u.clone(), p.clone());
        }
        let (c, e) = rumqttc::AsyncClient::new(o, REQUEST_CAPACITY);
        (ClientInner::V311(c), Events::V311(Box::new(e)))
    };
    let client = Client {
        inner,
        outbox: VecDeque::new(),
        reply_topic: reply_topic.to_string(),
        closing: false,
        disconnect_queued: false,
    };
    (client, events)
}

impl Client {
    /// Sets the topic given as reply-to on every PUBLISH (the CONNACK may assign one).
    pub(crate) fn set_reply_topic(&mut self, t: &str) {
        self.reply_topic = t.to_string();
    }

    /// Subscribes (QoS 1) to the reply topic; MQTT 3.1.1 agents use `<topic>/#` so requests
    /// carrying a `/reply-to=` suffix match too.
    pub(crate) fn subscribe(&self, topics: &[String]) -> bool {
        match &self.inner {
            ClientInner::V5(c) => {
                let f = topics.iter().map(|t| {
                    v5::mqttbytes::v5::Filter::new(t.clone(), v5::mqttbytes::QoS::AtLeastOnce)
                });
                c.try_subscribe_many(f.collect::<Vec<_>>()).is_ok()
            }
            ClientInner::V311(c) => {
                let f = topics.iter().map(|t| {
                    rumqttc::SubscribeFilter::new(format!("{t}/#"), rumqttc::QoS::AtLeastOnce)
                });
                c.try_subscribe_many(f.collect::<Vec<_>>()).is_ok()
            }
        }
    }

    /// Queues a Record for `topic` (QoS 1).
    pub(crate) fn publish(&mut self, topic: String, payload: Bytes) {
        self.outbox.push_back((topic, payload));
        self.flush();
    }

    /// Hands queued Records to the event loop until its channel is full.
    pub(crate) fn flush(&mut self) {
        while let Some((topic, payload)) = self.outbox.front() {
            let sent = match &self.inner {
                ClientInner::V5(c) => {
                    let props = v5::mqttbytes::v5::PublishProperties {
                        content_type: Some(mqtt::CONTENT_TYPE.to_string()),
                        response_topic: Some(self.reply_topic.clone()),
                        ..Default::default()
                    };
                    c.try_publish_with_properties(
                        topic.clone(),
                        v5::mqttbytes::QoS::AtLeastOnce,
                        false,
                        payload.clone(),
                        props,
                    )
                    .is_ok()
                }
                ClientInner::V311(c) => c
                    .try_publish(
                        mqtt::with_reply_to(topic, &self.reply_topic),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        payload.to_vec(),
                    )
                    .is_ok(),
            };
            if !sent {
                return;
            }
            self.outbox.pop_front();
        }
        if self.closing && !self.disconnect_queued {
            self.disconnect_queued = match &self.inner {
                ClientInner::V5(c) => c.try_disconnect().is_ok(),
                ClientInner::V311(c) => c.try_disconnect().is_ok(),
            };
        }
    }

    /// Sends MQTT DISCONNECT after everything already queued.
    pub(crate) fn close(&mut self) {
        self.closing = true;
        self.flush();
    }
}

impl Events {
    /// The next event. Not cancellation-safe: keep the future alive until it completes.
    pub(crate) async fn poll(&mut self) -> Result<Ev, String> {
        match self {
            Events::V5(e) => {
                use v5::mqttbytes::v5::Packet;
                match e.poll().await.map_err(|e| e.to_string())? {
                    v5::Event::Incoming(Packet::ConnAck(c)) => {
                        let (response_information, user_properties) = match c.properties {
                            Some(p) => (p.response_information, p.user_properties),
                            None => (None, Vec::new()),
                        };
                        Ok(Ev::ConnAck {
                            ok: c.code == v5::mqttbytes::v5::ConnectReturnCode::Success,
                            response_information: response_information.filter(|r| !r.is_empty()),
                            subscribe_topics: user_properties
                                .into_iter()
                                .filter(|(k, _)| k == mqtt::USER_PROPERTY_SUBSCRIBE_TOPIC)
                                .map(|(_, v)| v)
                                .collect(),
                        })
                    }
                    v5::Event::Incoming(Packet::SubAck(s)) => Ok(Ev::SubAck {
                        ok: s.return_codes.iter().all(|c| {
                            matches!(c, v5::mqttbytes::v5::SubscribeReasonCode::Success(_))
                        }),
                    }),
                    v5::Event::Incoming(Packet::Publish(p)) => Ok(Ev::Publish {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload,
                        response_topic: p.properties.and_then(|p| p.response_topic),
                    }),
                    v5::Event::Incoming(Packet::Disconnect(_)) => Ok(Ev::DisconnectReceived),
                    v5::Event::Outgoing(rumqttc::Outgoing::Disconnect) => Ok(Ev::DisconnectSent),
                    _ => Ok(Ev::Other),
                }
            }
            Events::V311(e) => {
                use rumqttc::Packet;
                match e.poll().await.map_err(|e| e.to_string())? {
                    rumqttc::Event::Incoming(Packet::ConnAck(c)) => Ok(Ev::ConnAck {
                        ok: c.code == rumqttc::ConnectReturnCode::Success,
                        response_information: None,
                        subscribe_topics: Vec::new(),
                    }),
                    rumqttc::Event::Incoming(Packet::SubAck(s)) => Ok(Ev::SubAck {
                        ok: s
                            .return_codes
                            .iter()
                            .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
                    }),
                    rumqttc::Event::Incoming(Packet::Publish(p)) => Ok(Ev::Publish {
                        topic: p.topic,
                        payload: p.payload,
                        response_topic: None,
                    }),
                    rumqttc::Event::Incoming(Packet::Disconnect) => Ok(Ev::DisconnectReceived),
                    rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect) => {
                        Ok(Ev::DisconnectSent)
                    }
                    _ => Ok(Ev::Other),
                }
            }
        }
    }
}

/// The reply topic of a received PUBLISH: the MQTT 5 Response Topic, or the decoded MQTT 3.1.1
/// `/reply-to=` suffix (R-MQTT.25/26).
pub(crate) fn reply_of(topic: &str, response_topic: Option<String>) -> Option<String> {
    response_topic
        .filter(|t| !t.is_empty())
        .or_else(|| mqtt::split_reply_to(topic).ok().flatten().map(|(_, r)| r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_topic_from_property_or_suffix() {
        let t = "usp/agent/os::00256D-SIM000001";
        assert_eq!(
            reply_of(t, Some("usp/controller/c".into())).as_deref(),
            Some("usp/controller/c")
        );
        let suffixed = mqtt::with_reply_to(t, "usp/controller/self::uspwatch");
        assert_eq!(
            reply_of(&suffixed, None).as_deref(),
            Some("usp/controller/self::uspwatch")
        );
        assert_eq!(reply_of(t, None), None);
        assert_eq!(reply_of(t, Some(String::new())), None);
    }
}
