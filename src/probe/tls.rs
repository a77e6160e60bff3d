//! `tls`: a TLS handshake over the cycle's connection (SNI = host or `server_name`), recording
//! the leaf certificate's expiry.

use futures_util::future::BoxFuture;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::{CheckOutput, Failure, FailureReason, Observations, ProbeContext, Prober};

/// The `tls` prober.
pub struct Tls;

impl Prober for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn probe<'a>(&'a self, cx: &'a mut ProbeContext<'_>) -> BoxFuture<'a, CheckOutput> {
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
                        .and_then(crate::tls_client::not_after);
                    cx.debug(format!(
                        "TLS {:?} with {sni}, cert notAfter {not_after:?}",
                        session.protocol_version()
                    ));
                    CheckOutput::pass(Observations {
                        remote,
                        cert_not_after: not_after,
                        ..Observations::default()
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
    match err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => Failure::new(
            FailureReason::CertInvalid,
            format!("certificate rejected: {c:?}"),
        ),
        Some(other) => Failure::new(FailureReason::TlsError, format!("handshake failed: {other}")),
        None => match FailureReason::from_io(err) {
            FailureReason::Other => {
                Failure::new(FailureReason::TlsError, format!("handshake failed: {err}"))
            }
            r => Failure::new(r, format!("handshake failed: {err}")),
        },
    }
}
