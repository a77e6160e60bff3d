//! What a check hands back and what one cycle of one (target, family) produced: the data that
//! flows from the checks to the reports.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::check_kind::CheckKind;
use super::failure::{Failure, FailureReason};
use super::family::Family;
use super::nat64::Ipv6Path;
use super::target::Target;

/// A value a check kind measures per (target, family), declared as a `static` in that kind's
/// file. Everything downstream — `/metrics`, `/probe`, JSON answers, the CLI table — renders
/// every declared measurement from this description, so a new kind's measurement touches only
/// its own file.
#[derive(Debug)]
pub struct Measurement {
    /// The gauge on `/metrics`, labelled `{target, family}`, e.g. `dualprobe_dns_answers`.
    pub metric: &'static str,
    /// Its HELP text on `/metrics`.
    pub help: &'static str,
    /// Its name and HELP on `/probe`: a blackbox_exporter name (no `family` label when one
    /// family is probed, so blackbox dashboards work), or `None` for `metric` with a `family`
    /// label.
    pub blackbox: Option<(&'static str, &'static str)>,
    /// Its HELP on `/probe` when `blackbox` is `None` (`/probe` has no `target` label).
    pub probe_help: &'static str,
    /// The key in JSON answers.
    pub key: &'static str,
    /// How the CLI table shows a value (e.g. `HTTP 200`); `None`: not shown.
    pub describe: Option<fn(i64) -> String>,
}

/// Measurements are told apart by their metric name, which is unique.
impl PartialEq for Measurement {
    fn eq(&self, other: &Self) -> bool {
        self.metric == other.metric
    }
}

/// A value a check measures about a target as a whole rather than about the cycle's family —
/// the `happy_eyeballs` race is about both families at once: a float gauge labelled `{target}`,
/// or `{target, family}` with the family the value is about (not the cycle's). Declared as a
/// `static` in the kind's file and rendered generically like [`Measurement`]: `/metrics`,
/// `/probe` (no `target` label there), JSON answers and the CLI table.
#[derive(Debug)]
pub struct TargetMeasurement {
    /// The gauge on `/metrics`, e.g. `dualprobe_happy_eyeballs_fallback_seconds`.
    pub metric: &'static str,
    /// Its HELP text on `/metrics` and `/probe`.
    pub help: &'static str,
    /// The key in JSON answers (an object keyed by family when `per_family`).
    pub key: &'static str,
    /// Labelled `{target, family}` (true) or `{target}` only (false).
    pub per_family: bool,
}

/// Target measurements are told apart by their metric name, which is unique.
impl PartialEq for TargetMeasurement {
    fn eq(&self, other: &Self) -> bool {
        self.metric == other.metric
    }
}

/// One value of a [`TargetMeasurement`].
#[derive(Debug, Clone, PartialEq)]
pub struct TargetValue {
    /// What was measured.
    pub what: &'static TargetMeasurement,
    /// The family the value is about (`Some` exactly when `what.per_family`).
    pub family: Option<Family>,
    /// The value (seconds are seconds).
    pub value: f64,
}

/// What a check observed besides pass/fail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// Addresses the check resolved or tried, in order.
    pub addresses: Vec<IpAddr>,
    /// The peer actually connected to.
    pub remote: Option<SocketAddr>,
    /// Values of the kind's declared measurements.
    pub measured: Vec<(&'static Measurement, i64)>,
    /// Values of the kind's declared target measurements.
    pub per_target: Vec<TargetValue>,
    /// On a pass: a reason that still goes into the `result` label. AWS answering AccessDenied
    /// proves the family's path (the check passes) but is counted as `aws_denied`.
    pub note: Option<Failure>,
    /// `trace`'s hops (JSON `hops`, `last_hop`; the status page and log line show its summary).
    pub trace: Option<super::trace::Trace>,
}

impl Observations {
    /// Records a measurement.
    pub fn measure(mut self, what: &'static Measurement, value: i64) -> Observations {
        self.measured.push((what, value));
        self
    }

    /// Records a target measurement (`family` only for a per-family one).
    pub fn measure_target(
        mut self,
        what: &'static TargetMeasurement,
        family: Option<Family>,
        value: f64,
    ) -> Observations {
        self.per_target.push(TargetValue {
            what,
            family,
            value,
        });
        self
    }

    /// The value of the target measurement whose JSON key is `key`, for `family`.
    pub fn target_value(&self, key: &str, family: Option<Family>) -> Option<f64> {
        self.per_target
            .iter()
            .find(|v| v.what.key == key && v.family == family)
            .map(|v| v.value)
    }

    /// The value of the measurement whose JSON key is `key`.
    pub fn value(&self, key: &str) -> Option<i64> {
        self.measured
            .iter()
            .find(|(m, _)| m.key == key)
            .map(|(_, v)| *v)
    }
}

impl Serialize for Observations {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if !self.addresses.is_empty() {
            m.serialize_entry("addresses", &self.addresses)?;
        }
        for (what, v) in &self.measured {
            m.serialize_entry(what.key, v)?;
        }
        let mut seen: Vec<&str> = Vec::new();
        for v in &self.per_target {
            if seen.contains(&v.what.key) {
                continue;
            }
            seen.push(v.what.key);
            if v.what.per_family {
                let by_family: std::collections::BTreeMap<&str, f64> = self
                    .per_target
                    .iter()
                    .filter(|o| o.what == v.what)
                    .filter_map(|o| Some((o.family?.as_str(), o.value)))
                    .collect();
                m.serialize_entry(v.what.key, &by_family)?;
            } else {
                m.serialize_entry(v.what.key, &v.value)?;
            }
        }
        if let Some(r) = &self.remote {
            m.serialize_entry("remote", r)?;
        }
        if let Some(n) = &self.note {
            m.serialize_entry("note", n)?;
        }
        if let Some(t) = &self.trace {
            m.serialize_entry("hops", &t.hops)?;
            m.serialize_entry("last_hop", &t.last_responding())?;
        }
        m.end()
    }
}

/// What a check hands back: pass or a typed failure, plus observations either way.
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

/// An expectation that failed although no check's failure says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// What was expected and not seen, as `expectation:<what was seen>`: the reason the log
    /// and the status page show (`expectation:reachable`, `expectation:records`,
    /// `expectation:via_nat64`, `expectation:via_native`).
    pub reason: &'static str,
    /// In words.
    pub detail: String,
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
    /// Why the expectation failed when no failing check says it (it was reached though
    /// expected unreachable, a record answered though `nodata` was expected, the path was
    /// NAT64 though `via: native` was asserted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expectation_violation: Option<Violation>,
    /// For an IPv6 cycle that had an address: the one it used and whether that was native or
    /// synthesized by DNS64 for a NAT64 translator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_path: Option<Ipv6Path>,
    /// When the cycle finished.
    #[serde(skip)]
    pub finished_at: SystemTime,
    /// Debug lines the checks wrote (kept only when asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub debug: Vec<String>,
}

impl CycleReport {
    /// True when every check passed.
    pub fn all_passed(&self) -> bool {
        self.checks.iter().all(Outcome::passed)
    }

    /// The summary of the cycle's `trace`, when one ran: what the log line and status page show.
    pub fn trace_summary(&self) -> Option<String> {
        self.checks
            .iter()
            .find_map(|o| o.observations.trace.as_ref())
            .map(super::trace::Trace::summary)
    }

    /// Total time of the cycle.
    pub fn duration(&self) -> Duration {
        self.checks.iter().map(|o| o.duration).sum()
    }
}
