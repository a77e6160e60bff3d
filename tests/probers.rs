//! The probers against real peers on 127.0.0.1 and [::1]: every check on both families, and
//! every failure reason a local peer can produce (refused, timeout, nxdomain, nodata, servfail,
//! http_status, cert_invalid, skipped), plus observations, redirects held to their family,
//! `addresses: all` and expectation judging. Targets are built from YAML through `Config`, with
//! the resolver pointed at the test DNS server, exactly as the binary builds them.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use dualprobe::model::family::Family;
use dualprobe::checks;
use dualprobe::model::check_kind::CheckKind;
use dualprobe::model::failure::{Failure, FailureReason};
use dualprobe::model::outcome::{Observations, Outcome};
use dualprobe::model::target::Expect;
use hickory_proto::rr::RecordType;

use support::dns::Transport;
use support::{
    A_ONLY_HOST, DUAL_HOST, HangUpServer, HttpServer, Lab, MISSING_HOST, NeverAccepting, Pki,
    SERVFAIL_HOST, SILENT_HOST, SilentServer, TWICE_HOST, TlsServer, closed_port, detail,
    eventually, labels, loopback, other_loopback, outcome, show,
};

/// 2045-06-01T00:00:00Z, computed outside rcgen: the notAfter the good certificate carries.
const GOOD_NOT_AFTER: i64 = 2_379_888_000;
/// 2021-01-01T00:00:00Z: the expired certificate's notAfter.
const EXPIRED_NOT_AFTER: i64 = 1_609_459_200;

/// A deadline short enough to keep timeout tests fast, long enough for loopback work.
const SHORT: Duration = Duration::from_millis(500);

/// Asserts a timed-out check ended at its deadline: it waited (not an instant error) and did
/// not overrun it by more than a scheduling margin.
fn assert_deadline_honoured(o: &Outcome, timeout: Duration) {
    assert!(
        o.duration >= timeout / 2,
        "{} gave up after {:?}, before its {timeout:?} deadline",
        o.check.name(),
        o.duration
    );
    assert!(
        o.duration < timeout + Duration::from_secs(1),
        "{} took {:?}, past its {timeout:?} deadline",
        o.check.name(),
        o.duration
    );
}

// ---- passes ---------------------------------------------------------------------------------

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
    assert_eq!(target.http.scheme, "https");
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
        assert_eq!(http.observations.value("http_status"), Some(200), "{family}");
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
        assert_eq!(outcome(&report, "http").observations.value("http_status"), Some(200));
        assert_eq!(server.hits(family, "/ok"), 1, "{family}");
    }
}

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

// ---- DNS ------------------------------------------------------------------------------------

#[tokio::test]
async fn dns_answers_counts_every_record_of_the_family() {
    let lab = Lab::new();
    // Documentation addresses: only looked up, never connected to.
    let a = [
        "192.0.2.10".parse().unwrap(),
        "192.0.2.11".parse().unwrap(),
        "192.0.2.12".parse().unwrap(),
    ];
    let aaaa = [
        "2001:db8::10".parse().unwrap(),
        "2001:db8::11".parse().unwrap(),
    ];
    lab.dns.update(|z| z.set("many.test", &a, &aaaa));
    let target = lab.target(
        r#"
        name: many
        host: many.test
        checks: [dns]
        "#,
    );
    for (family, want) in [
        (
            Family::Ipv4,
            a.iter().map(|ip| IpAddr::V4(*ip)).collect::<Vec<_>>(),
        ),
        (
            Family::Ipv6,
            aaaa.iter().map(|ip| IpAddr::V6(*ip)).collect(),
        ),
    ] {
        let report = lab.run(&target, family).await;
        let dns = outcome(&report, "dns");
        assert_eq!(dns.result_label(), "ok", "{}", show(&report));
        assert_eq!(
            dns.observations.value("dns_answers"),
            Some(want.len() as i64),
            "{family}"
        );
        assert_eq!(
            dns.observations.addresses, want,
            "{family}: server order kept"
        );
    }
    assert_eq!(lab.dns.queries_for("many.test", RecordType::A), 1);
    assert_eq!(lab.dns.queries_for("many.test", RecordType::AAAA), 1);
}

#[tokio::test]
async fn unknown_name_is_nxdomain_and_later_checks_are_skipped() {
    let lab = Lab::new();
    let target = lab.target(&format!(
        r#"
        name: missing
        host: {MISSING_HOST}
        port: 443
        checks: [dns, tcp, tls]
        "#
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "nxdomain"), ("tcp", "skipped"), ("tls", "skipped")],
            "{family}: {}",
            show(&report)
        );
        assert_eq!(outcome(&report, "dns").observations.value("dns_answers"), Some(0));
        assert_eq!(outcome(&report, "tcp").duration, Duration::ZERO);
        assert!(detail(&report, "dns").contains(MISSING_HOST));
    }
}

#[tokio::test]
async fn a_only_name_passes_over_ipv4_and_is_nodata_over_ipv6() {
    let lab = Lab::new();
    let server = TlsServer::start(&lab.pki.server);
    let target = lab.target(&format!(
        r#"
        name: v4-only
        host: {A_ONLY_HOST}
        port: {port}
        checks: [dns, tcp, tls]
        tls: {{ ca_file: {ca} }}
        "#,
        port = server.port(),
        ca = lab.pki.ca_file_yaml()
    ));
    let v4 = lab.run(&target, Family::Ipv4).await;
    assert_eq!(
        labels(&v4),
        [("dns", "ok"), ("tcp", "ok"), ("tls", "ok")],
        "{}",
        show(&v4)
    );
    assert_eq!(v4.expectation_met, Some(true));

    let v6 = lab.run(&target, Family::Ipv6).await;
    assert_eq!(
        labels(&v6),
        [("dns", "nodata"), ("tcp", "skipped"), ("tls", "skipped")],
        "{}",
        show(&v6)
    );
    assert_eq!(outcome(&v6, "dns").observations.value("dns_answers"), Some(0));
    assert!(detail(&v6, "dns").contains("AAAA"), "{}", show(&v6));
    assert_eq!(v6.expectation_met, Some(false));
    eventually("the IPv4 handshake", || server.handshakes() == 1).await;
    assert_eq!(server.handshakes(), 1, "nothing was sent over IPv6");
}

#[tokio::test]
async fn servfail_is_servfail() {
    let lab = Lab::new();
    let target = lab.target(&format!(
        r#"
        name: broken
        host: {SERVFAIL_HOST}
        checks: [dns, tcp]
        "#
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "servfail"), ("tcp", "skipped")],
            "{family}: {}",
            show(&report)
        );
    }
}

#[tokio::test]
async fn silent_nameserver_times_out_at_the_check_deadline() {
    // The resolver would wait 5 s per query; the check's deadline must end it first.
    let lab = Lab::with_resolver_timeout(Duration::from_secs(5));
    let target = lab.target(&format!(
        r#"
        name: silent
        host: {SILENT_HOST}
        timeout: {ms}ms
        checks: [dns, tcp]
        "#,
        ms = SHORT.as_millis()
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "timeout"), ("tcp", "skipped")],
            "{family}: {}",
            show(&report)
        );
        assert_deadline_honoured(outcome(&report, "dns"), SHORT);
    }
    assert!(lab.dns.queries_for(SILENT_HOST, RecordType::A) >= 1);
    assert!(lab.dns.queries_for(SILENT_HOST, RecordType::AAAA) >= 1);
}

#[tokio::test]
async fn resolver_query_timeout_is_a_timeout_too() {
    // Here the resolver gives up first (300 ms < the 1 s check deadline): same reason.
    let lab = Lab::with_resolver_timeout(Duration::from_millis(300));
    let target = lab.target(&format!(
        r#"
        name: silent
        host: {SILENT_HOST}
        checks: [dns]
        "#
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "timeout")],
            "{family}: {}",
            show(&report)
        );
        assert_deadline_honoured(outcome(&report, "dns"), Duration::from_millis(300));
    }
}

#[tokio::test]
async fn every_cycle_asks_the_server_and_sees_withdrawn_aaaa() {
    let lab = Lab::new();
    let target = lab.target(&format!(
        r#"
        name: dual
        host: {DUAL_HOST}
        checks: [dns]
        "#
    ));
    let before = lab.run(&target, Family::Ipv6).await;
    assert_eq!(labels(&before), [("dns", "ok")], "{}", show(&before));

    lab.dns.update(|z| z.withdraw_aaaa(DUAL_HOST));
    let after = lab.run(&target, Family::Ipv6).await;
    assert_eq!(labels(&after), [("dns", "nodata")], "{}", show(&after));
    let v4 = lab.run(&target, Family::Ipv4).await;
    assert_eq!(labels(&v4), [("dns", "ok")], "A records stay");

    // No cache: each cycle was a real query.
    assert_eq!(lab.dns.queries_for(DUAL_HOST, RecordType::AAAA), 2);
    assert_eq!(lab.dns.queries_for(DUAL_HOST, RecordType::A), 1);

    lab.dns.update(|z| z.remove(DUAL_HOST));
    let gone = lab.run(&target, Family::Ipv4).await;
    assert_eq!(labels(&gone), [("dns", "nxdomain")]);
}

#[tokio::test]
async fn dns_server_answers_over_ipv6_transport() {
    let lab = Lab::with_dns_over(Family::Ipv6);
    assert!(lab.nameserver().is_ipv6());
    let target = lab.target(&format!(
        r#"
        name: dual
        host: {DUAL_HOST}
        checks: [dns]
        "#
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok")],
            "{family}: {}",
            show(&report)
        );
        assert_eq!(
            outcome(&report, "dns").observations.addresses,
            [loopback(family)]
        );
    }
    let log = lab.dns.log();
    assert!(!log.is_empty());
    assert!(
        log.iter().all(|q| q.server_family == Family::Ipv6),
        "{log:?}"
    );
}

#[tokio::test]
async fn truncated_udp_answers_are_retried_over_tcp() {
    let lab = Lab::new();
    lab.dns.update(|z| z.force_tcp = true);
    let target = lab.target(&format!(
        r#"
        name: dual
        host: {DUAL_HOST}
        checks: [dns]
        "#
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok")],
            "{family}: {}",
            show(&report)
        );
        assert_eq!(
            outcome(&report, "dns").observations.addresses,
            [loopback(family)]
        );
    }
    let log = lab.dns.log();
    assert!(log.iter().any(|q| q.transport == Transport::Udp), "{log:?}");
    assert!(log.iter().any(|q| q.transport == Transport::Tcp), "{log:?}");
}

// ---- TCP ------------------------------------------------------------------------------------

#[tokio::test]
async fn closed_port_is_refused() {
    let lab = Lab::new();
    let target = lab.target(&format!(
        r#"
        name: closed
        host: {DUAL_HOST}
        port: {port}
        checks: [dns, tcp, tls]
        "#,
        port = closed_port()
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "refused"), ("tls", "skipped")],
            "{family}: {}",
            show(&report)
        );
        assert_eq!(
            outcome(&report, "tcp").observations.addresses,
            [loopback(family)],
            "the address tried is reported even on failure"
        );
        assert_eq!(report.expectation_met, Some(false));
    }
}

#[tokio::test]
async fn never_accepting_listener_times_out_at_the_deadline() {
    let lab = Lab::new();
    let hole = NeverAccepting::full();
    let target = lab.target(&format!(
        r#"
        name: hole
        host: {DUAL_HOST}
        port: {port}
        timeout: {ms}ms
        checks: [dns, tcp, tls]
        "#,
        port = hole.port(),
        ms = SHORT.as_millis()
    ));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "timeout"), ("tls", "skipped")],
            "{family}: {}",
            show(&report)
        );
        assert_deadline_honoured(outcome(&report, "tcp"), SHORT);
    }
}

#[tokio::test]
async fn addresses_all_fails_when_one_address_fails() {
    let lab = Lab::new();
    // Each family resolves to its loopback twice. A one-slot listener completes the first
    // connect and drops the second SYN: one working address, one that never answers.
    let first = NeverAccepting::one_slot();
    let all = NeverAccepting::one_slot();
    let config = lab.config(&[
        &format!(
            "name: first\nhost: {TWICE_HOST}\nport: {}\ntimeout: {}ms\nchecks: [dns, tcp]",
            first.port(),
            SHORT.as_millis()
        ),
        &format!(
            "name: all\nhost: {TWICE_HOST}\nport: {}\ntimeout: {}ms\naddresses: all\nchecks: [dns, tcp]",
            all.port(),
            SHORT.as_millis()
        ),
    ]);
    let (first_target, all_target) = (&config.targets[0], &config.targets[1]);
    for family in Family::ALL {
        let report = lab.run(first_target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok")],
            "{family}: {}",
            show(&report)
        );
        assert_eq!(outcome(&report, "dns").observations.value("dns_answers"), Some(2));
        assert_eq!(
            outcome(&report, "tcp").observations.addresses,
            [loopback(family)]
        );

        let report = lab.run(all_target, family).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "timeout")],
            "{family}: {}",
            show(&report)
        );
        assert_deadline_honoured(outcome(&report, "tcp"), SHORT);
    }
}

// ---- TLS ------------------------------------------------------------------------------------

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

// ---- HTTP -----------------------------------------------------------------------------------

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
        assert_eq!(outcome(&report, "http").observations.value("http_status"), Some(500));
        assert!(detail(&report, "http").contains("500"));

        let report = lab.run(&accepted, family).await;
        assert_eq!(
            outcome(&report, "http").result_label(),
            "ok",
            "{}",
            show(&report)
        );
        assert_eq!(outcome(&report, "http").observations.value("http_status"), Some(500));
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
        assert_eq!(outcome(&report, "http").observations.value("http_status"), Some(200));
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
        assert_eq!(outcome(&report, "http").observations.value("http_status"), Some(302));
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
        assert_eq!(outcome(&v4, "http").observations.value("http_status"), Some(200));
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

// ---- expectations ---------------------------------------------------------------------------

#[tokio::test]
async fn expectation_unreachable_is_judged_on_real_cycles() {
    let lab = Lab::new();
    let server = TlsServer::start(&lab.pki.server);
    let config = lab.config(&[
        &format!(
            "name: closed\nhost: {DUAL_HOST}\nport: {}\nchecks: [dns, tcp]\nexpect: {{ ipv4: unreachable, ipv6: unreachable }}",
            closed_port()
        ),
        &format!(
            "name: open\nhost: {DUAL_HOST}\nport: {}\nchecks: [dns, tcp]\nexpect: {{ ipv4: unreachable, ipv6: any }}",
            server.port()
        ),
        &format!(
            "name: no-aaaa\nhost: {A_ONLY_HOST}\nport: {}\nchecks: [dns, tcp]\nexpect: {{ ipv4: reachable, ipv6: unreachable }}",
            server.port()
        ),
    ]);
    let run = |i: usize, family| lab.run(&config.targets[i], family);
    for family in Family::ALL {
        assert_eq!(
            run(0, family).await.expectation_met,
            Some(true),
            "closed port, {family}"
        );
    }
    assert_eq!(
        run(1, Family::Ipv4).await.expectation_met,
        Some(false),
        "it connected"
    );
    assert_eq!(
        run(1, Family::Ipv6).await.expectation_met,
        None,
        "any is not judged"
    );
    assert_eq!(run(2, Family::Ipv4).await.expectation_met, Some(true));
    assert_eq!(
        run(2, Family::Ipv6).await.expectation_met,
        Some(true),
        "no AAAA: no path"
    );
}

fn judged(expect: Expect, results: &[(&str, Option<FailureReason>)]) -> Option<bool> {
    let checks: Vec<Outcome> = results
        .iter()
        .map(|(name, failure)| Outcome {
            check: CheckKind::from_name(name).expect("known check"),
            result: match failure {
                None => Ok(()),
                Some(r) => Err(Failure::new(*r, "test")),
            },
            duration: Duration::ZERO,
            observations: Observations::default(),
        })
        .collect();
    checks::judge(expect, &checks)
}

#[test]
fn judge_rules() {
    use FailureReason::*;
    let ok = None;
    // unreachable: DNS may pass, nothing above it may.
    assert_eq!(
        judged(Expect::Unreachable, &[("dns", ok), ("tcp", Some(Timeout))]),
        Some(true)
    );
    assert_eq!(
        judged(
            Expect::Unreachable,
            &[("dns", ok), ("tcp", Some(Refused)), ("tls", Some(Skipped))]
        ),
        Some(true)
    );
    assert_eq!(
        judged(
            Expect::Unreachable,
            &[("dns", ok), ("tcp", ok), ("tls", Some(CertInvalid))]
        ),
        Some(false),
        "tcp connected: the family has a path"
    );
    assert_eq!(
        judged(
            Expect::Unreachable,
            &[("dns", Some(Nodata)), ("tcp", Some(Skipped))]
        ),
        Some(true)
    );
    // A DNS-only chain is judged on DNS itself.
    assert_eq!(
        judged(Expect::Unreachable, &[("dns", Some(Nxdomain))]),
        Some(true)
    );
    assert_eq!(judged(Expect::Unreachable, &[("dns", ok)]), Some(false));
    // reachable: everything passes.
    assert_eq!(
        judged(Expect::Reachable, &[("dns", ok), ("tcp", ok)]),
        Some(true)
    );
    assert_eq!(
        judged(Expect::Reachable, &[("dns", ok), ("tcp", Some(Timeout))]),
        Some(false)
    );
    // any: never judged.
    assert_eq!(
        judged(Expect::Any, &[("dns", ok), ("tcp", Some(Timeout))]),
        None
    );
}

#[test]
fn pki_dates_are_the_fixed_ones() {
    let pki = Pki::new();
    assert_eq!(pki.server.not_after, GOOD_NOT_AFTER);
    assert_eq!(pki.expired.not_after, EXPIRED_NOT_AFTER);
    assert!(pki.ca_file.exists());
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
        assert_eq!(outcome(&report, "http").observations.value("http_status"), Some(200));
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
