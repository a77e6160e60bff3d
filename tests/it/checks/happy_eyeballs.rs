//! The `happy_eyeballs` check on the loopback addresses: a healthy dual-stack peer is won by
//! IPv6 with nothing masked; an IPv6 port that refuses loses to IPv4 at once, and that is IPv6
//! masked by fallback; a name with no AAAA is won by IPv4 with nothing masked (no IPv6 was
//! tried); the race runs in the IPv6 cycle only; nothing connecting fails the check. The
//! blackholed-SYN case (IPv4 winning after the 250 ms attempt delay) needs a namespace:
//! `icmp_he_netns`.

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

use dualprobe::model::family::Family;
use dualprobe::model::outcome::Outcome;

use crate::support::{A_ONLY_HOST, DUAL_HOST, Lab, closed_port, labels, outcome, show};

/// A port with listeners on both loopback addresses.
fn dual_listener() -> (u16, TcpListener, TcpListener) {
    crate::support::with_free_port(|port| {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, port))?;
        Ok((port, v4, v6))
    })
}

/// A port listening on 127.0.0.1 only: [::1] answers a SYN with a RST.
fn v4_only_listener() -> (u16, TcpListener) {
    crate::support::with_free_port(|port| {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        Ok((port, v4))
    })
}

/// `(winner ipv6, winner ipv4, fallback seconds)` of a `happy_eyeballs` outcome.
pub fn race(o: &Outcome) -> (Option<f64>, Option<f64>, Option<f64>) {
    let ob = &o.observations;
    (
        ob.target_value("happy_eyeballs_winner", Some(Family::Ipv6)),
        ob.target_value("happy_eyeballs_winner", Some(Family::Ipv4)),
        ob.target_value("happy_eyeballs_fallback_seconds", None),
    )
}

#[tokio::test]
async fn healthy_dual_stack_is_won_by_ipv6() {
    let lab = Lab::new();
    let (port, _v4, _v6) = dual_listener();
    let target = lab.target(&format!(
        "name: he\nhost: {DUAL_HOST}\nport: {port}\nchecks: [happy_eyeballs]"
    ));
    let report = lab.run(&target, Family::Ipv6).await;
    assert_eq!(
        labels(&report),
        [("happy_eyeballs", "ok")],
        "{}",
        show(&report)
    );
    let o = outcome(&report, "happy_eyeballs");
    assert_eq!(
        race(o),
        (Some(1.0), Some(0.0), Some(0.0)),
        "{}",
        show(&report)
    );
    assert_eq!(o.observations.remote.map(|r| r.is_ipv6()), Some(true));
    // IPv6 connected well before IPv4's attempt was due.
    let margin = o
        .observations
        .target_value("happy_eyeballs_margin_seconds", None)
        .expect("a margin");
    assert!(
        margin > 0.1 && margin <= 0.25,
        "margin {margin}: {}",
        show(&report)
    );
    let json = serde_json::to_value(o).unwrap();
    assert_eq!(json["happy_eyeballs_winner"]["ipv6"], 1.0, "{json}");
}

#[tokio::test]
async fn refusing_ipv6_is_masked_by_fallback_to_ipv4() {
    let lab = Lab::new();
    let (port, _v4) = v4_only_listener();
    let target = lab.target(&format!(
        "name: he\nhost: {DUAL_HOST}\nport: {port}\nchecks: [happy_eyeballs]"
    ));
    let report = lab.run(&target, Family::Ipv6).await;
    assert_eq!(
        labels(&report),
        [("happy_eyeballs", "ok")],
        "{}",
        show(&report)
    );
    let o = outcome(&report, "happy_eyeballs");
    let (v6, v4, fallback) = race(o);
    assert_eq!((v6, v4), (Some(0.0), Some(1.0)), "{}", show(&report));
    // A RST starts the IPv4 attempt at once (RFC 8305 §5), well before the attempt delay.
    let fallback = fallback.expect("fallback seconds");
    assert!(
        fallback > 0.0 && fallback < 0.2,
        "fallback {fallback}: {}",
        show(&report)
    );
    assert!(
        report.debug.iter().any(|l| l.contains("failed")),
        "{}",
        show(&report)
    );
}

#[tokio::test]
async fn no_aaaa_is_won_by_ipv4_with_nothing_masked() {
    let lab = Lab::new();
    let (port, _v4, _v6) = dual_listener();
    let target = lab.target(&format!(
        "name: he\nhost: {A_ONLY_HOST}\nport: {port}\nchecks: [happy_eyeballs]"
    ));
    let report = lab.run(&target, Family::Ipv6).await;
    assert_eq!(
        labels(&report),
        [("happy_eyeballs", "ok")],
        "{}",
        show(&report)
    );
    let o = outcome(&report, "happy_eyeballs");
    assert_eq!(
        race(o),
        (Some(0.0), Some(1.0), Some(0.0)),
        "{}",
        show(&report)
    );
}

#[tokio::test]
async fn the_race_runs_in_the_ipv6_cycle_only() {
    let lab = Lab::new();
    let (port, _v4, _v6) = dual_listener();
    let target = lab.target(&format!(
        "name: he\nhost: {DUAL_HOST}\nport: {port}\nchecks: [happy_eyeballs]"
    ));
    let report = lab.run(&target, Family::Ipv4).await;
    assert_eq!(
        labels(&report),
        [("happy_eyeballs", "ok")],
        "{}",
        show(&report)
    );
    let o = outcome(&report, "happy_eyeballs");
    assert!(o.observations.per_target.is_empty(), "{}", show(&report));
    assert_eq!(
        lab.dns
            .queries_for(DUAL_HOST, hickory_proto::rr::RecordType::A),
        0
    );
}

#[tokio::test]
async fn nothing_connecting_fails_as_the_last_attempt() {
    let lab = Lab::new();
    let target = lab.target(&format!(
        "name: he\nhost: {DUAL_HOST}\nport: {}\nchecks: [happy_eyeballs]",
        closed_port()
    ));
    let report = lab.run(&target, Family::Ipv6).await;
    assert_eq!(
        labels(&report),
        [("happy_eyeballs", "refused")],
        "{}",
        show(&report)
    );
    let o = outcome(&report, "happy_eyeballs");
    assert_eq!(race(o), (Some(0.0), Some(0.0), None), "{}", show(&report));
}
