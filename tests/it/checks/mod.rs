//! The check kinds against real peers on 127.0.0.1 and [::1], one module per kind: every check
//! on both families, and every failure reason a local peer can produce (refused, timeout,
//! nxdomain, nodata, servfail, http_status, cert_invalid, skipped), plus observations, redirects
//! held to their family, `addresses: all` and expectation judging. Targets are built from YAML
//! through `Config`, with the resolver pointed at the test DNS server, exactly as the binary
//! builds them.

mod addresses_all;
mod aws;
mod chain;
mod dns;
mod expectations;
mod happy_eyeballs;
mod http;
mod icmp;
mod nat64;
mod private_dns;
mod tcp;
mod tls;
mod trace;

use std::time::Duration;

use dualprobe::model::outcome::Outcome;

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
