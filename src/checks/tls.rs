//! `tls`: a TLS handshake over the cycle's connection (SNI = host or `server_name`), recording
//! the leaf certificate's expiry.

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
            let stream = match cx.take_connection().await {
                Ok(s) => s,
                Err(f) => return CheckOutput::fail(f),
            };
            let remote = stream.peer_addr().ok();
            let connector = TlsConnector::from(cx.target.tls.client_config.clone());
            match connector.connect(server_name, stream).await {
                Ok(tls) => {
                    let (_, session) = tls.get_ref();
                    let not_after = session
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(crate::net::tls::not_after);
                    cx.debug(format!(
                        "TLS {:?} with {sni}, cert notAfter {not_after:?}",
                        session.protocol_version()
                    ));
                    let obs = Observations {
                        remote,
                        ..Observations::default()
                    };
                    CheckOutput::pass(match not_after {
                        Some(t) => obs.measure(&CERT_NOT_AFTER, t),
                        None => obs,
                    })
                }
                Err(e) => CheckOutput::fail(classify(&e)).with(Observations {
                    remote,
                    ..Observations::default()
                }),
            }
        })
    }
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
