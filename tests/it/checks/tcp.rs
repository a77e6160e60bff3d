//! The `tcp` check: a closed port is refused, a listener whose backlog is full times out at the
//! deadline, and `addresses: all` fails when one of the addresses does.

use dualprobe::model::family::Family;

use super::{SHORT, assert_deadline_honoured};
use crate::support::{
    DUAL_HOST, Lab, NeverAccepting, TWICE_HOST, closed_port, detail, labels, loopback, outcome,
    show,
};

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
        assert_eq!(
            outcome(&report, "dns").observations.value("dns_answers"),
            Some(2)
        );
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
        // The timeout keeps what the check had: both addresses, and the one it waited on.
        assert_eq!(
            outcome(&report, "tcp").observations.addresses,
            [loopback(family), loopback(family)]
        );
        let at = std::net::SocketAddr::new(loopback(family), all.port());
        assert!(
            detail(&report, "tcp").starts_with(&format!("no answer from {at} within ")),
            "{}",
            show(&report)
        );
    }
}
