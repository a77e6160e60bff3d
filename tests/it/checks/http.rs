//! The `http` check: status codes, connect failures without a `tcp` check, redirects held to
//! the family (an A-only host, the other family's literal, an IPv4-mapped address), redirect
//! loops, a slow answer, an unknown CA and `tls.server_name`.

use dualprobe::model::family::Family;

use super::{SHORT, assert_deadline_honoured};
use crate::support::{
    A_ONLY_HOST, DUAL_HOST, HttpServer, Lab, NeverAccepting, closed_port, detail, labels,
    other_loopback, outcome, show,
};

fn http_target(
    lab: &Lab,
    server: &HttpServer,
    name: &str,
    extra: &str,
) -> std::sync::Arc<dualprobe::model::target::Target> {
    lab.target(&format!(
        "name: {name}\nhost: {DUAL_HOST}\nport: {port}\nchecks: [dns, tcp, http]\n{extra}",
        port = server.port()
    ))
}

#[tokio::test]
async fn http_500_is_http_status_and_recorded() {
    let lab = Lab::new();
    let server = HttpServer::plain();
    let failing = http_target(&lab, &server, "fail", "http: { path: /fail }");
    let accepted = http_target(
        &lab,
        &server,
        "fail-ok",
        "http: { path: /fail, expect_status: [500] }",
    );
    for family in Family::ALL {
        let report = lab.run(&failing, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("http", "http_status")],
            "{family}: {}",
            show(&report)
        );
        assert_eq!(
            outcome(&report, "http").observations.value("http_status"),
            Some(500)
        );
        assert!(detail(&report, "http").contains("500"));

        let report = lab.run(&accepted, family).await;
        assert_eq!(
            outcome(&report, "http").result_label(),
            "ok",
            "{}",
            show(&report)
        );
        assert_eq!(
            outcome(&report, "http").observations.value("http_status"),
            Some(500)
        );
    }
}

#[tokio::test]
async fn http_check_alone_classifies_connect_failures() {
    let lab = Lab::new();
    let hole = NeverAccepting::full();
    let config = lab.config(&[
        &format!(
            "name: refused\nhost: {DUAL_HOST}\nport: {}\nchecks: [http]",
            closed_port()
        ),
        &format!(
            "name: hole\nhost: {DUAL_HOST}\nport: {}\ntimeout: {}ms\nchecks: [http]",
            hole.port(),
            SHORT.as_millis()
        ),
        &format!(
            "name: nodata\nhost: {A_ONLY_HOST}\nport: {}\nchecks: [http]",
            closed_port()
        ),
    ]);
    for family in Family::ALL {
        let report = lab.run(&config.targets[0], family).await;
        assert_eq!(
            labels(&report),
            [("http", "refused")],
            "{family}: {}",
            show(&report)
        );
        let report = lab.run(&config.targets[1], family).await;
        assert_eq!(
            labels(&report),
            [("http", "timeout")],
            "{family}: {}",
            show(&report)
        );
        assert_deadline_honoured(outcome(&report, "http"), SHORT);
    }
    // Without a `dns` check the chain still resolves only the family's records.
    let report = lab.run(&config.targets[2], Family::Ipv6).await;
    assert_eq!(labels(&report), [("http", "nodata")], "{}", show(&report));
}

#[tokio::test]
async fn redirects_are_followed_on_the_same_family() {
    let lab = Lab::new();
    let server = HttpServer::plain();
    let follow = http_target(&lab, &server, "redirect", "http: { path: /redirect }");
    let stay = http_target(
        &lab,
        &server,
        "no-follow",
        "http: { path: /redirect, follow_redirects: false }",
    );
    for family in Family::ALL {
        let report = lab.run(&follow, family).await;
        assert_eq!(
            outcome(&report, "http").result_label(),
            "ok",
            "{family}: {}",
            show(&report)
        );
        assert_eq!(
            outcome(&report, "http").observations.value("http_status"),
            Some(200)
        );
        assert_eq!(server.hits(family, "/redirect"), 1, "{family}");
        assert_eq!(
            server.hits(family, "/ok"),
            1,
            "{family}: {:?}",
            server.log()
        );

        let report = lab.run(&stay, family).await;
        assert_eq!(
            outcome(&report, "http").result_label(),
            "http_status",
            "{}",
            show(&report)
        );
        assert_eq!(
            outcome(&report, "http").observations.value("http_status"),
            Some(302)
        );
    }
}

#[tokio::test]
async fn redirect_to_an_a_only_host_fails_over_ipv6_with_nodata() {
    let lab = Lab::new();
    for server in [HttpServer::plain(), HttpServer::https(&lab.pki.server)] {
        let target = http_target(
            &lab,
            &server,
            server.scheme(),
            &format!(
                "http: {{ path: /redirect-a-only, scheme: {} }}\ntls: {{ ca_file: {} }}",
                server.scheme(),
                lab.pki.ca_file_yaml()
            ),
        );
        let v4 = lab.run(&target, Family::Ipv4).await;
        assert_eq!(outcome(&v4, "http").result_label(), "ok", "{}", show(&v4));
        assert_eq!(
            outcome(&v4, "http").observations.value("http_status"),
            Some(200)
        );
        assert_eq!(server.hits(Family::Ipv4, "/ok"), 1);

        let v6 = lab.run(&target, Family::Ipv6).await;
        assert_eq!(
            labels(&v6),
            [("dns", "ok"), ("tcp", "ok"), ("http", "nodata")],
            "{}: {}",
            server.scheme(),
            show(&v6)
        );
        let why = detail(&v6, "http");
        assert!(
            why.contains(A_ONLY_HOST) && why.contains("AAAA"),
            "unclear: {why}"
        );
        assert_eq!(server.hits(Family::Ipv6, "/redirect-a-only"), 1);
        assert_eq!(server.hits(Family::Ipv6, "/ok"), 0);
        assert_eq!(
            server.hits(Family::Ipv4, "/ok"),
            1,
            "IPv6 never fell back to IPv4"
        );
    }
}

#[tokio::test]
async fn redirect_to_an_ip_literal_of_the_other_family_fails() {
    let lab = Lab::new();
    let server = HttpServer::plain();
    let target = http_target(
        &lab,
        &server,
        "other-family",
        "http: { path: /redirect-other-family }",
    );
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("http", "unreachable")],
            "{family}: {}",
            show(&report)
        );
        let why = detail(&report, "http");
        assert!(
            why.contains(&other_loopback(family).to_string()) && why.contains(family.as_str()),
            "unclear: {why}"
        );
    }
    assert_eq!(
        server.hits(Family::Ipv4, "/ok") + server.hits(Family::Ipv6, "/ok"),
        0
    );
}

#[tokio::test]
async fn ipv4_mapped_aaaa_is_never_reached_over_ipv4() {
    // `::ffff:127.0.0.1` is an IPv6 address whose packets, on a dual-stack socket, are IPv4.
    // An AAAA record holding one must not let an "ipv6" probe pass over IPv4.
    let lab = Lab::new();
    let mapped: std::net::Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
    lab.dns.update(|z| z.set("mapped.test", &[], &[mapped]));
    let server = HttpServer::plain();
    let config = lab.config(&[
        &format!(
            "name: mapped-tcp\nhost: mapped.test\nport: {}\nchecks: [dns, tcp]",
            server.port()
        ),
        &format!(
            "name: mapped-http\nhost: mapped.test\nport: {}\nchecks: [http]\nhttp: {{ path: /ok }}",
            server.port()
        ),
        &format!(
            "name: mapped-redirect\nhost: {DUAL_HOST}\nport: {}\nchecks: [http]\nhttp: {{ path: /redirect-mapped }}",
            server.port()
        ),
    ]);
    for target in &config.targets {
        let report = lab.run(target, Family::Ipv6).await;
        let last = report.checks.last().expect("a check");
        assert_eq!(last.result_label(), "unreachable", "{}", show(&report));
        assert!(
            detail(&report, last.check.name()).contains("::ffff:127.0.0.1"),
            "{}",
            show(&report)
        );
    }
    assert_eq!(
        server.hits(Family::Ipv4, "/ok"),
        0,
        "reached over IPv4: {:?}",
        server.log()
    );
}

#[tokio::test]
async fn redirect_loop_is_http_status() {
    let lab = Lab::new();
    let server = HttpServer::plain();
    let target = http_target(&lab, &server, "loop", "http: { path: /redirect-loop }");
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            outcome(&report, "http").result_label(),
            "http_status",
            "{}",
            show(&report)
        );
        assert!(
            detail(&report, "http").contains("redirects"),
            "{}",
            show(&report)
        );
    }
}

#[tokio::test]
async fn slow_http_answer_times_out_at_the_deadline() {
    let lab = Lab::new();
    let server = HttpServer::plain();
    let target = http_target(
        &lab,
        &server,
        "slow",
        &format!("timeout: {}ms\nhttp: {{ path: /slow }}", SHORT.as_millis()),
    );
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("http", "timeout")],
            "{family}: {}",
            show(&report)
        );
        assert_deadline_honoured(outcome(&report, "http"), SHORT);
    }
}

#[tokio::test]
async fn https_without_the_ca_is_cert_invalid_in_the_http_check_too() {
    let lab = Lab::new();
    let server = HttpServer::https(&lab.pki.server);
    let target = http_target(
        &lab,
        &server,
        "https-unknown-ca",
        "http: { path: /ok, scheme: https }",
    );
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("http", "cert_invalid")],
            "{family}: {}",
            show(&report)
        );
    }
}

/// `tls.server_name` holds for the http check too: the request names the server (SNI, Host,
/// verification) while the connection goes to the target's own host, like curl's `--resolve`.
#[tokio::test]
async fn http_check_uses_tls_server_name_and_connects_to_the_target_host() {
    let lab = Lab::new();
    let server = HttpServer::https(&lab.pki.wrong_name);
    let yaml = |server_name: &str| {
        format!(
            r#"
            name: sni-http
            host: {DUAL_HOST}
            port: {port}
            checks: [dns, tcp, http]
            http: {{ path: /ok, scheme: https }}
            tls: {{ ca_file: {ca}{server_name} }}
            "#,
            port = server.port(),
            ca = lab.pki.ca_file_yaml(),
        )
    };
    let with_name = lab.target(&yaml(", server_name: wrong.test"));
    let without = lab.target(&yaml(""));
    for family in Family::ALL {
        let report = lab.run(&with_name, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("http", "ok")],
            "{}",
            show(&report)
        );
        assert_eq!(
            outcome(&report, "http").observations.value("http_status"),
            Some(200)
        );
        // Without the override the certificate (for wrong.test) does not match the host.
        let report = lab.run(&without, family).await;
        assert_eq!(
            outcome(&report, "http").result_label(),
            "cert_invalid",
            "{}",
            show(&report)
        );
    }
    assert!(server.hits(Family::Ipv4, "/ok") > 0 && server.hits(Family::Ipv6, "/ok") > 0);
}
