//! The per-target gauges (`dualprobe_expectation_met`, `dualprobe_target_info`, the checks'
//! measurements, …) live in the per-target table with the per-check series and are written by
//! its encoder, not the client crate's. These tests hold that encoder to the client crate's
//! output for the same gauges in both formats (integer and float values, non-finite ones, label
//! values that need escaping, removals), check that a body cut into chunks of any size is the
//! same body, and follow the gauges `Metrics` keeps through reports and target changes. And
//! `metrics.duration_buckets`: the agent's histograms take the configured bounds, and a reload
//! that changes them starts each histogram afresh under the new ones.

use std::borrow::Cow;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use dualprobe::checks::check_for;
use dualprobe::config::Config;
use dualprobe::model::check_kind::CheckKind;
use dualprobe::model::family::Family;
use dualprobe::model::nat64::{Ipv6Path, Via};
use dualprobe::model::outcome::{CycleReport, Observations, Outcome};
use dualprobe::report::check_series::{CheckSeries, Cursor, GaugeFamily, GaugeValue};
use dualprobe::report::metrics::{Format, Metrics, render};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family as MetricFamily;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetFamily {
    target: String,
    family: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetOnly {
    target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Info {
    target: String,
    host: String,
    port: String,
}

const FAMILIES: [GaugeFamily; 3] = [
    GaugeFamily {
        name: "dualprobe_int_gauge",
        help: "An integer gauge per target and family",
    },
    GaugeFamily {
        name: "dualprobe_float_gauge",
        help: "A float gauge per target",
    },
    GaugeFamily {
        name: "dualprobe_info",
        help: "Targets (always 1)",
    },
];

struct Reference {
    registry: Registry,
    int: MetricFamily<TargetFamily, Gauge>,
    float: MetricFamily<TargetOnly, Gauge<f64, AtomicU64>>,
    info: MetricFamily<Info, Gauge>,
}

impl Reference {
    fn new() -> Reference {
        let mut registry = Registry::default();
        let (int, float, info) = (
            MetricFamily::default(),
            MetricFamily::default(),
            MetricFamily::default(),
        );
        let r = registry.sub_registry_with_prefix("dualprobe");
        r.register("int_gauge", FAMILIES[0].help, MetricFamily::clone(&int));
        r.register("float_gauge", FAMILIES[1].help, MetricFamily::clone(&float));
        r.register("info", FAMILIES[2].help, MetricFamily::clone(&info));
        Reference {
            registry,
            int,
            float,
            info,
        }
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

fn escaped(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn key(f: Family) -> u8 {
    u8::from(f == Family::Ipv6)
}

fn family_label(f: Family) -> Cow<'static, str> {
    Cow::Owned(format!("family=\"{}\"", f.as_str()))
}

const TARGETS: [&str; 4] = ["web", "quote\"back\\slash\nnewline", "ünïcode-λ", "a"];
const FLOATS: [f64; 6] = [0.0, 1.5, -2.25, 1e-7, 1_764_000_000.125, 3e21];

/// The same gauges in both: every value kind on every target, then some removed.
fn fill(ours: &CheckSeries, theirs: &Reference) {
    for (i, t) in TARGETS.iter().enumerate() {
        for f in Family::ALL {
            let v = [-3, 0, 200, i64::MIN][i] + i64::from(key(f));
            ours.set_gauge(t, 0, key(f), || family_label(f), GaugeValue::Int(v));
            let labels = TargetFamily {
                target: t.to_string(),
                family: f.as_str(),
            };
            theirs.int.get_or_create(&labels).set(v);
        }
        let v = FLOATS[i];
        ours.set_gauge(t, 1, 0, || Cow::Borrowed(""), GaugeValue::Float(v));
        theirs
            .float
            .get_or_create(&TargetOnly {
                target: t.to_string(),
            })
            .set(v);
        let host = format!("host-{i}.\"test\"");
        let labels = format!("host=\"{}\",port=\"443\"", escaped(&host));
        ours.set_gauge(t, 2, 0, || Cow::Owned(labels), GaugeValue::Int(1));
        theirs
            .info
            .get_or_create(&Info {
                target: t.to_string(),
                host,
                port: "443".into(),
            })
            .set(1);
    }
    // Overwritten values, and the values the two formats spell differently.
    ours.set_gauge(
        "a",
        1,
        0,
        || unreachable!(),
        GaugeValue::Float(f64::INFINITY),
    );
    ours.set_gauge("web", 1, 0, || unreachable!(), GaugeValue::Float(f64::NAN));
    ours.set_gauge(
        "ünïcode-λ",
        1,
        0,
        || unreachable!(),
        GaugeValue::Float(-f64::INFINITY),
    );
    let only = |t: &str| TargetOnly {
        target: t.to_string(),
    };
    theirs.float.get_or_create(&only("a")).set(f64::INFINITY);
    theirs.float.get_or_create(&only("web")).set(f64::NAN);
    theirs
        .float
        .get_or_create(&only("ünïcode-λ"))
        .set(-f64::INFINITY);
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().filter(|l| *l != "# EOF").collect();
    lines.sort_unstable();
    lines
}

fn assert_same(ours: &CheckSeries, theirs: &Reference, what: &str) {
    for format in [Format::OpenMetrics, Format::PrometheusText] {
        let mut mine = String::new();
        ours.encode(&mut mine, format);
        let reference = theirs.render(format);
        assert_eq!(
            sorted_lines(&mine),
            sorted_lines(&reference),
            "{what}, {format:?}:\nours:\n{mine}\nthe client's:\n{reference}"
        );
    }
}

#[test]
fn gauges_are_written_as_the_client_crate_writes_them() {
    let ours = CheckSeries::with_gauges(FAMILIES.to_vec());
    let theirs = Reference::new();
    fill(&ours, &theirs);
    assert_same(&ours, &theirs, "all set");

    ours.remove_gauge("web", 0, key(Family::Ipv6));
    theirs.int.remove(&TargetFamily {
        target: "web".into(),
        family: "ipv6",
    });
    ours.remove_gauge("a", 1, 0);
    theirs.float.remove(&TargetOnly { target: "a".into() });
    ours.clear_gauges(2);
    theirs.info.clear();
    assert_same(&ours, &theirs, "after removals");

    for t in TARGETS {
        for f in Family::ALL {
            ours.remove_gauge(t, 0, key(f));
        }
        ours.remove_gauge(t, 1, 0);
    }
    let mut empty = String::new();
    ours.encode(&mut empty, Format::OpenMetrics);
    assert_eq!(empty, "", "no HELP or TYPE lines without samples");
}

/// Any cut gives the same text: each family's HELP and TYPE once, before its first sample.
#[test]
fn a_body_cut_into_chunks_is_the_same_body() {
    let ours = CheckSeries::with_gauges(FAMILIES.to_vec());
    fill(&ours, &Reference::new());
    for t in 0..50 {
        let outcome = Outcome {
            check: CheckKind::Tcp,
            result: Ok(()),
            duration: Duration::from_micros(10 * t + 1),
            observations: Observations::default(),
        };
        ours.record(&format!("t{t:02}"), Family::Ipv4, &outcome, 1.0);
        ours.record(&format!("t{t:02}"), Family::Ipv6, &outcome, 1.0);
    }
    for format in [Format::OpenMetrics, Format::PrometheusText] {
        let mut whole = String::new();
        ours.encode(&mut whole, format);
        for limit in [1, 100, 1000, 4096, 20_000] {
            let mut cursor = Cursor::default();
            let mut cut = String::new();
            let mut pieces = 0;
            loop {
                let mut piece = String::new();
                let done = ours.encode_some(&mut cursor, &mut piece, format, limit);
                pieces += 1;
                cut.push_str(&piece);
                if done {
                    break;
                }
            }
            assert_eq!(cut, whole, "{format:?}, cut at {limit}");
            assert!(
                limit > whole.len() / 2 || pieces > 2,
                "{pieces} pieces at {limit}"
            );
        }
    }
}

fn report(target: &Arc<dualprobe::model::target::Target>, family: Family) -> CycleReport {
    let answers = check_for(CheckKind::Dns).measurements()[0];
    CycleReport {
        target: Arc::clone(target),
        family,
        checks: vec![Outcome {
            check: CheckKind::Dns,
            result: Ok(()),
            duration: Duration::from_millis(2),
            observations: Observations::default().measure(answers, 2),
        }],
        expectation_met: Some(family == Family::Ipv4),
        expectation_violation: None,
        ipv6_path: (family == Family::Ipv6).then_some(Ipv6Path {
            address: Ipv6Addr::LOCALHOST,
            via: Via::Native,
        }),
        finished_at: SystemTime::now(),
        debug: Vec::new(),
    }
}

#[test]
fn metrics_keeps_the_per_target_gauges_of_its_targets() {
    let config = Config::from_yaml(
        "targets:\n  - { name: web, host: example.test, port: 443, checks: [dns, tcp], expect: { ipv4: any, via: { ipv6: native } } }\n  - { name: other, host: other.test, checks: [dns], families: [ipv4] }\n",
        "test",
        None,
    )
    .unwrap();
    let mut registry = Registry::default();
    let m = Metrics::register(&mut registry);
    m.set_targets(&[], &config.targets);
    let web = config.target("web").unwrap();
    m.record(&report(web, Family::Ipv4));
    m.record(&report(web, Family::Ipv6));
    let text = render(&registry, &m.checks, Format::PrometheusText);
    for line in [
        r#"dualprobe_target_info{target="web",host="example.test",port="443",source="config"} 1"#,
        r#"dualprobe_target_expected{target="web",family="ipv4",expect="any"} 1"#,
        r#"dualprobe_target_expected{target="web",family="ipv6",expect="reachable"} 1"#,
        r#"dualprobe_target_expected{target="other",family="ipv4",expect="reachable"} 1"#,
        r#"dualprobe_target_expected_via{target="web",via="native"} 1"#,
        r#"dualprobe_expectation_met{target="web",family="ipv4"} 1"#,
        r#"dualprobe_expectation_met{target="web",family="ipv6"} 0"#,
        r#"dualprobe_ipv6_path{target="web",via="native"} 1"#,
        r#"dualprobe_ipv6_path{target="web",via="nat64"} 0"#,
        r#"dualprobe_dns_answers{target="web",family="ipv4"} 2"#,
        r#"dualprobe_dns_answers{target="web",family="ipv6"} 2"#,
        "# HELP dualprobe_expectation_met 1 if the last cycle matched the target's expectation for the family.",
        "# TYPE dualprobe_expectation_met gauge",
        r#"dualprobe_targets{source="config"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(!text.contains("target=\"other\",family=\"ipv6\""), "{text}");

    // `web` loses IPv6 and `other` goes: their series go with them.
    let smaller = Config::from_yaml(
        "targets:\n  - { name: web, host: example.test, port: 443, checks: [dns], families: [ipv4] }\n",
        "test",
        None,
    )
    .unwrap();
    m.set_targets(&config.targets, &smaller.targets);
    let text = render(&registry, &m.checks, Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"));
    assert!(!text.contains("target=\"other\""), "{text}");
    assert!(!text.contains("family=\"ipv6\""), "{text}");
    assert!(!text.contains("dualprobe_ipv6_path"), "{text}");
    assert!(!text.contains("dualprobe_target_expected_via"), "{text}");
    assert!(
        text.contains(r#"dualprobe_dns_answers{target="web",family="ipv4"} 2"#),
        "{text}"
    );
}

/// The `le` values of `series`' buckets, in order, in the classic format.
fn les(text: &str, series: &str) -> Vec<String> {
    let prefix = format!("dualprobe_probe_duration_seconds_bucket{{{series},le=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn configured_duration_buckets_reach_the_histograms_and_a_reload_changes_them() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yml");
    let yaml = |buckets: &str| {
        format!(
            "interval: 1s\ntimeout: 500ms\n{buckets}targets:\n  - {{ name: local, host: 127.0.0.1, port: {closed}, checks: [tcp], families: [ipv4] }}\n"
        )
    };
    std::fs::write(
        &path,
        yaml("metrics:\n  duration_buckets: [1e-5, 0.001, 2.5, 3e6]\n"),
    )
    .unwrap();
    let source = dualprobe::config::ConfigSource::File(path.clone());
    let config = source.load().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let agent = dualprobe::agent::Agent::start(
        source,
        config,
        dualprobe::agent::RunOptions::default(),
        shutdown.clone(),
    )
    .unwrap();
    let series = r#"target="local",check="tcp",family="ipv4""#;
    let scrape = || {
        render(
            &agent.registry,
            &agent.metrics.checks,
            Format::PrometheusText,
        )
    };
    wait_until("a first tcp run", || !les(&scrape(), series).is_empty()).await;
    assert_eq!(
        les(&scrape(), series),
        ["1e-05", "0.001", "2.5", "3e+06", "+Inf"]
    );
    let om = render(&agent.registry, &agent.metrics.checks, Format::OpenMetrics);
    assert!(
        om.contains(&format!(
            "dualprobe_probe_duration_seconds_bucket{{le=\"0.00001\",{series}}}"
        )),
        "{om}"
    );

    // Back to the default buckets: the next run restarts the histogram under them.
    std::fs::write(&path, yaml("")).unwrap();
    agent.reload().await.unwrap();
    let default_les = [
        "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
        "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    wait_until("the default buckets", || {
        les(&scrape(), series) == default_les
    })
    .await;
    let text = scrape();
    let count = dualprobe_count(&text, series);
    let runs = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "dualprobe_probes_total{{{series},result=\"refused\"}} "
            ))
        })
        .and_then(|v| v.parse::<u64>().ok())
        .expect("runs counted");
    assert!(
        count >= 1 && count < runs,
        "the histogram restarted: {count} of {runs} runs"
    );
    shutdown.cancel();
    agent.stop(Duration::from_millis(200)).await;
}

fn dualprobe_count(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "dualprobe_probe_duration_seconds_count{{{series}}} "
            ))
        })
        .and_then(|v| v.parse().ok())
        .expect("a count")
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Configured bounds outside [1e-4, 1e6) are spelled as the client crate spells them (Go's
/// exponent form in the classic format).
#[test]
fn configured_buckets_are_spelled_as_the_client_crate_spells_them() {
    use prometheus_client::metrics::histogram::Histogram;
    const BOUNDS: [f64; 6] = [1e-5, 0.001, 0.3, 2.5, 3e6, 1.5e7];
    let ours = CheckSeries::default();
    ours.set_duration_buckets(Some(&BOUNDS));
    let mut registry = Registry::default();
    let theirs =
        MetricFamily::<TargetFamily, Histogram, _>::new_with_constructor(|| Histogram::new(BOUNDS));
    registry.register(
        "dualprobe_probe_duration_seconds",
        "Duration of each check run",
        theirs.clone(),
    );
    for (micros, f) in [
        (5, Family::Ipv4),
        (300_000, Family::Ipv6),
        (20_000_000, Family::Ipv4),
    ] {
        let outcome = Outcome {
            check: CheckKind::Tcp,
            result: Ok(()),
            duration: Duration::from_micros(micros),
            observations: Observations::default(),
        };
        ours.record("web", f, &outcome, 1.0);
        theirs
            .get_or_create(&TargetFamily {
                target: "web".into(),
                family: f.as_str(),
            })
            .observe(outcome.duration.as_secs_f64());
    }
    for format in [Format::OpenMetrics, Format::PrometheusText] {
        let mut mine = String::new();
        ours.encode(&mut mine, format);
        let mine: Vec<String> = mine
            .lines()
            .filter(|l| l.starts_with("dualprobe_probe_duration_seconds"))
            .map(|l| l.replace(",check=\"tcp\"", ""))
            .collect();
        let mut reference = String::new();
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode_registry(&mut reference, &registry)
            }
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut reference, &registry)
            }
        }
        .unwrap();
        let mut theirs: Vec<String> = reference
            .lines()
            .filter(|l| l.starts_with("dualprobe_probe_duration_seconds"))
            .map(str::to_string)
            .collect();
        let mut sorted = mine.clone();
        sorted.sort();
        theirs.sort();
        assert_eq!(sorted, theirs, "{format:?}");
        if format == Format::PrometheusText {
            assert!(mine.iter().any(|l| l.contains("le=\"1e-05\"")), "{mine:#?}");
            assert!(
                mine.iter().any(|l| l.contains("le=\"1.5e+07\"")),
                "{mine:#?}"
            );
        }
    }
}
