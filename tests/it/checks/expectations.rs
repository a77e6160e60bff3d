//! Expectations (`expect: reachable | unreachable | any`) judged on real cycles, and the judging
//! rules on their own.

use std::time::Duration;

use dualprobe::checks;
use dualprobe::model::check_kind::CheckKind;
use dualprobe::model::failure::{Failure, FailureReason};
use dualprobe::model::family::Family;
use dualprobe::model::outcome::{Observations, Outcome};
use dualprobe::model::target::Expect;

use crate::support::{A_ONLY_HOST, DUAL_HOST, Lab, TlsServer, closed_port};

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
    checks::judge(expect, None, &checks, None).met
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
