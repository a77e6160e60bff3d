//! The Prometheus metrics: registered once with [`Metrics::register`], which returns the handles
//! `results` writes through. Checks never see this module.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::UNIX_EPOCH;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family as MetricFamily;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::checks::check_for;
use crate::model::check_kind::CheckKind;
use crate::model::family::Family;
use crate::model::outcome::CycleReport;
use crate::model::outcome::{Measurement, TargetMeasurement};
use crate::model::target::{Target, TargetSource};
use crate::report::check_series::CheckSeries;
pub use crate::report::prom_text::{DURATION_BUCKETS, Format};

/// `{target, family}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetFamilyLabels {
    /// Target name.
    pub target: String,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
}

/// `{target}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// Target name.
    pub target: String,
}

/// The gauge family of a [`TargetMeasurement`]: by family or by target only.
#[derive(Clone)]
pub enum TargetGauges {
    /// `{target, family}`.
    ByFamily(MetricFamily<TargetFamilyLabels, FloatGauge>),
    /// `{target}`.
    ByTarget(MetricFamily<TargetLabels, FloatGauge>),
}

/// `{target, family, expect}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpectLabels {
    /// Target name.
    pub target: String,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// `reachable`, `unreachable`, `nodata` or `any`.
    pub expect: &'static str,
}

/// `{target, via}`: the IPv6 path of a target.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    /// Target name.
    pub target: String,
    /// `native` or `nat64`.
    pub via: &'static str,
}

/// `{prefix, source}`: a known NAT64 prefix.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrefixLabels {
    /// The prefix, e.g. `64:ff9b::/96`.
    pub prefix: String,
    /// `well_known`, `config` or `discovered`.
    pub source: &'static str,
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

/// `{version, availability_zone, cluster, task_family, task, service}`.
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
    /// ECS task ID (the task ARN's last segment), empty outside ECS.
    pub task: String,
    /// ECS service name, empty outside ECS and when task metadata has none (Fargate).
    pub service: String,
}

impl BuildLabels {
    /// The task labels of ECS task metadata (the version is filled in at start).
    pub fn from_task_metadata(m: &crate::aws::task_metadata::TaskMetadata) -> BuildLabels {
        BuildLabels {
            version: String::new(),
            availability_zone: m.availability_zone.clone().unwrap_or_default(),
            cluster: m.cluster.clone(),
            task_family: m.family.clone(),
            task: m.task_id().to_string(),
            service: m.service_name.clone().unwrap_or_default(),
        }
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Handles to every dualprobe metric.
#[derive(Clone)]
pub struct Metrics {
    /// `dualprobe_probe_success`, `dualprobe_probe_duration_seconds`,
    /// `dualprobe_last_success_timestamp_seconds` and `dualprobe_probes_total`: written by
    /// their own encoder, outside the registry.
    pub checks: CheckSeries,
    /// `dualprobe_expectation_met`.
    pub expectation_met: MetricFamily<TargetFamilyLabels, Gauge>,
    /// `dualprobe_target_expected`.
    pub target_expected: MetricFamily<ExpectLabels, Gauge>,
    /// `dualprobe_target_info`.
    pub target_info: MetricFamily<TargetInfoLabels, Gauge>,
    /// `dualprobe_target_expected_via`: the IPv6 path a target asserts (`expect.via.ipv6`).
    pub target_expected_via: MetricFamily<PathLabels, Gauge>,
    /// `dualprobe_ipv6_path`: 1 for the path the last IPv6 cycle used, 0 for the other.
    pub ipv6_path: MetricFamily<PathLabels, Gauge>,
    /// `dualprobe_nat64_prefix`: the NAT64 prefixes known.
    pub nat64_prefix: MetricFamily<PrefixLabels, Gauge>,
    /// `dualprobe_targets`.
    pub targets: MetricFamily<SourceLabels, Gauge>,
    /// One gauge per measurement a check kind declares (`dualprobe_dns_answers`, …), in chain
    /// order.
    pub measured: Vec<(
        &'static Measurement,
        MetricFamily<TargetFamilyLabels, Gauge>,
    )>,
    /// One float gauge per target measurement a check kind declares
    /// (`dualprobe_happy_eyeballs_winner`, …), in chain order.
    pub per_target: Vec<(&'static TargetMeasurement, TargetGauges)>,
    /// `dualprobe_build_info`.
    pub build_info: MetricFamily<BuildLabels, Gauge>,
    /// `dualprobe_config_last_reload_successful`.
    pub reload_successful: Gauge,
    /// `dualprobe_config_last_reload_success_timestamp_seconds`.
    pub reload_success_time: FloatGauge,
    /// `dualprobe_discovery_success`.
    pub discovery_success: MetricFamily<SourceLabels, Gauge>,
    /// `dualprobe_discovery_endpoints`.
    pub discovery_endpoints: MetricFamily<SourceLabels, Gauge>,
    /// `dualprobe_discovery_last_success_timestamp_seconds`.
    pub discovery_last_success: MetricFamily<SourceLabels, FloatGauge>,
}

impl Metrics {
    /// Registers every metric (and the process collector) and returns the handles.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            checks: CheckSeries::default(),
            expectation_met: MetricFamily::default(),
            target_expected: MetricFamily::default(),
            target_info: MetricFamily::default(),
            target_expected_via: MetricFamily::default(),
            ipv6_path: MetricFamily::default(),
            nat64_prefix: MetricFamily::default(),
            targets: MetricFamily::default(),
            measured: CheckKind::ALL
                .iter()
                .flat_map(|k| check_for(*k).measurements())
                .map(|m| (*m, MetricFamily::default()))
                .collect(),
            per_target: CheckKind::ALL
                .iter()
                .flat_map(|k| check_for(*k).target_measurements())
                .map(|m| {
                    let gauges = if m.per_family {
                        TargetGauges::ByFamily(MetricFamily::default())
                    } else {
                        TargetGauges::ByTarget(MetricFamily::default())
                    };
                    (*m, gauges)
                })
                .collect(),
            build_info: MetricFamily::default(),
            reload_successful: Gauge::default(),
            reload_success_time: FloatGauge::default(),
            discovery_success: MetricFamily::default(),
            discovery_endpoints: MetricFamily::default(),
            discovery_last_success: MetricFamily::default(),
        };
        let r = registry.sub_registry_with_prefix("dualprobe");
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
        r.register(
            "target_expected_via",
            "The IPv6 path a target asserts with expect.via.ipv6 (always 1)",
            m.target_expected_via.clone(),
        );
        r.register(
            "ipv6_path",
            "1 for the IPv6 path the last cycle used (native, or nat64: a DNS64-synthesized address), 0 for the other",
            m.ipv6_path.clone(),
        );
        r.register(
            "nat64_prefix",
            "NAT64 prefixes known: well-known, configured, or discovered from ipv4only.arpa (always 1)",
            m.nat64_prefix.clone(),
        );
        r.register("targets", "Number of targets per source", m.targets.clone());
        for (what, family) in &m.measured {
            let name = what
                .metric
                .strip_prefix("dualprobe_")
                .unwrap_or(what.metric);
            r.register(name, what.help, family.clone());
        }
        for (what, gauges) in &m.per_target {
            let name = what
                .metric
                .strip_prefix("dualprobe_")
                .unwrap_or(what.metric);
            match gauges {
                TargetGauges::ByFamily(g) => r.register(name, what.help, g.clone()),
                TargetGauges::ByTarget(g) => r.register(name, what.help, g.clone()),
            }
        }
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
        r.register(
            "discovery_success",
            "1 if the last discovery attempt of the source succeeded, 0 if it failed",
            m.discovery_success.clone(),
        );
        r.register(
            "discovery_endpoints",
            "Endpoints found by the last successful discovery attempt of the source",
            m.discovery_endpoints.clone(),
        );
        r.register(
            "discovery_last_success_timestamp_seconds",
            "Unix time of the last successful discovery attempt of the source",
            m.discovery_last_success.clone(),
        );
        registry.register_collector(Box::new(
            crate::report::process_metrics::ProcessCollector::new(),
        ));
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

    /// Writes one discovery attempt's outcome (`dualprobe_discovery_*{source}`).
    pub fn set_discovery(&self, status: &crate::discovery::health::DiscoveryStatus) {
        let labels = SourceLabels {
            source: status.source.as_str(),
        };
        self.discovery_success
            .get_or_create(&labels)
            .set(i64::from(status.succeeded()));
        if let Some(n) = status.endpoints {
            self.discovery_endpoints
                .get_or_create(&labels)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Some(t) = status.last_success {
            let secs = t
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.discovery_last_success.get_or_create(&labels).set(secs);
        }
    }

    /// Removes the discovery series of a source no longer configured.
    pub fn forget_discovery(&self, source: TargetSource) {
        let labels = SourceLabels {
            source: source.as_str(),
        };
        self.discovery_success.remove(&labels);
        self.discovery_endpoints.remove(&labels);
        self.discovery_last_success.remove(&labels);
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
                for p in CheckKind::ALL {
                    if !keep.contains(&(t.name.as_str(), p.name(), f)) {
                        self.forget_check(&t.name, p.name(), f);
                    }
                }
            }
        }
        self.target_info.clear();
        self.target_expected.clear();
        self.target_expected_via.clear();
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
            if let Some(via) = t.expect.ipv6_via {
                self.target_expected_via
                    .get_or_create(&PathLabels {
                        target: t.name.clone(),
                        via: via.as_str(),
                    })
                    .set(1);
            }
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
        self.checks.remove(target, check, family);
        let Some(kind) = CheckKind::from_name(check) else {
            return;
        };
        for what in check_for(kind).target_measurements() {
            self.forget_per_target(what, target, family);
        }
    }

    /// Removes `what`'s series of `target` (the `family` one, when it has a family label).
    fn forget_per_target(&self, what: &TargetMeasurement, target: &str, family: Family) {
        for (m, gauges) in &self.per_target {
            if *m != what {
                continue;
            }
            match gauges {
                TargetGauges::ByFamily(g) => {
                    g.remove(&TargetFamilyLabels {
                        target: target.to_string(),
                        family: family.as_str(),
                    });
                }
                TargetGauges::ByTarget(g) => {
                    g.remove(&TargetLabels {
                        target: target.to_string(),
                    });
                }
            }
        }
    }

    /// Removes `target`'s series of the target measurements `o`'s kind declares but `o` did
    /// not report: a race that measured (nothing connected, no margin) must not leave the last
    /// race's values standing. An outcome that reported none (the other family's cycle) keeps
    /// them.
    fn forget_unreported(&self, target: &str, o: &crate::model::outcome::Outcome) {
        let reported = |what: &TargetMeasurement, f: Option<Family>| {
            o.observations
                .per_target
                .iter()
                .any(|v| v.what == what && v.family == f)
        };
        for what in check_for(o.check).target_measurements() {
            for f in Family::ALL {
                let family = what.per_family.then_some(f);
                if !reported(what, family) {
                    self.forget_per_target(what, target, f);
                }
            }
        }
    }

    fn forget_target_family(&self, target: &str, family: Family) {
        let labels = TargetFamilyLabels {
            target: target.to_string(),
            family: family.as_str(),
        };
        self.expectation_met.remove(&labels);
        if family == Family::Ipv6 {
            self.forget_path(target);
        }
        for (_, family) in &self.measured {
            family.remove(&labels);
        }
    }

    /// Writes one cycle's results.
    pub fn record(&self, report: &CycleReport) {
        let target = &report.target.name;
        let family = report.family.as_str();
        let now = unix_now();
        for o in &report.checks {
            self.checks.record(target, report.family, o, now);
            let tf = TargetFamilyLabels {
                target: target.clone(),
                family,
            };
            for (what, value) in &o.observations.measured {
                if let Some((_, family)) = self.measured.iter().find(|(m, _)| m == what) {
                    family.get_or_create(&tf).set(*value);
                }
            }
            if !o.observations.per_target.is_empty() {
                self.forget_unreported(target, o);
            }
            for v in &o.observations.per_target {
                match self.per_target.iter().find(|(m, _)| *m == v.what) {
                    Some((_, TargetGauges::ByFamily(g))) => {
                        if let Some(f) = v.family {
                            g.get_or_create(&TargetFamilyLabels {
                                target: target.clone(),
                                family: f.as_str(),
                            })
                            .set(v.value);
                        }
                    }
                    Some((_, TargetGauges::ByTarget(g))) => {
                        g.get_or_create(&TargetLabels {
                            target: target.clone(),
                        })
                        .set(v.value);
                    }
                    None => {}
                }
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
        if report.family == Family::Ipv6 {
            match report.ipv6_path {
                Some(path) => {
                    for via in ["native", "nat64"] {
                        self.ipv6_path
                            .get_or_create(&PathLabels {
                                target: target.clone(),
                                via,
                            })
                            .set(i64::from(path.via.as_str() == via));
                    }
                }
                // No address this cycle: no path to show (a stale one would mislead).
                None => self.forget_path(target),
            }
        }
    }

    fn forget_path(&self, target: &str) {
        for via in ["native", "nat64"] {
            self.ipv6_path.remove(&PathLabels {
                target: target.to_string(),
                via,
            });
        }
    }

    /// Sets `dualprobe_nat64_prefix` to exactly `known`.
    pub fn set_nat64_prefixes(&self, known: &[crate::model::nat64::KnownPrefix]) {
        self.nat64_prefix.clear();
        for k in known {
            self.nat64_prefix
                .get_or_create(&PrefixLabels {
                    prefix: k.prefix.to_string(),
                    source: k.source.as_str(),
                })
                .set(1);
        }
    }
}

/// Seconds since the epoch as f64.
pub fn unix_now() -> f64 {
    UNIX_EPOCH.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Renders a registry in `format`. The buffer starts at the size of the last render, so a large
/// exposition is not grown by doubling (and copied) on every scrape.
pub fn render(registry: &Registry, checks: &CheckSeries, format: Format) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LAST_LEN: AtomicUsize = AtomicUsize::new(16 * 1024);
    let mut out = String::with_capacity(LAST_LEN.load(Ordering::Relaxed) + 4096);
    // Writing to a String cannot fail.
    checks.encode(&mut out, format);
    let _ = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry),
        Format::PrometheusText => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, registry)
        }
    };
    LAST_LEN.store(out.len(), Ordering::Relaxed);
    out
}
