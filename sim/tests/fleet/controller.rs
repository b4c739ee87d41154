//! A minimal USP Controller over MQTT 5 for the tests: it records every Record sent to
//! `usp/controller/#`, answers Notifies (unless told not to) and sends requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::watch;
use tokio::time::Instant;
use uspwatch_proto::pb::usp::{self, Msg, body, request, response};
use uspwatch_proto::pb::usp_record::{Record, record::RecordType};
use uspwatch_proto::{Limits, Message, builder, mqtt, validate, wrap};

pub const EID: &str = "self::uspwatch";
const TOPIC: &str = "usp/controller/self::uspwatch";

/// One Record received from an agent.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub from: String,
    /// MQTT 5 Response Topic, or the decoded 3.1.1 `/reply-to=` suffix.
    pub reply: Option<String>,
    pub content_type: Option<String>,
    /// Arrived over MQTT 5 (it had a Response Topic property).
    pub v5: bool,
    pub record: Record,
    pub msg: Option<Msg>,
    pub at: Instant,
}

impl Received {
    pub fn notify(&self) -> Option<(&str, &usp::Notify)> {
        let m = self.msg.as_ref()?;
        match m.body.as_ref()?.msg_body.as_ref()? {
            body::MsgBody::Request(usp::Request {
                req_type: Some(request::ReqType::Notify(n)),
            }) => Some((m.header.as_ref()?.msg_id.as_str(), n)),
            _ => None,
        }
    }

    pub fn event(&self, name: &str) -> Option<&usp::notify::Event> {
        match &self.notify()?.1.notification {
            Some(usp::notify::Notification::Event(e)) if e.event_name == name => Some(e),
            _ => None,
        }
    }

    pub fn value(&self, path: &str) -> Option<&str> {
        match &self.notify()?.1.notification {
            Some(usp::notify::Notification::ValueChange(v)) if v.param_path == path => {
                Some(v.param_value.as_str())
            }
            _ => None,
        }
    }

    pub fn is_mqtt_connect(&self) -> bool {
        matches!(self.record.record_type, Some(RecordType::MqttConnect(_)))
    }

    pub fn is_disconnect(&self) -> bool {
        matches!(self.record.record_type, Some(RecordType::Disconnect(_)))
    }

    /// A response (or Error) to `msg_id`.
    pub fn answer_to(&self, msg_id: &str) -> Option<&body::MsgBody> {
        let m = self.msg.as_ref()?;
        let b = m.body.as_ref()?.msg_body.as_ref()?;
        let is_answer = matches!(b, body::MsgBody::Response(_) | body::MsgBody::Error(_));
        (is_answer && m.header.as_ref()?.msg_id == msg_id).then_some(b)
    }
}

pub struct Controller {
    client: AsyncClient,
    log: Arc<Mutex<Vec<Received>>>,
    changed: watch::Receiver<u64>,
    /// Answer `send_resp=true` Notifies with a NotifyResp.
    pub auto_ack: Arc<AtomicBool>,
    /// Agent EID → speaks MQTT 5, learnt from how its Records arrive.
    versions: Arc<Mutex<HashMap<String, bool>>>,
    seq: AtomicU64,
}

impl Controller {
    pub async fn start(broker: SocketAddr) -> Controller {
        let mut o = MqttOptions::new(EID, broker.ip().to_string(), broker.port());
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(o, 10_000);
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let versions: Arc<Mutex<HashMap<String, bool>>> = Arc::default();
        let auto_ack = Arc::new(AtomicBool::new(true));
        let (tx, changed) = watch::channel(0u64);
        // `<topic>/#` also matches `<topic>` itself, where MQTT 5 agents publish.
        client
            .subscribe(format!("{TOPIC}/#"), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let (l, v, a, c) = (
            log.clone(),
            versions.clone(),
            auto_ack.clone(),
            client.clone(),
        );
        tokio::spawn(async move {
            let mut subacks = 0;
            loop {
                let ev = match events.poll().await {
                    Ok(ev) => ev,
                    Err(e) => {
                        eprintln!("test controller connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                match ev {
                    Event::Incoming(Packet::SubAck(_)) => {
                        subacks += 1;
                        if subacks == 1 {
                            tx.send_modify(|n| *n += 1);
                        }
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        let props = p.properties.unwrap_or_default();
                        let v5 = props.response_topic.is_some();
                        let reply = props.response_topic.clone().or_else(|| {
                            mqtt::split_reply_to(&topic).ok().flatten().map(|(_, r)| r)
                        });
                        let Ok(d) = validate(&p.payload, &Limits::default()) else {
                            eprintln!("test controller: invalid record on {topic}");
                            continue;
                        };
                        let from = d.record.from_id.clone();
                        v.lock().insert(from.clone(), v5);
                        let r = Received {
                            topic,
                            from: from.clone(),
                            reply: reply.clone(),
                            content_type: props.content_type.clone(),
                            v5,
                            record: d.record.clone(),
                            msg: d.msg().cloned(),
                            at: Instant::now(),
                        };
                        if a.load(Ordering::SeqCst)
                            && let Some((id, n)) = r.notify()
                            && n.send_resp
                            && let Some(reply) = &reply
                        {
                            let resp = builder::notify_resp(id, &n.subscription_id);
                            publish(&c, &from, v5, reply, &resp);
                        }
                        l.lock().push(r);
                        tx.send_modify(|n| *n += 1);
                    }
                    _ => {}
                }
            }
        });
        let c = Controller {
            client,
            log,
            changed,
            auto_ack,
            versions,
            seq: AtomicU64::new(0),
        };
        c.wait_for(Duration::from_secs(10), |_| {
            (*c.changed.borrow() > 0).then_some(())
        })
        .await;
        c
    }

    pub fn log(&self) -> Vec<Received> {
        self.log.lock().clone()
    }

    pub fn from(&self, eid: &str) -> Vec<Received> {
        self.log
            .lock()
            .iter()
            .filter(|r| r.from == eid)
            .cloned()
            .collect()
    }

    /// Waits until `f` over the log returns Some; panics after `timeout`.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&[Received]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut rx = self.changed.clone();
        loop {
            rx.borrow_and_update();
            if let Some(v) = f(&self.log.lock()) {
                return v;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!("condition not met within {timeout:?}"),
            }
        }
    }

    /// Whether `f` stays false for `d` (for "this must not happen" checks).
    pub async fn stays_false(&self, d: Duration, mut f: impl FnMut(&[Received]) -> bool) -> bool {
        let deadline = Instant::now() + d;
        let mut rx = self.changed.clone();
        loop {
            rx.borrow_and_update();
            if f(&self.log.lock()) {
                return false;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return true;
            }
        }
    }

    pub fn next_id(&self) -> String {
        format!("c-{}", self.seq.fetch_add(1, Ordering::SeqCst))
    }

    /// Sends a request to an agent (its MQTT version must be known from a Record it sent).
    pub fn send(&self, eid: &str, msg: &Msg) {
        let v5 = self
            .versions
            .lock()
            .get(eid)
            .copied()
            .expect("agent seen before");
        publish(&self.client, eid, v5, &format!("usp/agent/{eid}"), msg);
    }

    /// Publishes raw bytes to an agent.
    pub fn send_raw(&self, eid: &str, payload: &'static [u8]) {
        let v5 = self
            .versions
            .lock()
            .get(eid)
            .copied()
            .expect("agent seen before");
        let topic = format!("usp/agent/{eid}");
        // Stock rumqttd cannot forward a PUBLISH with MQTT 5 properties to a 3.1.1 subscriber
        // (its v4 writer panics), so 3.1.1 agents get a property-less PUBLISH.
        let r = if v5 {
            let props = PublishProperties {
                content_type: Some(mqtt::CONTENT_TYPE.into()),
                response_topic: Some(TOPIC.into()),
                ..Default::default()
            };
            self.client
                .try_publish_with_properties(topic, QoS::AtLeastOnce, false, payload, props)
        } else {
            self.client.try_publish(
                mqtt::with_reply_to(&topic, TOPIC),
                QoS::AtLeastOnce,
                false,
                payload,
            )
        };
        r.expect("test controller publish");
    }

    /// Sends a request and waits for its response (or Error).
    pub async fn request(&self, eid: &str, msg: &Msg) -> body::MsgBody {
        let id = msg.header.as_ref().expect("header").msg_id.clone();
        let start = self.log.lock().len();
        self.send(eid, msg);
        self.wait_for(Duration::from_secs(10), |log| {
            log[start..]
                .iter()
                .filter(|r| r.from == eid)
                .find_map(|r| r.answer_to(&id).cloned())
        })
        .await
    }
}

fn publish(c: &AsyncClient, eid: &str, v5: bool, topic: &str, msg: &Msg) {
    let payload = Bytes::from(wrap(msg, EID, eid).encode_to_vec());
    let r = if v5 {
        let props = PublishProperties {
            content_type: Some(mqtt::CONTENT_TYPE.into()),
            response_topic: Some(TOPIC.into()),
            ..Default::default()
        };
        c.try_publish_with_properties(topic, QoS::AtLeastOnce, false, payload, props)
    } else {
        c.try_publish(
            mqtt::with_reply_to(topic, TOPIC),
            QoS::AtLeastOnce,
            false,
            payload,
        )
    };
    r.expect("test controller publish");
}

/// The response body's type, for matching in tests.
pub fn resp(b: &body::MsgBody) -> &response::RespType {
    match b {
        body::MsgBody::Response(usp::Response { resp_type: Some(r) }) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}
