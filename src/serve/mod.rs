//! The HTTP surface: `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload`, `/probe` and the
//! status page at `/`, served by [`serve`] on a listener the caller binds (tests bind port 0)
//! until a shutdown token fires.

pub mod adhoc;
pub(crate) mod probe_endpoint;
pub(crate) mod status_page;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::report::metrics::Format;

/// What every handler sees: the agent, and the `/probe` gate of its current config.
pub struct Served {
    /// The running agent.
    pub agent: Arc<Agent>,
    /// Rate limit and concurrency cap of `/probe`, rebuilt when the config changes.
    pub gates: probe_endpoint::Gates,
}

/// Serves `agent` on `listener` until `shutdown` fires. The caller stops the agent's own tasks
/// afterwards (`Agent::stop`).
pub async fn serve(
    listener: TcpListener,
    agent: Arc<Agent>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(agent))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// All routes.
pub fn router(agent: Arc<Agent>) -> Router {
    let served = Arc::new(Served {
        agent,
        gates: probe_endpoint::Gates::default(),
    });
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/probe", get(probe_endpoint::handle))
        .route("/", get(status_page::page))
        .with_state(served)
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

async fn metrics(State(served): State<Arc<Served>>, headers: HeaderMap) -> Response {
    let agent = &served.agent;
    let format = negotiate(&headers);
    let body = crate::report::metrics::render(&agent.registry, &agent.metrics.checks, format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn healthy() -> &'static str {
    "dualprobe is healthy\n"
}

async fn ready(State(served): State<Arc<Served>>) -> Response {
    let agent = &served.agent;
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

async fn reload(State(served): State<Arc<Served>>) -> Response {
    let agent = &served.agent;
    match agent.reload().await {
        Ok(()) => (StatusCode::OK, "config reloaded\n").into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("config reload refused, the previous config keeps running:\n{e}\n"),
        )
            .into_response(),
    }
}
