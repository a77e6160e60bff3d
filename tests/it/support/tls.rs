//! TLS peers: a server that completes handshakes with a given certificate, a server that
//! accepts TCP connections but never sends a ServerHello (a stalled handshake), and one that
//! hangs up as soon as the ClientHello arrives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dualprobe::model::family::Family;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{ServerCert, Tasks, loopback, tcp_listener_pair, with_free_port};

/// A rustls server configuration presenting `cert`, offering `alpn` (empty: no ALPN).
pub fn server_config(cert: &ServerCert, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), cert.key.clone_key())
        .expect("server certificate");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Completes TLS handshakes on 127.0.0.1 and [::1] (one port), then reads until the client
/// leaves. Stops when dropped.
pub struct TlsServer {
    port: u16,
    handshakes: Arc<AtomicUsize>,
    _tasks: Tasks,
}

impl TlsServer {
    /// Starts a server presenting `cert`.
    pub fn start(cert: &ServerCert) -> TlsServer {
        let acceptor = TlsAcceptor::from(server_config(cert, &[]));
        let (port, listeners) = with_free_port(|port| Ok((port, tcp_listener_pair(port)?)));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let mut tasks = Tasks::default();
        for listener in listeners {
            tasks.spawn(serve(listener, acceptor.clone(), Arc::clone(&handshakes)));
        }
        TlsServer {
            port,
            handshakes,
            _tasks: tasks,
        }
    }

    /// The port, the same on both families.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address on `family`.
    pub fn addr(&self, family: Family) -> SocketAddr {
        SocketAddr::new(loopback(family), self.port)
    }

    /// Handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, handshakes: Arc<AtomicUsize>) {
    let mut connections = Tasks::default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let handshakes = Arc::clone(&handshakes);
        connections.spawn(async move {
            // A client that rejects the certificate aborts the handshake: not an error here.
            if let Ok(mut tls) = acceptor.accept(stream).await {
                handshakes.fetch_add(1, Ordering::SeqCst);
                let mut sink = [0u8; 1024];
                while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
            }
        });
    }
}

/// Accepts TCP connections on 127.0.0.1 and [::1] (one port) and never writes a byte: a TLS
/// client waits for a ServerHello that never comes. Connections stay open until dropped.
pub struct SilentServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    _tasks: Tasks,
}

impl SilentServer {
    /// Starts the server.
    pub fn start() -> SilentServer {
        let (port, listeners) = with_free_port(|port| Ok((port, tcp_listener_pair(port)?)));
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut tasks = Tasks::default();
        for listener in listeners {
            let accepted = Arc::clone(&accepted);
            tasks.spawn(async move {
                // Held, not dropped: closing would turn the stall into a reset.
                let mut held = Vec::new();
                loop {
                    if let Ok((stream, _)) = listener.accept().await {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        held.push(stream);
                    }
                }
            });
        }
        SilentServer {
            port,
            accepted,
            _tasks: tasks,
        }
    }

    /// The port, the same on both families.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Accepts TCP connections on 127.0.0.1 and [::1] (one port) and closes each at once: the
/// peer hangs up mid-handshake.
pub struct HangUpServer {
    port: u16,
    _tasks: Tasks,
}

impl HangUpServer {
    /// Starts the server.
    pub fn start() -> HangUpServer {
        let (port, listeners) = with_free_port(|port| Ok((port, tcp_listener_pair(port)?)));
        let mut tasks = Tasks::default();
        for listener in listeners {
            tasks.spawn(async move {
                loop {
                    if let Ok((mut stream, _)) = listener.accept().await {
                        // Read the ClientHello first so the close is a FIN after data, not a
                        // race with the client's write.
                        let mut hello = [0u8; 4096];
                        let _ = stream.read(&mut hello).await;
                        drop(stream);
                    }
                }
            });
        }
        HangUpServer {
            port,
            _tasks: tasks,
        }
    }

    /// The port, the same on both families.
    pub fn port(&self) -> u16 {
        self.port
    }
}
