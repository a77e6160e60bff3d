//! The `dns` check through the test DNS server: answers counted per family, NXDOMAIN, NODATA,
//! SERVFAIL, a silent server and a resolver timeout (both ending at the deadline), no cache,
//! DNS over IPv6 transport and truncated UDP answers retried over TCP.

use std::net::IpAddr;
use std::time::Duration;

use dualprobe::model::family::Family;
use hickory_proto::rr::RecordType;

use super::{SHORT, assert_deadline_honoured};
use crate::support::dns::Transport;
use crate::support::{
    A_ONLY_HOST, DUAL_HOST, Lab, MISSING_HOST, SERVFAIL_HOST, SILENT_HOST, TlsServer, detail,
    eventually, labels, loopback, outcome, show,
};

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
        assert_eq!(
            outcome(&report, "dns").observations.value("dns_answers"),
            Some(0)
        );
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
    assert_eq!(
        outcome(&v6, "dns").observations.value("dns_answers"),
        Some(0)
    );
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

/// A name AWS documents as dual-stack with no AAAA: `nodata`, and the detail says why that is
/// wrong for this name, not just that the record is missing.
#[tokio::test]
async fn a_documented_dual_stack_name_without_aaaa_says_so() {
    let lab = Lab::new();
    for name in [
        "s3.dualstack.us-east-1.amazonaws.com",
        "ec2.us-east-1.api.aws",
    ] {
        lab.dns
            .update(|z| z.set(name, &[std::net::Ipv4Addr::LOCALHOST], &[]));
        let target = lab.target(&format!(
            "name: aws\nhost: {name}\nport: 443\nchecks: [dns, tcp]"
        ));
        let r = lab.run(&target, Family::Ipv6).await;
        assert_eq!(
            labels(&r),
            [("dns", "nodata"), ("tcp", "skipped")],
            "{}",
            show(&r)
        );
        let d = detail(&r, "dns");
        assert!(
            d.starts_with(&format!("{name}: no AAAA records (NODATA); AWS documents")),
            "{d}"
        );
        assert!(d.contains("as dual-stack, so it should have AAAA"), "{d}");
        // Not for other names: a plain NODATA.
    }
    let r = lab
        .run(
            &lab.target(&format!("name: plain\nhost: {A_ONLY_HOST}\nchecks: [dns]")),
            Family::Ipv6,
        )
        .await;
    assert_eq!(
        detail(&r, "dns"),
        format!("{A_ONLY_HOST}: no AAAA records (NODATA)")
    );
}
