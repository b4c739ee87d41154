//! Bulk Data reports from outside USP: MQTT publishes on the broker's Bulk Data topics and
//! HTTP POST/PUT to the collector at `/bulkdata`. Both hand the report, with the device
//! identity their transport authenticated, to [`Pipeline::ingest_report`], which decodes,
//! stores or quarantines it. (`Push!` reports arrive as USP Notifies and never pass here.)
//!
//! Identity: over MQTT the broker stamps each Bulk Data publish with the publishing
//! connection's bound Endpoint ID ([`uspwatch_broker::BULK_DATA_PUBLISHER`]). Over HTTP the
//! device authenticates with HTTP Basic against the broker's credentials file (the same
//! entries and argon2 check as its MQTT CONNECT); an `eid` query parameter, if sent
//! (R-BULK.1), must name that same device.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uspwatch_broker::{BULK_DATA_PUBLISHER, Broker};
use uspwatch_pipeline::{BulkReport, Pipeline};
use uspwatch_proto::SampleSource;

/// MQTT Bulk Data reports being stored at once; further deliveries wait (and the broker's
/// link buffer absorbs them).
const MQTT_IN_FLIGHT: usize = 64;
/// Password checks running at once: argon2 costs tens of milliseconds of CPU and ~20 MiB
/// each, so a flood of bad logins is refused (429) instead of queued.
const AUTH_CONCURRENCY: usize = 2;
/// Where the collector listens on the HTTP listener.
pub const COLLECTOR_PATH: &str = "/bulkdata";

/// Checks a device's HTTP credentials; the broker's credentials file in production.
pub trait DeviceAuth: Send + Sync + 'static {
    /// The Endpoint ID of the agent these credentials belong to. Slow: called off the async
    /// threads.
    fn verify(&self, username: &str, password: &[u8]) -> Option<String>;
}

impl DeviceAuth for Broker {
    fn verify(&self, username: &str, password: &[u8]) -> Option<String> {
        self.verify_agent(username, password)
    }
}

/// Subscribes to the broker's Bulk Data topics (if any) and ingests what agents publish there.
pub fn spawn_mqtt(
    broker: &Broker,
    pipeline: &Arc<Pipeline>,
    topics: &[String],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let (_publisher, mut deliveries) = broker.local_link("uspwatch-bulkdata", topics)?;
    let pipeline = pipeline.clone();
    let permits = Arc::new(Semaphore::new(MQTT_IN_FLIGHT));
    tokio::spawn(async move {
        // The link leaves the router when this task ends and drops the publisher.
        let _publisher = _publisher;
        loop {
            let d = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = deliveries.recv() => match d {
                    Some(d) => d,
                    None => break,
                },
            };
            let publisher = d
                .user_properties
                .iter()
                .find(|(k, _)| k == BULK_DATA_PUBLISHER)
                .map(|(_, v)| v.clone());
            let Some(endpoint_id) = publisher else {
                // Only the broker's own links publish without the stamp.
                debug!(topic = %d.topic, "Bulk Data publish without a publishing device; ignored");
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let report = BulkReport {
                endpoint_id,
                source: SampleSource::Mqtt,
                origin: d.topic,
                body: d.payload,
                content_type: d.content_type,
                report_format: None,
            };
            let p = pipeline.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let eid = report.endpoint_id.clone();
                // Refusals are quarantined and counted by the pipeline.
                if let Err(e) = p.ingest_report(report).await
                    && !matches!(e, uspwatch_pipeline::Error::BulkData { .. })
                {
                    warn!(endpoint_id = %eid, error = %e, "Bulk Data report over MQTT not stored");
                }
            });
        }
    });
    Ok(())
}

#[derive(Clone)]
struct Collector {
    pipeline: Arc<Pipeline>,
    auth: Arc<dyn DeviceAuth>,
    checks: Arc<Semaphore>,
}

/// The collector's routes (`POST|PUT /bulkdata`), bounded to `max_report_bytes` bodies.
pub fn router<S: Clone + Send + Sync + 'static>(
    pipeline: Arc<Pipeline>,
    auth: Arc<dyn DeviceAuth>,
    max_report_bytes: usize,
) -> Router<S> {
    Router::new()
        .route(COLLECTOR_PATH, post(collect).put(collect))
        .layer(DefaultBodyLimit::max(max_report_bytes))
        .with_state(Collector {
            pipeline,
            auth,
            checks: Arc::new(Semaphore::new(AUTH_CONCURRENCY)),
        })
}

#[derive(Deserialize)]
struct Identify {
    eid: Option<String>,
}

fn reply(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

fn unauthorized() -> Response {
    let mut r = reply(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "HTTP Basic credentials of a device are required",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"uspwatch bulk data\""),
    );
    r
}

/// The username and password of an `Authorization: Basic` header.
fn basic(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let colon = raw.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

async fn collect(
    State(c): State<Collector>,
    Query(q): Query<Identify>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((user, password)) = basic(&headers) else {
        return unauthorized();
    };
    let Ok(permit) = c.checks.clone().try_acquire_owned() else {
        return reply(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "too many logins being checked; retry later",
        );
    };
    let auth = c.auth.clone();
    let verified = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        auth.verify(&user, &password)
    })
    .await
    .ok()
    .flatten();
    let Some(endpoint_id) = verified else {
        return unauthorized();
    };
    if q.eid.as_deref().is_some_and(|e| e != endpoint_id) {
        return reply(
            StatusCode::FORBIDDEN,
            "wrong_device",
            "the eid parameter names another device than the credentials",
        );
    }
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if header_text(header::CONTENT_ENCODING.as_str())
        .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"))
    {
        return reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            "compressed reports are not accepted; set the profile's Compression to None",
        );
    }
    let report = BulkReport {
        endpoint_id,
        source: SampleSource::Http,
        origin: COLLECTOR_PATH.to_string(),
        body,
        content_type: header_text(header::CONTENT_TYPE.as_str()),
        report_format: header_text("bbf-report-format"),
    };
    match c.pipeline.ingest_report(report).await {
        Ok(n) => (StatusCode::OK, axum::Json(json!({"samples": n}))).into_response(),
        Err(uspwatch_pipeline::Error::BulkData { source, .. }) if source.is_too_large() => reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            source.to_string(),
        ),
        Err(uspwatch_pipeline::Error::BulkData { source, .. }) => {
            reply(StatusCode::BAD_REQUEST, "malformed", source.to_string())
        }
        Err(e) => reply(StatusCode::SERVICE_UNAVAILABLE, "not_stored", e.to_string()),
    }
}
