//! Whether one cycle met the target's expectation for its family: the checks' outcomes against
//! `expect` (`reachable`, `unreachable`, `nodata`, `any`) and, for IPv6, the path against
//! `expect.via`. A violation that no failing check explains gets its own reason and words.

use crate::model::check_kind::Layer;
use crate::model::failure::FailureReason;
use crate::model::nat64::{Ipv6Path, ViaKind};
use crate::model::outcome::{Outcome, Violation};
use crate::model::target::Expect;

use super::check_for;

/// What the judge says of one cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Met, violated, or not judged (`any`).
    pub met: Option<bool>,
    /// Why it was violated when a failing check does not say it.
    pub violation: Option<Violation>,
}

impl Verdict {
    fn met(met: bool) -> Verdict {
        Verdict {
            met: Some(met),
            violation: None,
        }
    }

    fn violated(reason: &'static str, detail: String) -> Verdict {
        Verdict {
            met: Some(false),
            violation: Some(Violation { reason, detail }),
        }
    }
}

/// `reachable`: every check passed (and the IPv6 path is the one `via` asserts). `unreachable`:
/// nothing above name resolution passed (and if only resolution was configured, it failed).
/// `nodata`: the first failure is NODATA, i.e. the name has no record of the family's type.
/// `any`: not judged.
pub fn judge(
    expect: Expect,
    via: Option<ViaKind>,
    checks: &[Outcome],
    path: Option<&Ipv6Path>,
) -> Verdict {
    match expect {
        Expect::Any => Verdict {
            met: None,
            violation: None,
        },
        Expect::Reachable => {
            if !checks.iter().all(Outcome::passed) {
                return Verdict::met(false);
            }
            match (via, path) {
                (Some(want), Some(p)) if !want.matches(p.via) => Verdict::violated(
                    match want {
                        ViaKind::Native => "expectation:via_nat64",
                        ViaKind::Nat64 => "expectation:via_native",
                    },
                    format!(
                        "expected {} IPv6, but the path was {p}",
                        match want {
                            ViaKind::Native => "native",
                            ViaKind::Nat64 => "NAT64",
                        }
                    ),
                ),
                (Some(want), None) => Verdict::violated(
                    "expectation:via_unknown",
                    format!(
                        "expected {} IPv6, but no IPv6 address was used",
                        want.as_str()
                    ),
                ),
                _ => Verdict::met(true),
            }
        }
        Expect::Unreachable => {
            let above: Vec<&Outcome> = checks
                .iter()
                .filter(|o| check_for(o.check).layer() > Layer::Resolve)
                .collect();
            let met = if above.is_empty() {
                !checks.iter().all(Outcome::passed)
            } else {
                above.iter().all(|o| !o.passed())
            };
            if met {
                Verdict::met(true)
            } else {
                Verdict::violated(
                    "expectation:reachable",
                    "expected unreachable over this family, but it was reached".to_string(),
                )
            }
        }
        Expect::Nodata => match checks.iter().find_map(|o| o.result.as_ref().err()) {
            Some(f) if f.reason == FailureReason::Nodata => Verdict::met(true),
            // Another failure (NXDOMAIN, a timeout) is what the log shows.
            Some(_) => Verdict::met(false),
            None => Verdict::violated(
                "expectation:records",
                match checks.iter().find_map(|o| o.observations.addresses.first()) {
                    Some(a) => format!(
                        "expected no record of this family (nodata), but the name answered {a}"
                    ),
                    None => "expected no record of this family (nodata), but every check passed"
                        .to_string(),
                },
            ),
        },
    }
}
