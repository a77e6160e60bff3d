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

use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::Agent;
use crate::report::metrics::Format;

/// What every handler sees: the agent, and the `/probe` gate of its current config.
pub struct Served {
    /// The running agent.
    pub agent: Arc<Agent>,
    /// Rate limit and concurrency cap of `/probe`, rebuilt when the config changes.
    pub gates: probe_endpoint::Gates,
}

/// What one client may hold. A sidecar shares the task's memory and file descriptors with the
/// checks, so a slow or hostile client must never starve `/-/healthy`, `/metrics` or the checks'
/// own sockets: connections are capped, and those over the first tier get a short header
/// deadline and no keep-alive, so a burst of idle or half-sent requests cannot keep out a
/// health check.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served with the normal header deadline and keep-alive.
    pub connections: usize,
    /// Further connections, each with `reserve_header_timeout` and closed after one request.
    pub reserve: usize,
    /// How long a client may take to send a request's headers (also how long a kept-alive
    /// connection may sit idle before its next request).
    pub header_timeout: Duration,
    /// The header deadline of a reserve connection.
    pub reserve_header_timeout: Duration,
    /// The largest request head (line and headers) read; a bigger one gets 431.
    pub max_header_bytes: usize,
    /// The longest a normal connection lives: then it is asked to close after its request in
    /// flight, and dropped a little later. Bounds a client that never reads its answers.
    pub lifetime: Duration,
    /// The same for a reserve connection.
    pub reserve_lifetime: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 256,
            reserve: 64,
            header_timeout: Duration::from_secs(10),
            reserve_header_timeout: Duration::from_secs(1),
            max_header_bytes: 16 * 1024,
            lifetime: Duration::from_secs(60),
            reserve_lifetime: Duration::from_secs(5),
            // With the agent's own 800 ms, SIGTERM ends within a second.
            drain: Duration::from_millis(150),
        }
    }
}

/// Serves `agent` on `listener` with the default [`Limits`] until `shutdown` fires. The caller
/// stops the agent's own tasks afterwards (`Agent::stop`).
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
    let app = router(agent);
    let normal = Arc::new(Semaphore::new(limits.connections));
    let reserve = Arc::new(Semaphore::new(limits.reserve));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the listener stays.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (permit, tier_reserve) = match Arc::clone(&normal).try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match Arc::clone(&reserve).try_acquire_owned() {
                Ok(p) => (p, true),
                Err(_) => {
                    tracing::debug!("connection refused: every connection slot is taken");
                    continue; // dropping the stream closes it
                }
            },
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .max_buf_size(limits.max_header_bytes.max(8192))
            .header_read_timeout(if tier_reserve {
                limits.reserve_header_timeout
            } else {
                limits.header_timeout
            })
            .keep_alive(!tier_reserve);
        let service = TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        let lifetime = if tier_reserve {
            limits.reserve_lifetime
        } else {
            limits.lifetime
        };
        let drain = limits.drain;
        connections.spawn(async move {
            let _permit = permit;
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            // A client that stops reading leaves hyper waiting on a write for ever, holding
            // the slot: every wait here ends.
            let grace = tokio::select! {
                _ = conn.as_mut() => return,
                _ = shutdown.cancelled() => drain,
                _ = tokio::time::sleep(lifetime) => Duration::from_secs(5),
            };
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(grace, conn).await;
        });
    }
    connections.close();
    if tokio::time::timeout(limits.drain, connections.wait())
        .await
        .is_err()
    {
        tracing::debug!("some HTTP connections were still open at shutdown");
    }
    Ok(())
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
