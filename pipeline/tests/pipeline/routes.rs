//! Reply routes come from identity: whatever route an inbound publish or Record names, the
//! controller answers and sends requests only to the agent's own topic. Records the built-in
//! controller cannot handle (E2E-protected, session context) are refused, never answered as
//! plaintext.

use bytes::Bytes;
use uspwatch_proto::pb::usp_record::record::RecordType;
use uspwatch_proto::pb::usp_record::{Record, SessionContextRecord};
use uspwatch_proto::{Command, Message, builder, wrap};

use super::support::*;

const A: &str = "os::00256D-route-a";
const B: &str = "os::00256D-route-b";

fn notify(msg_id: &str) -> uspwatch_proto::pb::usp::Msg {
    builder::value_change(msg_id, "sub-1", true, "Device.X", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_reply_routes_are_never_answered_or_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;

    // MQTT 5 Response Topic naming another agent, then another controller.
    let mut rec = from_agent_v5(A, &notify("r1"));
    rec.response_topic = Some(agent_topic(B));
    h.send(rec).await;
    let mut rec = from_agent_v5(A, &notify("r2"));
    rec.response_topic = Some("usp/controller/self::other".into());
    h.send(rec).await;
    // MQTT 3.1.1 reply-to naming another agent.
    h.send(v311_with_reply(
        &wrap(&notify("r3"), A, CONTROLLER),
        &agent_topic(B),
    ))
    .await;
    // An MQTTConnect Record whose subscribed_topic names another agent.
    h.send(v311_with_reply(
        &builder::mqtt_connect(A, CONTROLLER, true, &agent_topic(B)),
        &agent_topic(A),
    ))
    .await;
    // A well-formed Notify: its NotifyResp is the first thing published, to A's topic.
    h.send(from_agent_v5(A, &notify("ok1"))).await;
    let p = h.next_published().await;
    assert_eq!(p.topic, agent_topic(A));
    assert_eq!(notify_resp_id(&p.decode().1).0, "ok1");

    // A request to A goes to A's topic, not to a route A named.
    let controller = h.pipeline.controller();
    let req = tokio::spawn(async move {
        let get = Command::Get {
            paths: vec!["Device.".into()],
            max_depth: 0,
        };
        let _ = controller.request(A, &get, "test").await;
    });
    let p = h.next_published().await;
    assert!(
        p.topic == agent_topic(A) || p.topic.starts_with(&format!("{}/", agent_topic(A))),
        "request sent to {}",
        p.topic
    );
    req.abort();
    assert!(h.pipeline.stats().records_invalid >= 4);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_and_session_context_records_are_refused_not_answered_as_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;

    // A plaintext, unsegmented Notify inside a session context.
    let mut r = wrap(&notify("s1"), A, CONTROLLER);
    r.record_type = Some(RecordType::SessionContext(SessionContextRecord {
        session_id: 7,
        sequence_id: 1,
        expected_id: 1,
        payload: vec![Bytes::from(notify("s1").encode_to_vec())],
        ..Default::default()
    }));
    let mut rec = from_agent_v5(A, &notify("unused"));
    rec.payload = Bytes::from(r.encode_to_vec());
    h.send(rec).await;
    // TLS12 outside a session context (R-E2E.41) whose payload happens to be a plaintext Msg.
    let mut r: Record = wrap(&notify("t1"), A, CONTROLLER);
    r.payload_security = 1;
    let mut rec = from_agent_v5(A, &notify("unused"));
    rec.payload = Bytes::from(r.encode_to_vec());
    h.send(rec).await;

    h.send(from_agent_v5(A, &notify("ok2"))).await;
    let p = h.next_published().await;
    assert_eq!(notify_resp_id(&p.decode().1).0, "ok2");
    assert_eq!(h.pipeline.stats().records_invalid, 2);
    h.stop().await;
}

/// An MQTT 3.1.1 publish to the controller naming `reply_topic` in its topic.
fn v311_with_reply(record: &Record, reply_topic: &str) -> uspwatch_pipeline::InboundRecord {
    uspwatch_pipeline::InboundRecord {
        topic: uspwatch_proto::mqtt::with_reply_to(CONTROLLER_TOPIC, reply_topic),
        payload: Bytes::from(record.encode_to_vec()),
        response_topic: None,
        content_type: None,
    }
}
