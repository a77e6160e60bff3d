//! The per-check series table (`check_series`) writes its four families itself, for speed. These
//! tests hold its output to what the Prometheus client crate's own encoder writes for the same
//! observations, in both formats, and check the exact text of one series.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use dualprobe::model::check_kind::CheckKind;
use dualprobe::model::failure::{Failure, FailureReason};
use dualprobe::model::family::Family;
use dualprobe::model::outcome::{Observations, Outcome};
use dualprobe::report::check_series::CheckSeries;
use dualprobe::report::metrics::{DURATION_BUCKETS, Format};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family as MetricFamily, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    target: String,
    check: &'static str,
    family: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    target: String,
    check: &'static str,
    family: &'static str,
    result: &'static str,
}

#[derive(Clone)]
struct Buckets;
impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(DURATION_BUCKETS)
    }
}

/// The same four families, kept by the client crate.
struct Reference {
    registry: Registry,
    success: MetricFamily<CheckLabels, Gauge>,
    duration: MetricFamily<CheckLabels, Histogram, Buckets>,
    last_success: MetricFamily<CheckLabels, Gauge<f64, AtomicU64>>,
    probes: MetricFamily<ResultLabels, Counter>,
}

impl Reference {
    fn new() -> Reference {
        let mut registry = Registry::default();
        let success = MetricFamily::default();
        let duration = MetricFamily::new_with_constructor(Buckets);
        let last_success = MetricFamily::default();
        let probes = MetricFamily::default();
        let r = registry.sub_registry_with_prefix("dualprobe");
        r.register(
            "probe_success",
            "1 if the last run of the check passed",
            MetricFamily::clone(&success),
        );
        r.register(
            "probe_duration_seconds",
            "Duration of each check run",
            duration.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time the check last passed",
            last_success.clone(),
        );
        r.register(
            "probes",
            "Check runs by result (ok or a failure reason)",
            probes.clone(),
        );
        Reference {
            registry,
            success,
            duration,
            last_success,
            probes,
        }
    }

    fn record(&self, target: &str, family: Family, o: &Outcome, now: f64) {
        let labels = CheckLabels {
            target: target.to_string(),
            check: o.check.name(),
            family: family.as_str(),
        };
        self.success
            .get_or_create(&labels)
            .set(i64::from(o.passed()));
        if !matches!(&o.result, Err(f) if f.reason == FailureReason::Skipped) {
            self.duration
                .get_or_create(&labels)
                .observe(o.duration.as_secs_f64());
        }
        if o.passed() {
            self.last_success.get_or_create(&labels).set(now);
        }
        self.probes
            .get_or_create(&ResultLabels {
                target: target.to_string(),
                check: o.check.name(),
                family: family.as_str(),
                result: o.result_label(),
            })
            .inc();
    }

    fn render(&self, format: Format) -> String {
        let mut out = String::new();
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            }
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        }
        .unwrap();
        out
    }
}

fn outcome(check: &str, result: Result<(), Failure>, micros: u64) -> Outcome {
    Outcome {
        check: CheckKind::from_name(check).unwrap(),
        result,
        duration: Duration::from_micros(micros),
        observations: Observations::default(),
    }
}

fn fail(reason: FailureReason) -> Result<(), Failure> {
    Err(Failure::new(reason, "detail never exported"))
}

/// Observations covering every branch: passes, failures, a pass with a note, a skipped check
/// (no duration), durations on bucket bounds and beyond the last bound, and target names that
/// need escaping.
fn feed(record: &mut dyn FnMut(&str, Family, &Outcome, f64)) {
    let targets = ["web", "quote\"back\\slash\nnewline", "ünïcode-λ", "a"];
    let mut now = 1_764_000_000.125;
    for (i, target) in targets.iter().enumerate() {
        for family in Family::ALL {
            record(target, family, &outcome("dns", Ok(()), 250), now);
            record(target, family, &outcome("dns", Ok(()), 100 + i as u64), now);
            record(
                target,
                family,
                &outcome("tcp", fail(FailureReason::Refused), 90),
                now,
            );
            record(
                target,
                family,
                &outcome("tcp", fail(FailureReason::Timeout), 5_000_000),
                now,
            );
            record(
                target,
                family,
                &outcome("http", fail(FailureReason::Skipped), 0),
                now,
            );
            record(target, family, &outcome("tls", Ok(()), 12_000_000), now);
            let mut denied = outcome("s3", Ok(()), 1_000_000);
            denied.observations.note = Some(Failure::new(FailureReason::AwsDenied, "denied"));
            record(target, family, &denied, now);
            now += 0.5;
        }
    }
    // A check that only ever failed: a success gauge of 0, no last-success series.
    record(
        "only-fails",
        Family::Ipv6,
        &outcome("tcp", fail(FailureReason::Unreachable), 3),
        now,
    );
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().filter(|l| *l != "# EOF").collect();
    lines.sort_unstable();
    lines
}

/// Family blocks in output order: every sample line follows its own family's TYPE line.
fn check_grouping(text: &str) {
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest
                .split(' ')
                .next()
                .unwrap()
                .trim_end_matches("_total")
                .to_string();
        } else if !line.starts_with('#') {
            assert!(
                line.starts_with(&current),
                "{line} outside its family {current}"
            );
        }
    }
}

#[test]
fn same_text_as_the_client_crate_in_both_formats() {
    let ours = CheckSeries::default();
    let reference = Reference::new();
    feed(&mut |t, f, o, now| {
        ours.record(t, f, o, now);
        reference.record(t, f, o, now);
    });
    for format in [Format::OpenMetrics, Format::PrometheusText] {
        let mut mine = String::new();
        ours.encode(&mut mine, format);
        let theirs = reference.render(format);
        check_grouping(&mine);
        let (a, b) = (sorted_lines(&mine), sorted_lines(&theirs));
        let only_ours: Vec<_> = a.iter().filter(|l| !b.contains(l)).collect();
        let only_theirs: Vec<_> = b.iter().filter(|l| !a.contains(l)).collect();
        assert!(
            only_ours.is_empty() && only_theirs.is_empty() && a.len() == b.len(),
            "{format:?}: only ours {only_ours:#?}\nonly the client's {only_theirs:#?}"
        );
        assert!(mine.len() > 10_000, "the feed covers enough series");
    }
}

#[test]
fn one_series_exactly() {
    let ours = CheckSeries::default();
    ours.record(
        "web",
        Family::Ipv6,
        &outcome("tcp", Ok(()), 300),
        1_764_000_000.5,
    );
    let mut om = String::new();
    ours.encode(&mut om, Format::OpenMetrics);
    let labels = r#"target="web",check="tcp",family="ipv6""#;
    let mut expected = format!(
        "# HELP dualprobe_probe_success 1 if the last run of the check passed.\n\
         # TYPE dualprobe_probe_success gauge\n\
         dualprobe_probe_success{{{labels}}} 1\n\
         # HELP dualprobe_probe_duration_seconds Duration of each check run.\n\
         # TYPE dualprobe_probe_duration_seconds histogram\n\
         dualprobe_probe_duration_seconds_sum{{{labels}}} 0.0003\n\
         dualprobe_probe_duration_seconds_count{{{labels}}} 1\n"
    );
    let les = [
        "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
        "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf",
    ];
    for (i, le) in les.iter().enumerate() {
        let n = u8::from(i >= 2);
        expected +=
            &format!("dualprobe_probe_duration_seconds_bucket{{le=\"{le}\",{labels}}} {n}\n");
    }
    expected += &format!(
        "# HELP dualprobe_last_success_timestamp_seconds Unix time the check last passed.\n\
         # TYPE dualprobe_last_success_timestamp_seconds gauge\n\
         dualprobe_last_success_timestamp_seconds{{{labels}}} 1764000000.5\n\
         # HELP dualprobe_probes Check runs by result (ok or a failure reason).\n\
         # TYPE dualprobe_probes counter\n\
         dualprobe_probes_total{{{labels},result=\"ok\"}} 1\n"
    );
    assert_eq!(om, expected);

    // The classic format: `le` last and Go's spelling of it, buckets before sum and count,
    // and the counter's headers named with `_total`.
    let mut text = String::new();
    ours.encode(&mut text, Format::PrometheusText);
    let text_les = [
        "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
        "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    let mut expected_text = String::from(
        "# HELP dualprobe_probe_success 1 if the last run of the check passed.\n\
         # TYPE dualprobe_probe_success gauge\n",
    );
    expected_text += &format!("dualprobe_probe_success{{{labels}}} 1\n");
    expected_text += "# HELP dualprobe_probe_duration_seconds Duration of each check run.\n\
                      # TYPE dualprobe_probe_duration_seconds histogram\n";
    for (i, le) in text_les.iter().enumerate() {
        let n = u8::from(i >= 2);
        expected_text +=
            &format!("dualprobe_probe_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}\n");
    }
    expected_text += &format!(
        "dualprobe_probe_duration_seconds_sum{{{labels}}} 0.0003\n\
         dualprobe_probe_duration_seconds_count{{{labels}}} 1\n\
         # HELP dualprobe_last_success_timestamp_seconds Unix time the check last passed.\n\
         # TYPE dualprobe_last_success_timestamp_seconds gauge\n\
         dualprobe_last_success_timestamp_seconds{{{labels}}} 1764000000.5\n\
         # HELP dualprobe_probes_total Check runs by result (ok or a failure reason).\n\
         # TYPE dualprobe_probes_total counter\n\
         dualprobe_probes_total{{{labels},result=\"ok\"}} 1\n"
    );
    assert_eq!(text, expected_text);
}

#[test]
fn removed_series_and_empty_families_are_not_written() {
    let ours = CheckSeries::default();
    let mut empty = String::new();
    ours.encode(&mut empty, Format::OpenMetrics);
    assert_eq!(empty, "", "no HELP or TYPE lines without samples");

    ours.record("gone", Family::Ipv4, &outcome("dns", Ok(()), 10), 1.0);
    ours.record(
        "kept",
        Family::Ipv4,
        &outcome("dns", fail(FailureReason::Nxdomain), 10),
        1.0,
    );
    ours.remove("gone", "dns", Family::Ipv4);
    assert_eq!(ours.len(), 1);
    let mut out = String::new();
    ours.encode(&mut out, Format::PrometheusText);
    assert!(!out.contains("gone"), "{out}");
    assert!(out.contains(
        r#"dualprobe_probes_total{target="kept",check="dns",family="ipv4",result="nxdomain"} 1"#
    ));
    assert!(
        !out.contains("last_success"),
        "a check that never passed has no last-success series: {out}"
    );
}
