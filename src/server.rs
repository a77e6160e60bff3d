//! The HTTP surface: `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload`, `/probe` and the
//! status page at `/`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::agent::Agent;
use crate::metrics::Format;

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

/// OpenMetrics when the scraper asks for it (Prometheus does), the classic text format otherwise.
pub fn negotiate(headers: &HeaderMap) -> Format {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        Format::OpenMetrics
    } else {
        Format::PrometheusText
    }
}

async fn metrics(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Response {
    let format = negotiate(&headers);
    let body = crate::metrics::render(&agent.registry, &agent.metrics.checks, format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
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
