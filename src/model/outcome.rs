//! What a check hands back and what one cycle of one (target, family) produced: the data that
//! flows from the checks to the reports.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::check_kind::CheckKind;
use super::failure::{Failure, FailureReason};
use super::family::Family;
use super::target::Target;

/// What a check observed besides pass/fail; each field feeds one metric or JSON field.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Observations {
    /// Addresses the check resolved or tried, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    /// Number of answers of this family's record type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_answers: Option<u32>,
    /// The peer actually connected to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    /// Leaf certificate notAfter, unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<i64>,
    /// Final HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// On a pass: a reason that still goes into the `result` label. AWS answering AccessDenied
    /// proves the family's path (the check passes) but is counted as `aws_denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<Failure>,
}

/// What a prober hands back: pass or a typed failure, plus observations either way.
#[derive(Debug, Clone)]
pub struct CheckOutput {
    /// Pass, or why not.
    pub result: Result<(), Failure>,
    /// What was seen on the way.
    pub observations: Observations,
}

impl CheckOutput {
    /// A pass with observations.
    pub fn pass(observations: Observations) -> CheckOutput {
        CheckOutput {
            result: Ok(()),
            observations,
        }
    }

    /// A failure with no observations.
    pub fn fail(failure: Failure) -> CheckOutput {
        CheckOutput {
            result: Err(failure),
            observations: Observations::default(),
        }
    }

    /// Replaces the observations.
    pub fn with(mut self, observations: Observations) -> CheckOutput {
        self.observations = observations;
        self
    }
}

/// The outcome of one check in one cycle.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Which check.
    pub check: CheckKind,
    /// Pass, or the typed failure.
    #[serde(flatten, serialize_with = "serialize_result")]
    pub result: Result<(), Failure>,
    /// Wall time the check took (zero when skipped).
    #[serde(serialize_with = "serialize_secs")]
    pub duration: Duration,
    /// What it observed.
    #[serde(flatten)]
    pub observations: Observations,
}

impl Outcome {
    /// True when the check passed.
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }

    /// `ok` (or a pass's note, e.g. `aws_denied`) or the failure reason: the `result` label.
    pub fn result_label(&self) -> &'static str {
        self.result_reason().map_or("ok", FailureReason::as_str)
    }

    /// The reason behind [`Outcome::result_label`]: `None` for a plain `ok`, else the failure
    /// reason or a pass's note.
    pub fn result_reason(&self) -> Option<FailureReason> {
        match &self.result {
            Ok(()) => self.observations.note.as_ref().map(|n| n.reason),
            Err(f) => Some(f.reason),
        }
    }
}

fn serialize_result<S: serde::Serializer>(
    r: &Result<(), Failure>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(None)?;
    match r {
        Ok(()) => {
            m.serialize_entry("success", &true)?;
            m.serialize_entry("reason", "ok")?;
        }
        Err(f) => {
            m.serialize_entry("success", &false)?;
            m.serialize_entry("reason", f.reason.as_str())?;
            m.serialize_entry("detail", &f.detail)?;
        }
    }
    m.end()
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Everything one cycle of one (target, family) produced.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    /// The target probed.
    #[serde(skip)]
    pub target: Arc<Target>,
    /// The family it was pinned to.
    pub family: Family,
    /// One outcome per configured check, in chain order.
    pub checks: Vec<Outcome>,
    /// Whether the cycle matched the target's expectation for this family (`None` for `any`).
    pub expectation_met: Option<bool>,
    /// When the cycle finished.
    #[serde(skip)]
    pub finished_at: SystemTime,
    /// Debug lines the probers wrote (kept only when asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub debug: Vec<String>,
}

impl CycleReport {
    /// True when every check passed.
    pub fn all_passed(&self) -> bool {
        self.checks.iter().all(Outcome::passed)
    }

    /// Total time of the cycle.
    pub fn duration(&self) -> Duration {
        self.checks.iter().map(|o| o.duration).sum()
    }
}

