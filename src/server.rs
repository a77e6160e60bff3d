//! The HTTP surface: `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload`, `/probe` and the
//! status page at `/`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::agent::Agent;

/// The OpenMetrics content type the client crate renders.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// All routes.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/probe", get(crate::probe_api::probe))
        .route("/", get(crate::status_page::page))
        .with_state(agent)
}

/// The classic Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics when the scraper asks for it (Prometheus does), the classic text format otherwise.
pub fn metrics_response(openmetrics: String, headers: &HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], openmetrics).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            crate::metrics::to_prometheus_text(&openmetrics),
        )
            .into_response()
    }
}

async fn metrics(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Response {
    metrics_response(crate::metrics::render(&agent.registry), &headers)
}

async fn healthy() -> &'static str {
    "dualprobe is healthy\n"
}

async fn ready(State(agent): State<Arc<Agent>>) -> Response {
    if agent.readiness.is_ready() {
        (StatusCode::OK, "dualprobe is ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "dualprobe is not ready: the first probe cycle has not finished\n",
        )
            .into_response()
    }
}

async fn reload(State(agent): State<Arc<Agent>>) -> Response {
    match agent.reload().await {
        Ok(()) => (StatusCode::OK, "config reloaded\n").into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("config reload refused, the previous config keeps running:\n{e}\n"),
        )
            .into_response(),
    }
}
