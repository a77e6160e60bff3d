//! Chains of several checks against real peers on 127.0.0.1 and [::1]: a full HTTPS chain and a
//! plain HTTP chain passing on both families with their observations, and IP literals probed only
//! over their own family.

use std::net::SocketAddr;

use dualprobe::model::family::Family;

use super::GOOD_NOT_AFTER;
use crate::support::{
    DUAL_HOST, HttpServer, Lab, TlsServer, detail, labels, loopback, outcome, show,
};

#[tokio::test]
async fn full_https_chain_passes_on_both_families() {
    let lab = Lab::new();
    let server = HttpServer::https(&lab.pki.server);
    let port = server.port();
    let target = lab.target(&format!(
        r#"
        name: web
        host: {DUAL_HOST}
        port: {port}
        checks: [dns, tcp, tls, http]
        http: {{ path: /ok }}
        tls: {{ ca_file: {ca} }}
        "#,
        ca = lab.pki.ca_file_yaml()
    ));
    assert_eq!(dualprobe::checks::http::scheme(&target).as_str(), "https");
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("tls", "ok"), ("http", "ok")],
            "{family}: {}",
            show(&report)
        );
        let peer = SocketAddr::new(loopback(family), port);
        let dns = outcome(&report, "dns");
        assert_eq!(dns.observations.value("dns_answers"), Some(1), "{family}");
        assert_eq!(dns.observations.addresses, [loopback(family)], "{family}");
        assert_eq!(
            outcome(&report, "tcp").observations.remote,
            Some(peer),
            "{family}"
        );
        let tls = outcome(&report, "tls");
        assert_eq!(
            tls.observations.value("cert_not_after"),
            Some(GOOD_NOT_AFTER),
            "{family}"
        );
        assert_eq!(tls.observations.remote, Some(peer), "{family}");
        let http = outcome(&report, "http");
        assert_eq!(
            http.observations.value("http_status"),
            Some(200),
            "{family}"
        );
        assert_eq!(http.observations.remote, Some(peer), "{family}");
        assert_eq!(report.expectation_met, Some(true), "{family}");
        assert!(report.all_passed());
        assert_eq!(
            server.hits(family, "/ok"),
            1,
            "{family}: {:?}",
            server.log()
        );
    }
    assert_eq!(lab.pki.server.not_after, GOOD_NOT_AFTER);
}

#[tokio::test]
async fn plain_http_chain_passes_on_both_families() {
    let lab = Lab::new();
    let server = HttpServer::plain();
    let target = lab.target(&format!(
        r#"
        name: plain
        host: {DUAL_HOST}
        port: {port}
        checks: [dns, tcp, http]
        http: {{ path: /ok, scheme: http }}
        "#,
        port = server.port()
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("http", "ok")],
            "{family}: {}",
            show(&report)
        );
        assert_eq!(
            outcome(&report, "http").observations.value("http_status"),
            Some(200)
        );
        assert_eq!(server.hits(family, "/ok"), 1, "{family}");
    }
}

#[tokio::test]
async fn ip_literals_probe_only_their_own_family() {
    let lab = Lab::new();
    let server = TlsServer::start(&lab.pki.server);
    for family in Family::ALL {
        let ip = loopback(family);
        let target = lab.target(&format!(
            r#"
            name: literal
            host: "{ip}"
            port: {port}
            checks: [dns, tcp, tls]
            families: [ipv4, ipv6]
            tls: {{ ca_file: {ca} }}
            "#,
            port = server.port(),
            ca = lab.pki.ca_file_yaml()
        ));
        // Config drops `dns` and the other family for a literal.
        assert_eq!(target.families, [family]);
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("tcp", "ok"), ("tls", "ok")],
            "{}",
            show(&report)
        );
        // Forced over the other family anyway (as an ad-hoc probe could), nothing is sent.
        let other = if family == Family::Ipv4 {
            Family::Ipv6
        } else {
            Family::Ipv4
        };
        let report = lab.run(&target, other).await;
        assert_eq!(
            labels(&report),
            [("tcp", "unreachable"), ("tls", "skipped")]
        );
        assert!(
            detail(&report, "tcp").contains("is not an"),
            "{}",
            show(&report)
        );
    }
    assert_eq!(lab.dns.queries(), 0, "literals need no lookup");
}
