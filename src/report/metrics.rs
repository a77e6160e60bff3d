//! The Prometheus metrics: registered once with [`Metrics::register`], which returns the handles
//! `results` writes through. Checks never see this module.

use std::borrow::Cow;
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
use crate::report::check_series::{CheckSeries, GaugeFamily, GaugeValue};
use crate::report::exposition::Exposition;
use crate::report::prom_text::label;
pub use crate::report::prom_text::{DURATION_BUCKETS, Format};

/// The per-target gauge families, by their index in the table ([`CheckSeries`] writes them in
/// this order, after the per-check families); the checks' measurements follow.
const EXPECTATION_MET: u16 = 0;
const TARGET_EXPECTED: u16 = 1;
const TARGET_INFO: u16 = 2;
const TARGET_EXPECTED_VIA: u16 = 3;
const IPV6_PATH: u16 = 4;
const FIRST_MEASURED: u16 = 5;

/// The fixed gauge families, in index order.
const FIXED_GAUGES: [GaugeFamily; 5] = [
    GaugeFamily {
        name: "dualprobe_expectation_met",
        help: "1 if the last cycle matched the target's expectation for the family",
    },
    GaugeFamily {
        name: "dualprobe_target_expected",
        help: "The expectation configured per target and family (always 1)",
    },
    GaugeFamily {
        name: "dualprobe_target_info",
        help: "Targets being probed (always 1)",
    },
    GaugeFamily {
        name: "dualprobe_target_expected_via",
        help: "The IPv6 path a target asserts with expect.via.ipv6 (always 1)",
    },
    GaugeFamily {
        name: "dualprobe_ipv6_path",
        help: "1 for the IPv6 path the last cycle used (native, or nat64: a DNS64-synthesized address), 0 for the other",
    },
];

/// A gauge's key within its family for a `{target, family}` series (ipv4 first).
fn family_key(f: Family) -> u8 {
    match f {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
    }
}

/// `family="…"`.
fn family_label(f: Family) -> Cow<'static, str> {
    Cow::Borrowed(match f {
        Family::Ipv4 => "family=\"ipv4\"",
        Family::Ipv6 => "family=\"ipv6\"",
    })
}

/// The IPv6 paths, in key order, with their `via="…"` labels.
const VIAS: [(&str, &str); 2] = [("native", "via=\"native\""), ("nat64", "via=\"nat64\"")];

/// `via`'s key and label.
fn via(via: &str) -> (u8, Cow<'static, str>) {
    let key = VIAS.iter().position(|(v, _)| *v == via).unwrap_or(0);
    (key as u8, Cow::Borrowed(VIAS[key].1))
}

/// `{prefix, source}`: a known NAT64 prefix.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrefixLabels {
    /// The prefix, e.g. `64:ff9b::/96`.
    pub prefix: String,
    /// `well_known`, `config` or `discovered`.
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
    /// Every series that scales with targets, written by their own encoder, outside the
    /// registry: `dualprobe_probe_success`, `dualprobe_probe_duration_seconds`,
    /// `dualprobe_last_success_timestamp_seconds`, `dualprobe_probes_total`, then the gauges
    /// `dualprobe_expectation_met`, `dualprobe_target_expected`, `dualprobe_target_info`,
    /// `dualprobe_target_expected_via` (the IPv6 path `expect.via.ipv6` asserts),
    /// `dualprobe_ipv6_path` (1 for the path the last IPv6 cycle used, 0 for the other), and
    /// one per measurement and target measurement a check kind declares.
    pub checks: CheckSeries,
    /// The measurements a check kind declares (`dualprobe_dns_answers`, …), in chain order:
    /// gauge family `FIRST_MEASURED + i`.
    measured: Vec<&'static Measurement>,
    /// The target measurements a check kind declares (`dualprobe_happy_eyeballs_winner`, …),
    /// in chain order, after `measured`.
    per_target: Vec<&'static TargetMeasurement>,
    /// `dualprobe_nat64_prefix`: the NAT64 prefixes known.
    pub nat64_prefix: MetricFamily<PrefixLabels, Gauge>,
    /// `dualprobe_targets`.
    pub targets: MetricFamily<SourceLabels, Gauge>,
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
    /// Registers every metric that does not scale with targets (and the process collector),
    /// declares the per-target gauge families to the table, and returns the handles.
    pub fn register(registry: &mut Registry) -> Metrics {
        let measured: Vec<&'static Measurement> = CheckKind::ALL
            .iter()
            .flat_map(|k| check_for(*k).measurements())
            .copied()
            .collect();
        let per_target: Vec<&'static TargetMeasurement> = CheckKind::ALL
            .iter()
            .flat_map(|k| check_for(*k).target_measurements())
            .copied()
            .collect();
        let gauges = FIXED_GAUGES
            .iter()
            .copied()
            .chain(measured.iter().map(|m| GaugeFamily {
                name: m.metric,
                help: m.help,
            }))
            .chain(per_target.iter().map(|m| GaugeFamily {
                name: m.metric,
                help: m.help,
            }))
            .collect();
        let m = Metrics {
            checks: CheckSeries::with_gauges(gauges),
            measured,
            per_target,
            nat64_prefix: MetricFamily::default(),
            targets: MetricFamily::default(),
            build_info: MetricFamily::default(),
            reload_successful: Gauge::default(),
            reload_success_time: FloatGauge::default(),
            discovery_success: MetricFamily::default(),
            discovery_endpoints: MetricFamily::default(),
            discovery_last_success: MetricFamily::default(),
        };
        let r = registry.sub_registry_with_prefix("dualprobe");
        r.register(
            "nat64_prefix",
            "NAT64 prefixes known: well-known, configured, or discovered from ipv4only.arpa (always 1)",
            m.nat64_prefix.clone(),
        );
        r.register("targets", "Number of targets per source", m.targets.clone());
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

    /// The gauge family of measurement `what`.
    fn measured_family(&self, what: &Measurement) -> Option<u16> {
        let i = self.measured.iter().position(|m| *m == what)?;
        u16::try_from(i).ok().map(|i| FIRST_MEASURED + i)
    }

    /// The gauge family of target measurement `what`.
    fn per_target_family(&self, what: &TargetMeasurement) -> Option<u16> {
        let i = self.per_target.iter().position(|m| *m == what)?;
        u16::try_from(self.measured.len() + i)
            .ok()
            .map(|i| FIRST_MEASURED + i)
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
        for family in [TARGET_INFO, TARGET_EXPECTED, TARGET_EXPECTED_VIA] {
            self.checks.clear_gauges(family);
        }
        self.targets.clear();
        for t in new {
            self.checks.set_gauge(
                &t.name,
                TARGET_INFO,
                0,
                || {
                    let host = label("host", &t.host.to_string());
                    let port = label("port", &t.port.to_string());
                    let source = label("source", t.source.as_str());
                    Cow::Owned(format!("{host},{port},{source}"))
                },
                GaugeValue::Int(1),
            );
            if let Some(v) = t.expect.ipv6_via {
                let (key, labels) = via(v.as_str());
                self.checks.set_gauge(
                    &t.name,
                    TARGET_EXPECTED_VIA,
                    key,
                    || labels,
                    GaugeValue::Int(1),
                );
            }
            for &f in &t.families {
                self.checks.set_gauge(
                    &t.name,
                    TARGET_EXPECTED,
                    family_key(f),
                    || {
                        let expect = label("expect", t.expect.for_family(f).as_str());
                        Cow::Owned(format!("{},{expect}", family_label(f)))
                    },
                    GaugeValue::Int(1),
                );
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
        if let Some(g) = self.per_target_family(what) {
            let key = if what.per_family {
                family_key(family)
            } else {
                0
            };
            self.checks.remove_gauge(target, g, key);
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
        self.checks
            .remove_gauge(target, EXPECTATION_MET, family_key(family));
        if family == Family::Ipv6 {
            self.forget_path(target);
        }
        for i in 0..self.measured.len() {
            let g = FIRST_MEASURED + u16::try_from(i).expect("few measurements");
            self.checks.remove_gauge(target, g, family_key(family));
        }
    }

    /// Writes one cycle's results.
    pub fn record(&self, report: &CycleReport) {
        let target = &report.target.name;
        let family = report.family;
        let now = unix_now();
        for o in &report.checks {
            self.checks.record(target, family, o, now);
            for (what, value) in &o.observations.measured {
                if let Some(g) = self.measured_family(what) {
                    self.checks.set_gauge(
                        target,
                        g,
                        family_key(family),
                        || family_label(family),
                        GaugeValue::Int(*value),
                    );
                }
            }
            if !o.observations.per_target.is_empty() {
                self.forget_unreported(target, o);
            }
            for v in &o.observations.per_target {
                let Some(g) = self.per_target_family(v.what) else {
                    continue;
                };
                match (v.what.per_family, v.family) {
                    (true, Some(f)) => self.checks.set_gauge(
                        target,
                        g,
                        family_key(f),
                        || family_label(f),
                        GaugeValue::Float(v.value),
                    ),
                    (true, None) => {}
                    (false, _) => self.checks.set_gauge(
                        target,
                        g,
                        0,
                        || Cow::Borrowed(""),
                        GaugeValue::Float(v.value),
                    ),
                }
            }
        }
        match report.expectation_met {
            Some(met) => self.checks.set_gauge(
                target,
                EXPECTATION_MET,
                family_key(family),
                || family_label(family),
                GaugeValue::Int(i64::from(met)),
            ),
            None => self
                .checks
                .remove_gauge(target, EXPECTATION_MET, family_key(family)),
        }
        if family == Family::Ipv6 {
            match report.ipv6_path {
                Some(path) => {
                    for (name, _) in VIAS {
                        let (key, labels) = via(name);
                        let used = i64::from(path.via.as_str() == name);
                        self.checks.set_gauge(
                            target,
                            IPV6_PATH,
                            key,
                            || labels,
                            GaugeValue::Int(used),
                        );
                    }
                }
                // No address this cycle: no path to show (a stale one would mislead).
                None => self.forget_path(target),
            }
        }
    }

    fn forget_path(&self, target: &str) {
        for (name, _) in VIAS {
            self.checks.remove_gauge(target, IPV6_PATH, via(name).0);
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

/// Renders the whole exposition in `format` into one `String` (tests and benches; `/metrics`
/// streams the same chunks, see [`Exposition`]).
pub fn render(registry: &Registry, checks: &CheckSeries, format: Format) -> String {
    let mut exposition = Exposition::new(registry, checks.clone(), format);
    let mut out = String::new();
    while let Some(chunk) = exposition.next_chunk() {
        out.push_str(&chunk);
    }
    out
}
