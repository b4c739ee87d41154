//! HTTP surface: `/healthz`, `/readyz`, `/metrics` and the JSON API under `/api/v1`.
//!
//! Every error is JSON `{"error": {"code": "...", "message": "..."}}` with a fitting status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;

/// `uspwatch_http_requests_total{route,status}`: API requests served.
pub const HTTP_REQUESTS: &str = "uspwatch_http_requests_total";
/// `uspwatch_http_request_duration_seconds{route}`: API latency.
pub const HTTP_DURATION: &str = "uspwatch_http_request_duration_seconds";
/// `uspwatch_up`: 1 while the gateway runs (a constant so scrapes always see a sample).
pub const UP: &str = "uspwatch_up";

/// Registers this module's metric descriptions.
pub fn describe_metrics() {
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP API requests by route and status");
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP API request latency"
    );
    metrics::describe_gauge!(UP, "1 while uspwatch runs");
    metrics::describe_gauge!(
        crate::gateway::DEVICES,
        "Devices in the inventory by presence (online, offline, stale)"
    );
}

#[derive(Clone)]
struct AppState {
    gw: Arc<Gateway>,
    metrics: PrometheusHandle,
}

/// An API error.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.1, "message": self.2}});
        (self.0, axum::Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: impl serde::Serialize) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

/// Builds the router.
fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/devices", get(list_devices))
        .route("/devices/{eid}", get(device))
        .route("/devices/{eid}/commands", post(command))
        .route("/alerts", get(alerts))
        .route("/silences", get(silences).post(add_silence))
        .route("/silences/{id}", delete(expire_silence))
        .route("/rules", get(rules))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such API route".into(),
            )
        })
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    let bulk = &state.gw.config.pipeline.bulk_data;
    let collector = bulk.http_collector.then(|| {
        crate::bulkdata::router(
            state.gw.pipeline.clone(),
            state.gw.broker.clone(),
            bulk.max_report_bytes,
        )
    });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .nest("/api/v1", api)
        .merge(crate::web::routes());
    match collector {
        Some(c) => app.merge(c),
        None => app,
    }
    .with_state(state)
}

/// Binds and serves until shutdown; returns the bound address.
pub async fn serve(
    gw: Arc<Gateway>,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(gw.config.http.listen).await?;
    let addr = listener.local_addr()?;
    metrics::gauge!(UP).set(1.0);
    let app = router(AppState { gw, metrics });
    tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(addr)
}

async fn auth(State(s): State<AppState>, headers: HeaderMap, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let tokens = &s.gw.config.http.tokens;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let allowed =
        tokens.is_empty() || presented.is_some_and(|p| tokens.iter().any(|t| ct_eq(t, p)));
    let resp = if allowed {
        next.run(req).await
    } else {
        let mut r = ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required".into(),
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        r
    };
    let status = resp.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    resp
}

/// Compares tokens without an early exit, so response time does not leak a prefix match.
fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn readyz(State(s): State<AppState>) -> Response {
    let broker = !s.gw.broker.local_addrs().is_empty();
    let sink = s.gw.pipeline.ready().await;
    let status = if broker && sink {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({"broker": broker, "sink": sink}))).into_response()
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    s.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceQuery {
    /// `online`, `offline` or `stale`.
    state: Option<String>,
    /// `key=value`, repeated as `label=a=b&label=c=d` is not supported by serde_urlencoded,
    /// so several labels are comma separated: `label=region=north,olt=7`.
    label: Option<String>,
    #[serde(default)]
    page: usize,
    per_page: Option<usize>,
}

async fn list_devices(
    State(s): State<AppState>,
    q: Result<Query<DeviceQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let mut wanted = BTreeMap::new();
    if let Some(l) = &q.label {
        for pair in l.split(',') {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    format!("label {pair:?} is not key=value"),
                )
            })?;
            wanted.insert(k.to_string(), v.to_string());
        }
    }
    let state = q.state.as_deref();
    if let Some(st) = state
        && !matches!(st, "online" | "offline" | "stale")
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "state must be online, offline or stale".into(),
        ));
    }
    let per_page = q.per_page.unwrap_or(100).clamp(1, 1000);
    let mut devices: Vec<_> =
        s.gw.pipeline
            .inventory()
            .snapshot()
            .into_iter()
            .filter(|d| match state {
                Some("online") => d.online,
                Some("offline") => !d.online,
                Some("stale") => d.stale,
                _ => true,
            })
            .filter(|d| wanted.iter().all(|(k, v)| d.labels.get(k) == Some(v)))
            .collect();
    devices.sort_by(|a, b| a.endpoint_id.cmp(&b.endpoint_id));
    let total = devices.len();
    let page: Vec<_> = devices
        .into_iter()
        .skip(q.page * per_page)
        .take(per_page)
        .collect();
    ok(json!({"total": total, "page": q.page, "per_page": per_page, "devices": page}))
}

async fn device(State(s): State<AppState>, Path(eid): Path<String>) -> ApiResult {
    match s.gw.pipeline.inventory().get(&eid) {
        Some(d) => ok(d),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "unknown_device",
            format!("no device {eid:?}"),
        )),
    }
}

async fn command(State(s): State<AppState>, Path(eid): Path<String>, body: Bytes) -> ApiResult {
    let cmd: uspwatch_proto::Command = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "bad_body", e.to_string()))?;
    cmd.validate()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "bad_command", e.to_string()))?;
    let known = s.gw.pipeline.inventory().get(&eid).is_some();
    if !known {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "unknown_device",
            format!("no device {eid:?}"),
        ));
    }
    let timeout: Duration = s.gw.config.http.command_timeout;
    let controller = s.gw.pipeline.controller();
    match tokio::time::timeout(timeout, controller.request(&eid, &cmd, "api")).await {
        Err(_) => Err(ApiError(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("no answer from {eid} within {timeout:?}"),
        )),
        Ok(Err(e)) => Err(ApiError(
            StatusCode::BAD_GATEWAY,
            "command_failed",
            e.to_string(),
        )),
        Ok(Ok(r)) => ok(r),
    }
}

async fn alerts(State(s): State<AppState>) -> ApiResult {
    ok(json!({"alerts": s.gw.rules.alerts(), "silences": s.gw.rules.silences()}))
}

async fn silences(State(s): State<AppState>) -> ApiResult {
    ok(json!({"silences": s.gw.rules.silences()}))
}

async fn add_silence(State(s): State<AppState>, body: Bytes) -> ApiResult {
    let new: uspwatch_rules::NewSilence = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "bad_body", e.to_string()))?;
    let created =
        s.gw.rules
            .add_silence(new)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "bad_silence", e.to_string()))?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

async fn expire_silence(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.gw.rules
        .expire_silence(&id)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, "unknown_silence", e.to_string()))?;
    ok(json!({"expired": id}))
}

async fn rules(State(s): State<AppState>) -> ApiResult {
    ok(json!({"rules": s.gw.rules.rules(), "load_errors": s.gw.rule_load_errors}))
}
