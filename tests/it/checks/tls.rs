//! The `tls` check: handshakes that reuse the `tcp` check's connection or open their own on the
//! family, the real notAfter, a stalled handshake, a peer hanging up, a non-TLS peer, certificate
//! problems, `insecure_skip_verify` and `server_name`.

use std::time::Duration;

use dualprobe::model::family::Family;

use super::{EXPIRED_NOT_AFTER, GOOD_NOT_AFTER, SHORT, assert_deadline_honoured};
use crate::support::{
    DUAL_HOST, HangUpServer, HttpServer, Lab, Pki, SilentServer, TlsServer, detail, eventually,
    labels, outcome, show,
};

#[tokio::test]
async fn tls_handshake_completes_and_records_the_real_not_after() {
    let lab = Lab::new();
    let server = TlsServer::start(&lab.pki.server);
    let target = lab.target(&format!(
        r#"
        name: tls
        host: {DUAL_HOST}
        port: {port}
        checks: [dns, tcp, tls]
        tls: {{ ca_file: {ca} }}
        "#,
        port = server.port(),
        ca = lab.pki.ca_file_yaml()
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("tls", "ok")],
            "{family}: {}",
            show(&report)
        );
        assert_eq!(
            outcome(&report, "tls").observations.value("cert_not_after"),
            Some(GOOD_NOT_AFTER)
        );
    }
    // The tls check reused the connection tcp opened: one handshake per family, no more.
    eventually("two server-side handshakes", || server.handshakes() == 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.handshakes(), 2);
}

#[tokio::test]
async fn tls_without_tcp_opens_its_own_connection_on_the_family() {
    let lab = Lab::new();
    let server = TlsServer::start(&lab.pki.server);
    let target = lab.target(&format!(
        "name: tls-alone\nhost: {DUAL_HOST}\nport: {}\nchecks: [dns, tls]\ntls: {{ ca_file: {} }}",
        server.port(),
        lab.pki.ca_file_yaml()
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tls", "ok")],
            "{}",
            show(&report)
        );
        assert_eq!(
            outcome(&report, "tls").observations.remote,
            Some(server.addr(family)),
            "{}",
            show(&report)
        );
    }
}

#[tokio::test]
async fn tls_server_that_never_answers_times_out() {
    let lab = Lab::new();
    let silent = SilentServer::start();
    let target = lab.target(&format!(
        r#"
        name: stall
        host: {DUAL_HOST}
        port: {port}
        timeout: {ms}ms
        checks: [dns, tcp, tls, http]
        "#,
        port = silent.port(),
        ms = SHORT.as_millis()
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [
                ("dns", "ok"),
                ("tcp", "ok"),
                ("tls", "timeout"),
                ("http", "skipped")
            ],
            "{family}: {}",
            show(&report)
        );
        assert_deadline_honoured(outcome(&report, "tls"), SHORT);
    }
    eventually("both connections accepted", || silent.accepted() == 2).await;
}

#[tokio::test]
async fn peer_hanging_up_mid_handshake_is_reset() {
    let lab = Lab::new();
    let rude = HangUpServer::start();
    let target = lab.target(&format!(
        "name: hang-up\nhost: {DUAL_HOST}\nport: {}\nchecks: [dns, tcp, tls]",
        rude.port()
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("tls", "reset")],
            "{family}: {}",
            show(&report)
        );
    }
}

#[tokio::test]
async fn non_tls_peer_is_tls_error() {
    let lab = Lab::new();
    // A plain HTTP server answers the ClientHello with an HTTP 400: not a TLS record.
    let plain = HttpServer::plain();
    let target = lab.target(&format!(
        "name: not-tls\nhost: {DUAL_HOST}\nport: {}\nchecks: [dns, tcp, tls]",
        plain.port()
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("tls", "tls_error")],
            "{family}: {}",
            show(&report)
        );
    }
}

#[tokio::test]
async fn certificate_problems_are_cert_invalid() {
    let lab = Lab::new();
    let good = TlsServer::start(&lab.pki.server);
    let expired = TlsServer::start(&lab.pki.expired);
    let wrong_name = TlsServer::start(&lab.pki.wrong_name);
    let ca = lab.pki.ca_file_yaml();
    let tls_target = |name: &str, port: u16, tls: &str| {
        lab.target(&format!(
            "name: {name}\nhost: {DUAL_HOST}\nport: {port}\nchecks: [dns, tcp, tls]\ntls: {tls}"
        ))
    };
    let cases = [
        // The test CA is not among the built-in roots.
        (tls_target("unknown-ca", good.port(), "{}"), "UnknownIssuer"),
        (
            tls_target("expired", expired.port(), &format!("{{ ca_file: {ca} }}")),
            "Expired",
        ),
        (
            tls_target(
                "wrong-name",
                wrong_name.port(),
                &format!("{{ ca_file: {ca} }}"),
            ),
            "NotValidForName",
        ),
    ];
    for (target, why) in &cases {
        for family in Family::ALL {
            let report = lab.run(target, family).await;
            assert_eq!(
                labels(&report),
                [("dns", "ok"), ("tcp", "ok"), ("tls", "cert_invalid")],
                "{} {family}: {}",
                target.name,
                show(&report)
            );
            assert!(
                detail(&report, "tls").contains(why),
                "{} {family}: detail should say {why}: {}",
                target.name,
                show(&report)
            );
        }
    }
}

#[tokio::test]
async fn insecure_skip_verify_completes_and_still_records_expiry() {
    let lab = Lab::new();
    let expired = TlsServer::start(&lab.pki.expired);
    let target = lab.target(&format!(
        r#"
        name: insecure
        host: {DUAL_HOST}
        port: {port}
        checks: [dns, tcp, tls]
        tls: {{ insecure_skip_verify: true }}
        "#,
        port = expired.port()
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("tls", "ok")],
            "{}",
            show(&report)
        );
        assert_eq!(
            outcome(&report, "tls").observations.value("cert_not_after"),
            Some(EXPIRED_NOT_AFTER)
        );
    }
}

#[tokio::test]
async fn tls_server_name_overrides_the_verified_name() {
    let lab = Lab::new();
    let wrong_name = TlsServer::start(&lab.pki.wrong_name);
    let target = lab.target(&format!(
        r#"
        name: sni
        host: {DUAL_HOST}
        port: {port}
        checks: [dns, tcp, tls]
        tls: {{ ca_file: {ca}, server_name: wrong.test }}
        "#,
        port = wrong_name.port(),
        ca = lab.pki.ca_file_yaml()
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("tls", "ok")],
            "{}",
            show(&report)
        );
    }
}

#[test]
fn pki_dates_are_the_fixed_ones() {
    let pki = Pki::new();
    assert_eq!(pki.server.not_after, GOOD_NOT_AFTER);
    assert_eq!(pki.expired.not_after, EXPIRED_NOT_AFTER);
    assert!(pki.ca_file.exists());
}
