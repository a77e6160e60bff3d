//! NAT64 awareness on real loopback sockets (issue 13): the IPv6 path (`via`) of a cycle, the
//! `expect.via` and `expect: nodata` judgements, and `nat64_unreachable` for a synthesized
//! address that does not connect, against a plain timeout at a native one.
//!
//! [::1] stands in for a synthesized address: the table is given `::/96` directly (config
//! refuses that range, rightly, for real networks), so [::1] reads as NAT64 for 0.0.0.1 and
//! every socket stays on loopback. The real translator (tayga) and DNS64 (unbound) are in the
//! netns suite (`tests/netns/nat64.py`).

use dualprobe::checks::{self, CheckEnv};
use dualprobe::model::family::Family;
use dualprobe::model::nat64::Via;
use dualprobe::model::outcome::CycleReport;
use dualprobe::model::target::Target;
use dualprobe::net::nat64::Nat64Table;
use dualprobe::net::resolver::DnsResolver;
use std::sync::Arc;

use super::{SHORT, assert_deadline_honoured};
use crate::support::{
    A_ONLY_HOST, DUAL_HOST, HttpServer, Lab, NeverAccepting, closed_port, detail, labels, show,
};

/// [::1] (and every ::a.b.c.d) reads as synthesized.
fn loopback_as_nat64() -> Nat64Table {
    Nat64Table::new(&["::/96".parse().unwrap()])
}

async fn run_with(
    lab: &Lab,
    nat64: Nat64Table,
    target: &Arc<Target>,
    family: Family,
) -> CycleReport {
    let resolver = DnsResolver::new(&[lab.nameserver()], Lab::TIMEOUT).expect("resolver");
    let env = CheckEnv::new(resolver).with_nat64(nat64);
    checks::run_cycle(target, family, &env, true).await
}

#[tokio::test]
async fn every_ipv6_cycle_says_which_path_it_used() {
    let lab = Lab::new();
    let web = HttpServer::plain();
    let target = lab.target(&format!(
        "name: web\nhost: {DUAL_HOST}\nport: {}\nchecks: [dns, tcp, http]\nhttp: {{path: /ok}}",
        web.port()
    ));
    let native = run_with(&lab, Nat64Table::default(), &target, Family::Ipv6).await;
    let path = native
        .ipv6_path
        .unwrap_or_else(|| panic!("no path: {}", show(&native)));
    assert_eq!(
        (path.address.to_string().as_str(), path.via),
        ("::1", Via::Native)
    );

    let nat = run_with(&lab, loopback_as_nat64(), &target, Family::Ipv6).await;
    assert!(nat.all_passed(), "{}", show(&nat));
    let path = nat.ipv6_path.expect("path");
    assert_eq!(
        path.via,
        Via::Nat64 {
            prefix: "::/96".parse().unwrap(),
            ipv4: "0.0.0.1".parse().unwrap()
        }
    );
    let json = serde_json::to_value(&nat).unwrap();
    assert_eq!(json["ipv6_path"]["via"], "nat64", "{json:#}");
    assert_eq!(json["ipv6_path"]["ipv4"], "0.0.0.1", "{json:#}");
    assert_eq!(json["ipv6_path"]["nat64_prefix"], "::/96", "{json:#}");

    // IPv4 cycles have no IPv6 path.
    let v4 = run_with(&lab, loopback_as_nat64(), &target, Family::Ipv4).await;
    assert_eq!(v4.ipv6_path, None);
    assert!(
        serde_json::to_value(&v4)
            .unwrap()
            .get("ipv6_path")
            .is_none()
    );
}

#[tokio::test]
async fn via_assertions_are_judged() {
    let lab = Lab::new();
    let web = HttpServer::plain();
    let yaml = |via: &str| {
        format!(
            "name: s3\nhost: {DUAL_HOST}\nport: {}\nchecks: [dns, tcp, http]\nhttp: {{path: /ok}}\nexpect: {{ipv6: reachable, via: {{ipv6: {via}}}}}",
            web.port()
        )
    };
    let native = lab.target(&yaml("native"));
    let nat64 = lab.target(&yaml("nat64"));

    let r = run_with(&lab, Nat64Table::default(), &native, Family::Ipv6).await;
    assert_eq!(
        (r.expectation_met, &r.expectation_violation),
        (Some(true), &None),
        "{}",
        show(&r)
    );

    // The checks pass, the path is the wrong one: the expectation is what fails, and says why.
    let r = run_with(&lab, loopback_as_nat64(), &native, Family::Ipv6).await;
    assert!(r.all_passed(), "{}", show(&r));
    assert_eq!(r.expectation_met, Some(false));
    let v = r.expectation_violation.as_ref().expect("a violation");
    assert_eq!(v.reason, "expectation:via_nat64");
    assert_eq!(
        v.detail,
        "expected native IPv6, but the path was ::1 (NAT64 via ::/96 to 0.0.0.1)"
    );

    // CloudWatch sees the same: the expectation line carries the path and the violation.
    let docs = dualprobe::report::emf::documents("dp", &Default::default(), &r);
    let line = docs
        .iter()
        .find(|d| d.get("ExpectationMet").is_some())
        .expect("an expectation line");
    assert_eq!(
        (
            &line["ExpectationMet"],
            &line["via"],
            &line["ipv6_address"],
            &line["violation"]
        ),
        (
            &0.into(),
            &"nat64".into(),
            &"::1".into(),
            &"expectation:via_nat64".into()
        ),
        "{line:#}"
    );

    let r = run_with(&lab, Nat64Table::default(), &nat64, Family::Ipv6).await;
    assert_eq!(r.expectation_met, Some(false));
    assert_eq!(
        r.expectation_violation.as_ref().map(|v| v.reason),
        Some("expectation:via_native")
    );
    let r = run_with(&lab, loopback_as_nat64(), &nat64, Family::Ipv6).await;
    assert_eq!(r.expectation_met, Some(true), "{}", show(&r));

    // `via` says nothing of IPv4.
    let r = run_with(&lab, loopback_as_nat64(), &native, Family::Ipv4).await;
    assert_eq!(r.expectation_met, Some(true), "{}", show(&r));
}

#[tokio::test]
async fn a_synthesized_address_that_does_not_connect_is_nat64_unreachable() {
    let lab = Lab::new();
    let hole = NeverAccepting::full();
    let target = lab.target(&format!(
        "name: hole\nhost: {DUAL_HOST}\nport: {}\ntimeout: {}ms\nchecks: [dns, tcp, tls]",
        hole.port(),
        SHORT.as_millis()
    ));
    // Native: a plain timeout.
    let r = run_with(&lab, Nat64Table::default(), &target, Family::Ipv6).await;
    assert_eq!(
        labels(&r),
        [("dns", "ok"), ("tcp", "timeout"), ("tls", "skipped")],
        "{}",
        show(&r)
    );
    // Synthesized: the NAT64 path is named as what broke, at the same deadline.
    let r = run_with(&lab, loopback_as_nat64(), &target, Family::Ipv6).await;
    assert_eq!(
        labels(&r),
        [
            ("dns", "ok"),
            ("tcp", "nat64_unreachable"),
            ("tls", "skipped")
        ],
        "{}",
        show(&r)
    );
    assert_deadline_honoured(&r.checks[1], SHORT);
    let d = detail(&r, "tcp");
    assert!(
        d.starts_with(&format!("no answer from [::1]:{} within", hole.port())),
        "{d}"
    );
    assert!(d.contains("a NAT64 address for 0.0.0.1 under ::/96"), "{d}");
    assert_eq!(r.ipv6_path.map(|p| p.via.as_str()), Some("nat64"));

    // Without `tcp`, `tls` opens the connection itself: the same reason.
    let tls_only = lab.target(&format!(
        "name: hole-tls\nhost: {DUAL_HOST}\nport: {}\ntimeout: {}ms\nchecks: [dns, tls]",
        hole.port(),
        SHORT.as_millis()
    ));
    let r = run_with(&lab, loopback_as_nat64(), &tls_only, Family::Ipv6).await;
    assert_eq!(
        labels(&r),
        [("dns", "ok"), ("tls", "nat64_unreachable")],
        "{}",
        show(&r)
    );
}

#[tokio::test]
async fn a_refusal_through_nat64_is_a_refusal() {
    // An RST came back: the translator works and the IPv4 server refused. Not a NAT64 failure.
    let lab = Lab::new();
    let target = lab.target(&format!(
        "name: closed\nhost: {DUAL_HOST}\nport: {}\nchecks: [dns, tcp]",
        closed_port()
    ));
    let r = run_with(&lab, loopback_as_nat64(), &target, Family::Ipv6).await;
    assert_eq!(
        labels(&r),
        [("dns", "ok"), ("tcp", "refused")],
        "{}",
        show(&r)
    );
}

#[tokio::test]
async fn expect_nodata_holds_only_when_the_family_has_no_record() {
    let lab = Lab::new();
    let yaml = |host: &str| {
        format!(
            "name: vpce-{}\nhost: {host}\nchecks: [dns]\nexpect: {{ipv6: nodata}}",
            host.len()
        )
    };
    // An IPv4-only endpoint's name: no AAAA, as expected.
    let r = lab.run(&lab.target(&yaml(A_ONLY_HOST)), Family::Ipv6).await;
    assert_eq!(labels(&r), [("dns", "nodata")], "{}", show(&r));
    assert_eq!(
        (r.expectation_met, &r.expectation_violation),
        (Some(true), &None)
    );
    // The name answered AAAA after all.
    let r = lab.run(&lab.target(&yaml(DUAL_HOST)), Family::Ipv6).await;
    assert_eq!(r.expectation_met, Some(false), "{}", show(&r));
    let v = r.expectation_violation.as_ref().expect("a violation");
    assert_eq!(v.reason, "expectation:records");
    assert_eq!(
        v.detail,
        "expected no record of this family (nodata), but the name answered ::1"
    );
}
