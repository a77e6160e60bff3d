//! `/metrics` for 1,000 targets × 2 families × (dns, tcp, http), the shape of issue 15 item 4
//! (targets named as `bench/run.py` names them: about 141k lines, 12 MB; goal: rendered and
//! sent in ≤ 5 ms): rendering it whole into one `String` (`render`, what tests use), rendering
//! it chunk by chunk as `/metrics` streams it (`chunks`: no body-sized buffer), and a whole GET
//! over loopback from the agent's own HTTP server on a one-thread runtime, as a scrape sees it
//! (`get_loopback`), in both formats. Plus the same with 5 duration buckets
//! (`metrics.duration_buckets`) instead of the default 16.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use tokio_util::sync::CancellationToken;

use dualprobe::agent::{Agent, RunOptions};
use dualprobe::checks::check_for;
use dualprobe::config::{Config, ConfigSource};
use dualprobe::model::check_kind::CheckKind;
use dualprobe::model::family::Family;
use dualprobe::model::outcome::{CycleReport, Observations, Outcome};
use dualprobe::report::exposition::Exposition;
use dualprobe::report::metrics::{Format, render};

const TARGETS: usize = 1000;

/// An agent with `TARGETS` targets whose series are filled as after 20 cycles each, served on
/// 127.0.0.1 by a one-thread runtime of its own (the agent's default). Its own schedule (1h,
/// against a closed port) barely runs meanwhile.
fn agent(buckets: &str) -> (Arc<Agent>, std::net::SocketAddr, CancellationToken) {
    let mut yaml = format!("interval: 1h\ntimeout: 1s\n{buckets}targets:\n");
    for t in 0..TARGETS {
        yaml.push_str(&format!(
            "  - {{ name: t{t}, host: 127.0.0.1, port: 9, checks: [dns, tcp, http] }}\n"
        ));
    }
    let config = Config::from_yaml(&yaml, "bench", None).expect("config");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = CancellationToken::new();
    let (agent, listener) = rt.block_on(async {
        let agent = Agent::start(
            ConfigSource::Inline(yaml.clone()),
            config,
            RunOptions::default(),
            shutdown.clone(),
        )
        .expect("agent");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        (agent, listener)
    });
    let addr = listener.local_addr().expect("addr");
    let served = Arc::clone(&agent);
    let stop = shutdown.clone();
    std::thread::spawn(move || {
        rt.block_on(dualprobe::serve::serve_with(
            listener,
            served,
            stop,
            dualprobe::serve::Limits::default(),
        ))
    });
    fill(&agent);
    (agent, addr, shutdown)
}

fn fill(agent: &Agent) {
    let answers = check_for(CheckKind::Dns).measurements()[0];
    let status = check_for(CheckKind::Http).measurements()[0];
    for target in &agent.current().targets {
        for family in Family::ALL {
            for i in 0..20u64 {
                let outcome = |check, observations| Outcome {
                    check,
                    result: Ok(()),
                    duration: Duration::from_micros(100 * (i + 1) * (i + 1)),
                    observations,
                };
                let report = CycleReport {
                    target: Arc::clone(target),
                    family,
                    checks: vec![
                        outcome(CheckKind::Dns, Observations::default().measure(answers, 1)),
                        outcome(CheckKind::Tcp, Observations::default()),
                        outcome(
                            CheckKind::Http,
                            Observations::default().measure(status, 200),
                        ),
                    ],
                    expectation_met: Some(true),
                    expectation_violation: None,
                    ipv6_path: None,
                    finished_at: SystemTime::now(),
                    debug: Vec::new(),
                };
                agent.metrics.record(&report);
            }
        }
    }
}

/// One GET /metrics on `s` (kept alive), read to the end of its chunked body; the body's size.
fn get(s: &mut TcpStream, buf: &mut Vec<u8>, accept: &str) -> usize {
    // One write: `write!` on the stream sends each piece of the format string as its own
    // segment, and Nagle then holds the last one until the agent's delayed ACK, 40 ms later,
    // which the measurement would include.
    let request = format!("GET /metrics HTTP/1.1\r\nHost: bench\r\nAccept: {accept}\r\n\r\n");
    s.write_all(request.as_bytes()).expect("send");
    buf.clear();
    let mut at = 0;
    loop {
        if buf.len() < at + 256 * 1024 {
            buf.resize(at + 256 * 1024, 0);
        }
        let n = s.read(&mut buf[at..]).expect("read");
        assert!(n > 0, "closed before the end");
        at += n;
        // Exposition lines end in a bare \n, so this is the chunked body's end.
        if buf[..at].ends_with(b"\r\n0\r\n\r\n") {
            return at;
        }
    }
}

fn bench(c: &mut Criterion, name: &str, buckets: &str) {
    let (agent, addr, shutdown) = agent(buckets);
    let whole = render(&agent.registry, &agent.metrics.checks, Format::OpenMetrics);
    eprintln!(
        "{name}: {TARGETS} targets × 2 families × (dns, tcp, http): {} lines, {} bytes",
        whole.lines().count(),
        whole.len()
    );
    drop(whole);
    let mut g = c.benchmark_group(name);
    g.sample_size(30);
    for (format, label, accept) in [
        (
            Format::OpenMetrics,
            "openmetrics",
            "application/openmetrics-text; version=1.0.0",
        ),
        (Format::PrometheusText, "prometheus_text", "text/plain"),
    ] {
        g.bench_function(format!("render/{label}"), |b| {
            b.iter(|| render(&agent.registry, &agent.metrics.checks, format))
        });
        g.bench_function(format!("chunks/{label}"), |b| {
            b.iter(|| {
                let mut e = Exposition::new(&agent.registry, agent.metrics.checks.clone(), format);
                let mut n = 0;
                while let Some(chunk) = e.next_chunk() {
                    n += chunk.len();
                }
                n
            })
        });
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("TCP_NODELAY");
        let mut buf = Vec::new();
        g.bench_function(format!("get_loopback/{label}"), |b| {
            b.iter(|| get(&mut s, &mut buf, accept))
        });
    }
    g.finish();
    shutdown.cancel();
}

fn metrics_1000_targets(c: &mut Criterion) {
    bench(c, "metrics_1000_targets", "");
    bench(
        c,
        "metrics_1000_targets_5_buckets",
        "metrics:\n  duration_buckets: [0.005, 0.05, 0.25, 1, 5]\n",
    );
}

criterion_group!(benches, metrics_1000_targets);
criterion_main!(benches);
