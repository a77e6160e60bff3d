//! `tls`: a TLS handshake over the cycle's connection (SNI = host or `server_name`), recording
//! the leaf certificate's expiry.

use std::net::SocketAddr;

use futures_util::future::BoxFuture;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::model::failure::{Failure, FailureReason};
use crate::model::outcome::{CheckOutput, Measurement, Observations};
use super::{Check, CheckContext};

/// The leaf certificate's notAfter.
static CERT_NOT_AFTER: Measurement = Measurement {
    metric: "dualprobe_tls_cert_expiry_timestamp_seconds",
    help: "notAfter of the leaf certificate, unix seconds",
    blackbox: Some((
        "probe_ssl_earliest_cert_expiry",
        "Expiry of the leaf certificate, unix seconds",
    )),
    probe_help: "",
    key: "cert_not_after",
    describe: Some(describe_expiry),
};

static MEASURED: &[&Measurement] = &[&CERT_NOT_AFTER];

fn describe_expiry(not_after: i64) -> String {
    let now = std::time::UNIX_EPOCH
        .elapsed()
        .map_or(0, |d| d.as_secs() as i64);
    format!("cert expires in {}d", (not_after - now) / 86_400)
}

/// The `tls` check.
pub(super) struct Tls;

impl Check for Tls {
    fn measurements(&self) -> &'static [&'static Measurement] {
        MEASURED
    }

    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            let sni = cx.target.tls_server_name();
            let server_name = match ServerName::try_from(sni.clone()) {
                Ok(n) => n,
                Err(e) => {
                    return CheckOutput::fail(Failure::new(
                        FailureReason::TlsError,
                        format!("`{sni}` is not a valid TLS server name: {e}"),
                    ));
                }
            };
            // `addresses: all`: a handshake with every address (the first over the connection
            // `tcp` left), all must pass; the earliest expiry stands for the check.
            let addresses = match cx.connect_addresses().await {
                Ok(a) => a,
                Err(f) => return CheckOutput::fail(f),
            };
            let mut obs = Observations {
                addresses: if addresses.len() > 1 {
                    addresses.clone()
                } else {
                    Vec::new()
                },
                ..Observations::default()
            };
            let mut earliest: Option<i64> = None;
            for (i, ip) in addresses.iter().enumerate() {
                let stream = if i == 0 {
                    cx.take_connection().await
                } else {
                    cx.connect(SocketAddr::new(*ip, cx.target.port)).await
                };
                let stream = match stream {
                    Ok(s) => s,
                    Err(f) => return CheckOutput::fail(f).with(obs),
                };
                let remote = stream.peer_addr().ok();
                if let Some(r) = remote {
                    cx.attempting(r);
                }
                obs.remote.get_or_insert_with(|| remote.unwrap_or(SocketAddr::new(*ip, 0)));
                match handshake(cx, server_name.clone(), &sni, stream).await {
                    Ok(not_after) => {
                        earliest = match (earliest, not_after) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    Err(mut f) => {
                        if addresses.len() > 1 {
                            f.detail = format!("{ip}: {}", f.detail);
                        }
                        obs.remote = remote;
                        return CheckOutput::fail(f).with(obs);
                    }
                }
            }
            CheckOutput::pass(match earliest {
                Some(t) => obs.measure(&CERT_NOT_AFTER, t),
                None => obs,
            })
        })
    }
}

/// One handshake over `stream`; the leaf certificate's notAfter when it succeeds.
async fn handshake(
    cx: &mut CheckContext<'_>,
    server_name: ServerName<'static>,
    sni: &str,
    stream: tokio::net::TcpStream,
) -> Result<Option<i64>, Failure> {
    let connector = TlsConnector::from(cx.target.tls.client_config.clone());
    let tls = connector
        .connect(server_name, stream)
        .await
        .map_err(|e| classify(&e))?;
    let (_, session) = tls.get_ref();
    let not_after = session
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(crate::net::tls::not_after);
    cx.debug(format!(
        "TLS {:?} with {sni}, cert notAfter {not_after:?}",
        session.protocol_version()
    ));
    Ok(not_after)
}

/// Certificate problems are `cert_invalid`; other handshake failures `tls_error`; a peer that
/// hangs up mid-handshake `reset`.
pub fn classify(err: &std::io::Error) -> Failure {
    match rustls_error(err) {
        Some(e) => Failure::new(
            crate::net::tls::rustls_reason(e),
            format!("handshake failed: {}", describe(e)),
        ),
        None => match FailureReason::from_io(err) {
            FailureReason::Other => {
                Failure::new(FailureReason::TlsError, format!("handshake failed: {err}"))
            }
            r => Failure::new(r, format!("handshake failed: {err}")),
        },
    }
}


/// The rustls error carried by `err`, looking through nested `io::Error`s: connectors (e.g.
/// hyper-rustls under reqwest) wrap the handshake's `io::Error` in another one, and
/// `io::Error::source()` skips the error it carries, so walking `source()` never reaches it.
pub fn rustls_error(err: &std::io::Error) -> Option<&rustls::Error> {
    let inner = err.get_ref()?;
    if let Some(r) = inner.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    rustls_error(inner.downcast_ref::<std::io::Error>()?)
}

fn describe(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(c) => format!("certificate rejected: {c:?}"),
        other => other.to_string(),
    }
}
