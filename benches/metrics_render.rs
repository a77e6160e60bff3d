//! Time to render `/metrics` for 1,000 targets × 2 families × (dns, tcp), in both formats, the
//! shape `bench/run.py --scenario metrics` scrapes from the running agent (issue 2: < 10 ms).

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_client::registry::Registry;

use std::time::Duration;

use dualprobe::model::check_kind::CheckKind;
use dualprobe::model::family::Family;
use dualprobe::model::outcome::{Observations, Outcome};
use dualprobe::report::metrics::{Format, Metrics, TargetFamilyLabels, render};

fn populated(targets: usize) -> (Registry, Metrics) {
    let mut registry = Registry::default();
    let m = Metrics::register(&mut registry);
    for t in 0..targets {
        let target = format!("t{t:04}");
        for family in Family::ALL {
            for check in ["dns", "tcp"] {
                for i in 0..20 {
                    let outcome = Outcome {
                        check: CheckKind::from_name(check).expect("a check"),
                        result: Ok(()),
                        duration: Duration::from_micros(100 * (i + 1)),
                        observations: Observations::default(),
                    };
                    m.checks.record(&target, family, &outcome, 1.764e9);
                }
            }
            let tf = TargetFamilyLabels {
                target: target.clone(),
                family: family.as_str(),
            };
            m.measured[0].1.get_or_create(&tf).set(1); // dualprobe_dns_answers
            m.expectation_met.get_or_create(&tf).set(1);
        }
    }
    (registry, m)
}

fn render_1000_targets(c: &mut Criterion) {
    let (registry, m) = populated(1000);
    let om = render(&registry, &m.checks, Format::OpenMetrics);
    eprintln!(
        "1,000 targets: {} lines, {} bytes",
        om.lines().count(),
        om.len()
    );
    let mut g = c.benchmark_group("metrics_1000_targets");
    g.sample_size(30);
    g.bench_function("openmetrics", |b| {
        b.iter(|| render(&registry, &m.checks, Format::OpenMetrics))
    });
    g.bench_function("prometheus_text", |b| {
        b.iter(|| render(&registry, &m.checks, Format::PrometheusText))
    });
    g.finish();
}

criterion_group!(benches, render_1000_targets);
criterion_main!(benches);
