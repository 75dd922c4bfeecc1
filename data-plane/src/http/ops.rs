//! Operational endpoints.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use std::sync::Arc;

use super::reply;
use crate::app::DataPlane;

/// Alive = the process answers.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 once a full state is applied (from the control plane or the cache file); the
/// body says how stale it is, so an outage is visible without failing the probe.
pub(crate) async fn readyz(State(dp): State<Arc<DataPlane>>) -> Response {
    let s = &dp.state.status;
    let ready = s.ready();
    let stale = dp.settings.max_staleness.is_some_and(|m| s.staleness() > m);
    let body = serde_json::json!({
        "ready": ready,
        "revision": s.applied_revision(),
        "connected": s.connected(),
        "staleness_seconds": s.staleness().as_secs_f64(),
        "stale": stale,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    reply::json(status, body.to_string())
}

pub(crate) async fn metrics(State(dp): State<Arc<DataPlane>>) -> Response {
    let mut text = dp.state.metrics.render(&dp.state.status);
    dp.state.identities.render_metrics(&mut text);
    if let Some(a) = &dp.audit {
        a.render_metrics(&mut text);
    }
    let mut r = text.into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
