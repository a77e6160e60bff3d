//! The Prometheus metrics: registered once with [`Metrics::register`], which returns the handles
//! `results` writes through. Probers never see this module.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::UNIX_EPOCH;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family as MetricFamily, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::family::Family;
use crate::probe::{CycleReport, FailureReason, PROBERS};
use crate::target::{Target, TargetSource};

/// Histogram buckets for check durations: 100µs to 10s.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// `{target, check, family}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// Target name.
    pub target: String,
    /// Check name.
    pub check: &'static str,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
}

/// `{target, check, family, result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Target name.
    pub target: String,
    /// Check name.
    pub check: &'static str,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// `ok` or a failure reason.
    pub result: &'static str,
}

/// `{target, family}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetFamilyLabels {
    /// Target name.
    pub target: String,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
}

/// `{target, family, expect}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpectLabels {
    /// Target name.
    pub target: String,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// `reachable`, `unreachable` or `any`.
    pub expect: &'static str,
}

/// `{target, host, port, source}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetInfoLabels {
    /// Target name.
    pub target: String,
    /// Host probed.
    pub host: String,
    /// Port probed.
    pub port: String,
    /// Where the target came from.
    pub source: &'static str,
}

/// `{source}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// Where targets came from.
    pub source: &'static str,
}

/// `{version, availability_zone, cluster, task_family}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet, Default)]
pub struct BuildLabels {
    /// Crate version.
    pub version: String,
    /// ECS task's availability zone, empty outside ECS.
    pub availability_zone: String,
    /// ECS cluster, empty outside ECS.
    pub cluster: String,
    /// ECS task definition family, empty outside ECS.
    pub task_family: String,
}

/// Builds duration histograms with [`DURATION_BUCKETS`].
#[derive(Clone, Copy, Debug)]
pub struct DurationHistogram;

impl MetricConstructor<Histogram> for DurationHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new(DURATION_BUCKETS)
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Handles to every dualprobe metric.
#[derive(Clone)]
pub struct Metrics {
    /// `dualprobe_probe_success`.
    pub probe_success: MetricFamily<CheckLabels, Gauge>,
    /// `dualprobe_probe_duration_seconds`.
    pub probe_duration: MetricFamily<CheckLabels, Histogram, DurationHistogram>,
    /// `dualprobe_probes_total`.
    pub probes: MetricFamily<ResultLabels, Counter>,
    /// `dualprobe_expectation_met`.
    pub expectation_met: MetricFamily<TargetFamilyLabels, Gauge>,
    /// `dualprobe_target_expected`.
    pub target_expected: MetricFamily<ExpectLabels, Gauge>,
    /// `dualprobe_target_info`.
    pub target_info: MetricFamily<TargetInfoLabels, Gauge>,
    /// `dualprobe_targets`.
    pub targets: MetricFamily<SourceLabels, Gauge>,
    /// `dualprobe_dns_answers`.
    pub dns_answers: MetricFamily<TargetFamilyLabels, Gauge>,
    /// `dualprobe_tls_cert_expiry_timestamp_seconds`.
    pub cert_expiry: MetricFamily<TargetFamilyLabels, Gauge>,
    /// `dualprobe_http_status_code`.
    pub http_status: MetricFamily<TargetFamilyLabels, Gauge>,
    /// `dualprobe_last_success_timestamp_seconds`.
    pub last_success: MetricFamily<CheckLabels, FloatGauge>,
    /// `dualprobe_build_info`.
    pub build_info: MetricFamily<BuildLabels, Gauge>,
    /// `dualprobe_config_last_reload_successful`.
    pub reload_successful: Gauge,
    /// `dualprobe_config_last_reload_success_timestamp_seconds`.
    pub reload_success_time: FloatGauge,
}

impl Metrics {
    /// Registers every metric (and the process collector) and returns the handles.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            probe_success: MetricFamily::default(),
            probe_duration: MetricFamily::new_with_constructor(DurationHistogram),
            probes: MetricFamily::default(),
            expectation_met: MetricFamily::default(),
            target_expected: MetricFamily::default(),
            target_info: MetricFamily::default(),
            targets: MetricFamily::default(),
            dns_answers: MetricFamily::default(),
            cert_expiry: MetricFamily::default(),
            http_status: MetricFamily::default(),
            last_success: MetricFamily::default(),
            build_info: MetricFamily::default(),
            reload_successful: Gauge::default(),
            reload_success_time: FloatGauge::default(),
        };
        let r = registry.sub_registry_with_prefix("dualprobe");
        r.register(
            "probe_success",
            "1 if the last run of the check passed",
            m.probe_success.clone(),
        );
        r.register(
            "probe_duration_seconds",
            "Duration of each check run",
            m.probe_duration.clone(),
        );
        r.register(
            "probes",
            "Check runs by result (ok or a failure reason)",
            m.probes.clone(),
        );
        r.register(
            "expectation_met",
            "1 if the last cycle matched the target's expectation for the family",
            m.expectation_met.clone(),
        );
        r.register(
            "target_expected",
            "The expectation configured per target and family (always 1)",
            m.target_expected.clone(),
        );
        r.register(
            "target_info",
            "Targets being probed (always 1)",
            m.target_info.clone(),
        );
        r.register("targets", "Number of targets per source", m.targets.clone());
        r.register(
            "dns_answers",
            "Answers of the family's record type in the last lookup",
            m.dns_answers.clone(),
        );
        r.register(
            "tls_cert_expiry_timestamp_seconds",
            "notAfter of the leaf certificate, unix seconds",
            m.cert_expiry.clone(),
        );
        r.register(
            "http_status_code",
            "Status of the last HTTP response",
            m.http_status.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time the check last passed",
            m.last_success.clone(),
        );
        r.register(
            "build_info",
            "Build and task information (always 1)",
            m.build_info.clone(),
        );
        r.register(
            "config_last_reload_successful",
            "1 if the last config (re)load succeeded",
            m.reload_successful.clone(),
        );
        r.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config (re)load",
            m.reload_success_time.clone(),
        );
        registry.register_collector(Box::new(crate::process_metrics::ProcessCollector::new()));
        m
    }

    /// Sets `dualprobe_build_info`.
    pub fn set_build_info(&self, labels: BuildLabels) {
        self.build_info.clear();
        self.build_info.get_or_create(&labels).set(1);
    }

    /// Records the outcome of a config (re)load.
    pub fn reload_result(&self, ok: bool) {
        self.reload_successful.set(i64::from(ok));
        if ok {
            self.reload_success_time.set(unix_now());
        }
    }

    /// Replaces the target set: info series for the new targets, and every series of a target
    /// (or of a check or family a target no longer has) removed.
    pub fn set_targets(&self, old: &[Arc<Target>], new: &[Arc<Target>]) {
        let keep: HashSet<(&str, &str, Family)> = new
            .iter()
            .flat_map(|t| {
                t.checks.iter().flat_map(move |c| {
                    t.families
                        .iter()
                        .map(move |f| (t.name.as_str(), c.name(), *f))
                })
            })
            .collect();
        let keep_tf: HashSet<(&str, Family)> = new
            .iter()
            .flat_map(|t| t.families.iter().map(move |f| (t.name.as_str(), *f)))
            .collect();
        for t in old {
            for f in Family::ALL {
                if !keep_tf.contains(&(t.name.as_str(), f)) {
                    self.forget_target_family(&t.name, f);
                }
                for p in PROBERS {
                    if !keep.contains(&(t.name.as_str(), p.name(), f)) {
                        self.forget_check(&t.name, p.name(), f);
                    }
                }
            }
        }
        self.target_info.clear();
        self.target_expected.clear();
        self.targets.clear();
        for t in new {
            self.target_info
                .get_or_create(&TargetInfoLabels {
                    target: t.name.clone(),
                    host: t.host.to_string(),
                    port: t.port.to_string(),
                    source: t.source.as_str(),
                })
                .set(1);
            for &f in &t.families {
                self.target_expected
                    .get_or_create(&ExpectLabels {
                        target: t.name.clone(),
                        family: f.as_str(),
                        expect: t.expect.for_family(f).as_str(),
                    })
                    .set(1);
            }
            self.targets
                .get_or_create(&SourceLabels {
                    source: t.source.as_str(),
                })
                .inc();
        }
        if new.iter().all(|t| t.source != TargetSource::Config) {
            self.targets
                .get_or_create(&SourceLabels {
                    source: TargetSource::Config.as_str(),
                })
                .set(0);
        }
    }

    fn forget_check(&self, target: &str, check: &'static str, family: Family) {
        let labels = CheckLabels {
            target: target.to_string(),
            check,
            family: family.as_str(),
        };
        self.probe_success.remove(&labels);
        self.probe_duration.remove(&labels);
        self.last_success.remove(&labels);
        for result in std::iter::once("ok").chain(FailureReason::ALL.iter().map(|r| r.as_str())) {
            self.probes.remove(&ResultLabels {
                target: target.to_string(),
                check,
                family: family.as_str(),
                result,
            });
        }
    }

    fn forget_target_family(&self, target: &str, family: Family) {
        let labels = TargetFamilyLabels {
            target: target.to_string(),
            family: family.as_str(),
        };
        self.expectation_met.remove(&labels);
        self.dns_answers.remove(&labels);
        self.cert_expiry.remove(&labels);
        self.http_status.remove(&labels);
    }

    /// Writes one cycle's results.
    pub fn record(&self, report: &CycleReport) {
        let target = &report.target.name;
        let family = report.family.as_str();
        let now = unix_now();
        for o in &report.checks {
            let labels = CheckLabels {
                target: target.clone(),
                check: o.check.name(),
                family,
            };
            self.probe_success
                .get_or_create(&labels)
                .set(i64::from(o.passed()));
            if !matches!(&o.result, Err(f) if f.reason == FailureReason::Skipped) {
                self.probe_duration
                    .get_or_create(&labels)
                    .observe(o.duration.as_secs_f64());
            }
            if o.passed() {
                self.last_success.get_or_create(&labels).set(now);
            }
            self.probes
                .get_or_create(&ResultLabels {
                    target: target.clone(),
                    check: o.check.name(),
                    family,
                    result: o.result_label(),
                })
                .inc();
            let tf = TargetFamilyLabels {
                target: target.clone(),
                family,
            };
            if let Some(n) = o.observations.dns_answers {
                self.dns_answers.get_or_create(&tf).set(i64::from(n));
            }
            if let Some(t) = o.observations.cert_not_after {
                self.cert_expiry.get_or_create(&tf).set(t);
            }
            if let Some(s) = o.observations.http_status {
                self.http_status.get_or_create(&tf).set(i64::from(s));
            }
        }
        let tf = TargetFamilyLabels {
            target: target.clone(),
            family,
        };
        match report.expectation_met {
            Some(met) => {
                self.expectation_met.get_or_create(&tf).set(i64::from(met));
            }
            None => {
                self.expectation_met.remove(&tf);
            }
        }
    }
}

/// Seconds since the epoch as f64.
pub fn unix_now() -> f64 {
    UNIX_EPOCH.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Renders a registry in the OpenMetrics text format. The buffer starts at the size of the last
/// render, so a large exposition is not grown by doubling (and copied) on every scrape.
pub fn render(registry: &Registry) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LAST_LEN: AtomicUsize = AtomicUsize::new(16 * 1024);
    let mut out = String::with_capacity(LAST_LEN.load(Ordering::Relaxed) + 4096);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    LAST_LEN.store(out.len(), Ordering::Relaxed);
    out
}

/// Rewrites OpenMetrics text as the classic Prometheus text format (0.0.4), for clients that did
/// not ask for OpenMetrics (curl, `promtool check metrics`): counters' HELP and TYPE lines carry
/// the `_total` name, and `# EOF` and `# UNIT` lines go. Only header lines change, so samples
/// are copied in large slices.
pub fn to_prometheus_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len() + 1024);
    let mut copied = 0; // everything before this offset is in `out`
    // Header lines start with "# " at the start of a line; escaped label values never do.
    let headers = om
        .match_indices("# ")
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || om.as_bytes()[i - 1] == b'\n');
    let line_at = |i: usize| {
        let end = om[i..].find('\n').map_or(om.len(), |e| i + e);
        (&om[i..end], (end + 1).min(om.len()))
    };
    fn counter_of(line: &str) -> Option<&str> {
        line.strip_prefix("# TYPE ")?
            .strip_suffix(" counter")
            .filter(|n| !n.ends_with("_total"))
    }
    for i in headers {
        if i < copied {
            continue;
        }
        let (line, next) = line_at(i);
        let replacement = if line == "# EOF" || line.starts_with("# UNIT ") {
            Some(String::new())
        } else if let Some(name) = counter_of(line) {
            Some(format!("# TYPE {name}_total counter\n"))
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // TYPE follows HELP, with at most a UNIT line between.
            let (l2, n2) = line_at(next.min(om.len()));
            let (l3, _) = line_at(n2.min(om.len()));
            let is_counter = [l2, l3].iter().any(|l| counter_of(l) == Some(name));
            is_counter.then(|| format!("# HELP {name}_total {help}\n"))
        } else {
            None
        };
        if let Some(r) = replacement {
            out.push_str(&om[copied..i]);
            out.push_str(&r);
            copied = next;
        }
    }
    if copied < om.len() {
        out.push_str(&om[copied..]);
    }
    out
}
