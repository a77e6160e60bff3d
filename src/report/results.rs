//! Where cycle reports go: metrics, transition logs (a target/family going from success to
//! failure and back, once per change), the latest report per target and family (for `/` and
//! readiness), and optionally CloudWatch EMF lines.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::model::family::Family;
use crate::model::outcome::CycleReport;
use crate::model::target::Target;
use crate::report::metrics::Metrics;

/// A sink for every finished cycle besides metrics (EMF writer, test recorders).
pub trait ReportSink: Send + Sync + 'static {
    /// Called once per finished cycle.
    fn report(&self, report: &CycleReport);
}

type Key = (String, Family);

/// Fans each cycle report out to its consumers.
pub struct Results {
    metrics: Metrics,
    latest: RwLock<HashMap<Key, Arc<CycleReport>>>,
    last_success: RwLock<HashMap<(String, Family, String), std::time::SystemTime>>,
    sinks: Vec<Arc<dyn ReportSink>>,
}

impl Results {
    /// Results that write to `metrics` and to each extra sink.
    pub fn new(metrics: Metrics, sinks: Vec<Arc<dyn ReportSink>>) -> Results {
        Results {
            metrics,
            latest: RwLock::new(HashMap::new()),
            last_success: RwLock::new(HashMap::new()),
            sinks,
        }
    }

    /// Records one finished cycle.
    pub fn record(&self, report: CycleReport) {
        self.metrics.record(&report);
        for s in &self.sinks {
            s.report(&report);
        }
        {
            let mut ls = self.last_success.write().expect("results lock");
            for o in report.checks.iter().filter(|o| o.passed()) {
                ls.insert(
                    (
                        report.target.name.clone(),
                        report.family,
                        o.check.name().to_string(),
                    ),
                    report.finished_at,
                );
            }
        }
        let key = (report.target.name.clone(), report.family);
        let report = Arc::new(report);
        let previous = self
            .latest
            .write()
            .expect("results lock")
            .insert(key, Arc::clone(&report));
        log_transition(previous.as_deref(), &report);
    }

    /// Drops what is kept for targets or families no longer configured.
    pub fn retain(&self, targets: &[Arc<Target>]) {
        let keep: HashSet<Key> = targets
            .iter()
            .flat_map(|t| t.families.iter().map(move |f| (t.name.clone(), *f)))
            .collect();
        self.latest
            .write()
            .expect("results lock")
            .retain(|k, _| keep.contains(k));
        self.last_success
            .write()
            .expect("results lock")
            .retain(|(t, f, _), _| keep.contains(&(t.clone(), *f)));
    }

    /// When `check` of a target and family last passed (kept across failing cycles).
    pub fn last_success(
        &self,
        target: &str,
        family: Family,
        check: &str,
    ) -> Option<std::time::SystemTime> {
        self.last_success
            .read()
            .expect("results lock")
            .get(&(target.to_string(), family, check.to_string()))
            .copied()
    }

    /// The latest report of one target and family.
    pub fn latest_for(&self, target: &str, family: Family) -> Option<Arc<CycleReport>> {
        self.latest
            .read()
            .expect("results lock")
            .get(&(target.to_string(), family))
            .cloned()
    }
}

/// What is wrong with a cycle, as `check:reason` and a detail; `None` when it is healthy. A
/// judged cycle is healthy when its expectation held (for `expect: unreachable` that means the
/// connection failed), an unjudged one when every check passed.
fn problem(r: &CycleReport) -> Option<(String, String)> {
    let first_failure = || {
        r.checks.iter().find_map(|o| {
            o.result
                .as_ref()
                .err()
                .map(|f| (format!("{}:{}", o.check.name(), f.reason), f.detail.clone()))
        })
    };
    match r.expectation_met {
        Some(true) => None,
        None if r.all_passed() => None,
        Some(false) if r.expectation_violation.is_some() => r
            .expectation_violation
            .as_ref()
            .map(|v| (v.reason.to_string(), v.detail.clone())),
        _ => first_failure(),
    }
}

/// `met`, `violated` or `not_judged`: a plain string so JSON logs stay typed.
fn expectation_label(r: &CycleReport) -> &'static str {
    match r.expectation_met {
        Some(true) => "met",
        Some(false) => "violated",
        None => "not_judged",
    }
}

/// Logs a (target, family) only when its health changes (or its failure reason does), once.
fn log_transition(previous: Option<&CycleReport>, now: &CycleReport) {
    let target = &now.target.name;
    let family = now.family.as_str();
    let expectation = expectation_label(now);
    let before = previous.map(problem);
    // The farthest hop a `trace` heard from, when one ran (a field, never a label).
    let last_hop = now.trace_summary().unwrap_or_default();
    match (before, problem(now)) {
        (None, None) => tracing::info!(target, family, expectation, "first probe: healthy"),
        (None, Some((reason, detail))) => {
            tracing::warn!(target, family, %reason, %detail, expectation, last_hop, "first probe: failing")
        }
        (Some(Some(_)), None) => tracing::info!(target, family, expectation, "recovered"),
        (Some(None), Some((reason, detail))) => {
            tracing::warn!(target, family, %reason, %detail, expectation, last_hop, "now failing")
        }
        (Some(Some((old, _))), Some((reason, detail))) if old != reason => tracing::warn!(
            target,
            family,
            %reason,
            previous = %old,
            %detail,
            expectation,
            last_hop,
            "still failing, new reason"
        ),
        _ => {}
    }
}

impl crate::scheduler::CycleRecorder for Results {
    fn record(&self, report: CycleReport) {
        Results::record(self, report);
    }
}
