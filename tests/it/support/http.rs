//! An HTTP server (axum) on 127.0.0.1 and [::1] (one port), plain or over TLS, with the routes
//! the `http` prober is tested against. Every request is logged with the family it arrived on,
//! so tests can prove which family a redirect was followed over.
//!
//! Routes: `/ok` 200, `/fail` 500, `/redirect` 302 to `/ok`, `/redirect-a-only` 302 to `/ok` on
//! [`A_ONLY_HOST`](super::A_ONLY_HOST) (no AAAA record), `/redirect-other-family` 302 to `/ok`
//! on the other family's loopback literal, `/redirect-mapped` 302 to `/ok` on
//! `[::ffff:127.0.0.1]` (IPv6 syntax, IPv4 on the wire), `/redirect-loop` 302 to itself, `/slow`
//! answers after 30 s. Anything else is 404.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use dualprobe::model::family::Family;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::tls::server_config;
use super::{A_ONLY_HOST, ServerCert, Tasks, other_loopback, tcp_listener_pair, with_free_port};

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// The family of the listener it arrived on.
    pub family: Family,
    /// The request path.
    pub path: String,
}

/// A running HTTP(S) server; stops accepting when dropped.
pub struct HttpServer {
    port: u16,
    scheme: &'static str,
    log: Arc<Mutex<Vec<LoggedRequest>>>,
    _tasks: Tasks,
}

#[derive(Clone)]
struct Side {
    family: Family,
    port: u16,
    scheme: &'static str,
    log: Arc<Mutex<Vec<LoggedRequest>>>,
}

impl HttpServer {
    /// Plain HTTP.
    pub fn plain() -> HttpServer {
        HttpServer::start(None)
    }

    /// HTTPS presenting `cert` (HTTP/1.1 negotiated by ALPN).
    pub fn https(cert: &ServerCert) -> HttpServer {
        HttpServer::start(Some(TlsAcceptor::from(server_config(cert, &[b"http/1.1"]))))
    }

    fn start(tls: Option<TlsAcceptor>) -> HttpServer {
        let (port, listeners) = with_free_port(|port| Ok((port, tcp_listener_pair(port)?)));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Tasks::default();
        for (family, listener) in Family::ALL.into_iter().zip(listeners) {
            let app = Router::new().fallback(handle).with_state(Side {
                family,
                port,
                scheme,
                log: Arc::clone(&log),
            });
            match &tls {
                None => tasks.spawn(async move {
                    let _ = axum::serve(listener, app).await;
                }),
                Some(acceptor) => {
                    let (tx, rx) = mpsc::channel(16);
                    let local = listener.local_addr().expect("local address");
                    tasks.spawn(handshake_loop(listener, acceptor.clone(), tx));
                    tasks.spawn(async move {
                        let _ = axum::serve(TlsListener { rx, local }, app).await;
                    });
                }
            }
        }
        HttpServer {
            port,
            scheme,
            log,
            _tasks: tasks,
        }
    }

    /// The port, the same on both families.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// Every request answered so far.
    pub fn log(&self) -> Vec<LoggedRequest> {
        self.log.lock().expect("log lock").clone()
    }

    /// Requests for `path` that arrived over `family`.
    pub fn hits(&self, family: Family, path: &str) -> usize {
        self.log()
            .iter()
            .filter(|r| r.family == family && r.path == path)
            .count()
    }
}

async fn handle(State(side): State<Side>, uri: Uri) -> Response {
    let path = uri.path().to_string();
    side.log.lock().expect("log lock").push(LoggedRequest {
        family: side.family,
        path: path.clone(),
    });
    let redirect =
        |location: String| (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    match path.as_str() {
        "/ok" => (StatusCode::OK, "ok").into_response(),
        "/fail" => (StatusCode::INTERNAL_SERVER_ERROR, "failing on purpose").into_response(),
        "/redirect" => redirect("/ok".into()),
        "/redirect-loop" => redirect("/redirect-loop".into()),
        "/redirect-mapped" => redirect(format!(
            "{}://[::ffff:127.0.0.1]:{}/ok",
            side.scheme, side.port
        )),
        "/redirect-a-only" => redirect(format!("{}://{A_ONLY_HOST}:{}/ok", side.scheme, side.port)),
        "/redirect-other-family" => {
            let host = match other_loopback(side.family) {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            redirect(format!("{}://{host}:{}/ok", side.scheme, side.port))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (StatusCode::OK, "late").into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Handshakes run in their own tasks so one stalled or rejected client never blocks the rest;
/// finished ones are handed to axum through the channel.
async fn handshake_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let mut handshakes = Tasks::default();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        handshakes.spawn(async move {
            if let Ok(tls) = acceptor.accept(stream).await {
                let _ = tx.send((tls, peer)).await;
            }
        });
    }
}

/// Completed TLS connections, as an axum listener.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The handshake loop is gone: the server is shutting down.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
