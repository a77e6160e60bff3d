//! The HTTP surface: `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload`, `/probe` and the
//! status page at `/`, served by [`serve`] on a listener the caller binds (tests bind port 0)
//! until a shutdown token fires.

pub mod adhoc;
mod conn;
pub mod local;
pub(crate) mod probe_endpoint;
mod scrape;
pub(crate) mod status_page;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use std::time::Duration;

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

/// What clients may hold. A sidecar shares the task's memory and file descriptors with the
/// checks, so no client may starve `/-/healthy`, `/metrics` or the checks' own sockets: the
/// connections are capped, and at the cap a newcomer evicts the connection that has waited
/// longest without a request in progress (see `conn`), so a flood of idle or half-sent
/// connections holds slots only until someone with a real request arrives.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once on the TCP listener (sockets, so file descriptors).
    pub connections: usize,
    /// How long a client may take to send a request's headers (also how long a kept-alive
    /// connection may sit idle before its next request).
    pub header_timeout: Duration,
    /// The largest request head (line and headers) read; a bigger one gets 431.
    pub max_header_bytes: usize,
    /// The longest a connection lives: then it is asked to close after its request in flight,
    /// and dropped a little later. Bounds a client that never reads its answers.
    pub lifetime: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain: Duration,
    /// Connections open at once on the local health socket (see [`local`]); 0: no local
    /// socket.
    pub local_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 320,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            lifetime: Duration::from_secs(60),
            // With the agent's own 800 ms, SIGTERM ends within a second.
            drain: Duration::from_millis(150),
            local_connections: 8,
        }
    }
}

/// Serves `agent` on `listener`, and the health endpoints on the local health socket of its
/// port, with the default [`Limits`] until `shutdown` fires. The caller stops the agent's own
/// tasks afterwards (`Agent::stop`).
pub async fn serve(
    listener: TcpListener,
    agent: Arc<Agent>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, agent, shutdown, Limits::default()).await
}

/// [`serve`] with explicit limits (tests use small ones). HTTP/1.1 only: nothing here needs
/// HTTP/2, and a cleartext HTTP/2 server is one more parser facing untrusted clients.
pub async fn serve_with(
    listener: TcpListener,
    agent: Arc<Agent>,
    shutdown: CancellationToken,
    limits: Limits,
) -> std::io::Result<()> {
    let served = Arc::new(Served {
        agent,
        gates: probe_endpoint::Gates::default(),
    });
    let port = listener.local_addr()?.port();
    let local = if limits.local_connections == 0 {
        None
    } else {
        match local::bind(port) {
            Ok(l) => {
                tracing::debug!(socket = %format!("@{}", local::socket_name(port)), "local health socket bound");
                let limits = Limits {
                    connections: limits.local_connections,
                    ..limits
                };
                let app = local_routes(Arc::clone(&served));
                Some(tokio::spawn(conn::accept_loop(
                    l,
                    app,
                    shutdown.clone(),
                    limits,
                    "local health socket",
                )))
            }
            Err(e) => {
                // The TCP listener still answers `/-/healthy`; `dualprobe healthcheck` falls
                // back to it.
                tracing::warn!(
                    socket = %format!("@{}", local::socket_name(port)),
                    error = %e,
                    "cannot bind the local health socket; health checks go over TCP only"
                );
                None
            }
        }
    };
    conn::accept_loop(listener, routes(served), shutdown, limits, "http").await;
    if let Some(local) = local {
        let _ = local.await;
    }
    Ok(())
}

/// All routes.
pub fn router(agent: Arc<Agent>) -> Router {
    routes(Arc::new(Served {
        agent,
        gates: probe_endpoint::Gates::default(),
    }))
}

fn routes(served: Arc<Served>) -> Router {
    Router::new()
        .route("/metrics", get(scrape::metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/probe", get(probe_endpoint::handle))
        .route("/", get(status_page::page))
        .with_state(served)
}

/// The local health socket's routes: health and readiness only. Whoever shares the task's
/// network namespace may ask whether the agent lives, not scrape, probe or reload through a
/// path that bypasses the TCP listener's settings.
fn local_routes(served: Arc<Served>) -> Router {
    Router::new()
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
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

/// `POST /-/reload`: with `probe.token_file` set it takes the same bearer token as `/probe`
/// (SIGHUP stays the unauthenticated local path).
async fn reload(State(served): State<Arc<Served>>, headers: HeaderMap) -> Response {
    let agent = &served.agent;
    let token = agent.current().config.probe_endpoint.token.clone();
    if let Err(r) = probe_endpoint::authorized(&headers, token.as_deref()) {
        return *r;
    }
    match agent.reload().await {
        Ok(()) => (StatusCode::OK, "config reloaded\n").into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("config reload refused, the previous config keeps running:\n{e}\n"),
        )
            .into_response(),
    }
}
