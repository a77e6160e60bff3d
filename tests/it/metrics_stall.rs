//! `/metrics` against clients that send a complete request and never read its answer (issue 16's
//! last open memory hole, issue 15 item 4): the real binary with 1,000 targets × 2 families ×
//! (dns, tcp, http) against loopback peers (about 12 MB of exposition), inside a 64 MiB memory
//! cgroup, and 300 connections that each send `GET /metrics` and then read nothing (with a 4 KiB
//! receive buffer, so the kernel takes little off the agent). The body is streamed in bounded
//! chunks, so a stalled connection holds about one chunk, not a rendered body: the agent's
//! anonymous memory grows by at most [`PER_STALLED_MAX`] per connection, stays under the task's
//! 64 MiB, nothing is OOM-killed, and `/-/healthy` and whole scrapes in both formats keep
//! answering meanwhile. Root only (the cgroup: without one, a regression would take gigabytes of
//! the machine's memory); skipped loudly otherwise.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

use crate::abuse::{
    HEALTH_DEADLINE, MEMORY_LIMIT, MemCgroup, on_own_runtime, raise_own_nofile, timed_get,
};
use crate::agent_proc::{AgentProc, get, get_with};
use crate::reload_load::footprint;
use crate::support::{DUAL_HOST, DnsServer, HttpServer, is_root, standard_zone};

const TARGETS: usize = 1000;
const STALLED: usize = 300;
/// What one stalled connection may add to the agent's anonymous memory: its chunk of the body
/// (64 KiB at most), hyper's buffers and the connection's own state.
const PER_STALLED_MAX: u64 = 160 << 10;

/// What one stalled connection may park in the kernel: the agent caps an accepted socket's send
/// buffer at 64 KiB, which Linux doubles.
const KERNEL_PER_STALLED_MAX: u64 = 160 << 10;

/// The bytes queued in the kernel send buffers of the established connections on `port` (the
/// agent's side), and how many there are, from `ss -tm`; `None` without `ss`.
fn send_queues(port: &str) -> Option<(u64, usize)> {
    let out = std::process::Command::new("ss")
        .args(["-tmnH", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut queued = 0;
    let mut sockets = 0;
    for skmem in text.lines().filter_map(|l| l.split("skmem:(").nth(1)) {
        sockets += 1;
        // `w<N>` is wmem_queued (`wmem_alloc` is `t<N>`).
        queued += skmem
            .trim_end_matches(')')
            .split(',')
            .find_map(|f| f.strip_prefix('w')?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some((queued, sockets))
}

/// The `dualprobe_probe_success` series of a scrape: one per (target, check, family) that ran.
fn success_series(body: &str) -> usize {
    body.lines()
        .filter(|l| l.starts_with("dualprobe_probe_success{"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_metrics_readers_hold_a_chunk_each_not_a_body() {
    if !is_root() {
        eprintln!("SKIPPED the stalled /metrics readers test: needs root (a memory cgroup)");
        return;
    }
    let started = Instant::now();
    raise_own_nofile(8192);
    let ((dns, http), _peers) =
        on_own_runtime(|| (DnsServer::start(standard_zone()), HttpServer::plain()));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    let mut yaml = format!(
        "interval: 10s\ntimeout: 2s\nresolver:\n  nameservers: [\"{}\"]\ntargets:\n",
        dns.addr(dualprobe::model::family::Family::Ipv4)
    );
    for i in 0..TARGETS {
        yaml.push_str(&format!(
            "  - {{ name: target-{i:04}, host: {DUAL_HOST}, port: {}, checks: [dns, tcp, http], http: {{ path: /ok }} }}\n",
            http.port()
        ));
    }
    std::fs::write(&cfg, yaml).unwrap();
    let cgroup = match MemCgroup::create_named(MEMORY_LIMIT, "metrics-stall") {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "SKIPPED the stalled /metrics readers test: cannot make a memory cgroup: {e}"
            );
            return;
        }
    };
    let mut agent = AgentProc::start_wrapped(&cfg, "info", &cgroup.wrapper());
    assert_eq!(
        cgroup.members(),
        vec![agent.pid()],
        "the agent is in the cgroup"
    );

    // Every (target, check, family) has run once.
    let want = TARGETS * 3 * 2;
    let deadline = Instant::now() + Duration::from_secs(90);
    let (size, lines) = loop {
        let body = get(&agent.url("/metrics")).await.body;
        if success_series(&body) >= want {
            break (body.len(), body.lines().count());
        }
        assert!(
            Instant::now() < deadline && agent.running(),
            "only {} of {want} series after 90 s:\n{}",
            success_series(&body),
            agent.logs()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(
        size > 10 << 20,
        "/metrics is {size} bytes: too small to prove anything"
    );
    // A few whole scrapes first, so the baseline includes what scraping itself keeps.
    for _ in 0..3 {
        get(&agent.url("/metrics")).await;
    }
    let idle = footprint(agent.pid());

    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(agent.addr.parse().unwrap()).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    // While they hang: health and whole scrapes in both formats still answer (the connection
    // cap leaves 20 slots), and the agent's memory stays bounded.
    let mut max_rss = (0, 0);
    let mut worst_health = Duration::ZERO;
    let mut scrapes = 0;
    let mut health_failure = None;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) && agent.running() {
        match timed_get(&agent.addr, "/-/healthy").await {
            Ok((took, _)) => worst_health = worst_health.max(took),
            Err(e) => {
                health_failure = Some(e);
                break;
            }
        }
        let f = footprint(agent.pid());
        max_rss = (max_rss.0.max(f.0), max_rss.1.max(f.1));
        if scrapes < 2 {
            let om = get_with(
                &agent.url("/metrics"),
                &[("accept", "application/openmetrics-text; version=1.0.0")],
            )
            .await;
            assert_eq!(om.status, 200);
            assert!(
                om.body.ends_with("# EOF\n"),
                "an OpenMetrics scrape ends with # EOF"
            );
            assert!(
                success_series(&om.body) >= want,
                "a whole OpenMetrics scrape"
            );
            let text = get(&agent.url("/metrics")).await;
            assert!(success_series(&text.body) >= want, "a whole text scrape");
            scrapes += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let port = agent.addr.rsplit(':').next().unwrap().to_string();
    let kernel = send_queues(&port);
    let growth = max_rss.1.saturating_sub(idle.1);
    eprintln!(
        "/metrics {size} bytes, {lines} lines; {STALLED} stalled readers; agent idle VmRSS/RssAnon {} / {} KiB, max {} / {} KiB (+{} KiB, {} KiB per stalled reader); kernel send queues (bytes, sockets) {kernel:?}; cgroup peak {} KiB; oom_kill {}; worst /-/healthy {worst_health:?}; test took {:?}",
        idle.0,
        idle.1,
        max_rss.0,
        max_rss.1,
        growth,
        growth / STALLED as u64,
        cgroup.peak().unwrap_or(0).max(cgroup.current()) >> 10,
        cgroup.oom_kills(),
        started.elapsed()
    );
    assert_eq!(cgroup.oom_kills(), 0, "OOM kills in the agent's cgroup");
    assert!(agent.running(), "the agent died:\n{}", agent.logs());
    assert_eq!(health_failure, None, "/-/healthy while the readers stall");
    assert!(worst_health < HEALTH_DEADLINE, "{worst_health:?}");
    assert_eq!(scrapes, 2, "whole scrapes while the readers stall");
    assert!(
        growth * 1024 <= STALLED as u64 * PER_STALLED_MAX,
        "anonymous memory grew {growth} KiB for {STALLED} stalled readers"
    );
    assert!(
        max_rss.1 * 1024 < MEMORY_LIMIT,
        "anonymous memory reached {} KiB",
        max_rss.1
    );
    match kernel {
        Some((queued, sockets)) => {
            assert!(sockets >= STALLED, "only {sockets} connections established");
            assert!(
                queued <= STALLED as u64 * KERNEL_PER_STALLED_MAX,
                "{queued} bytes in the kernel send queues of {sockets} connections"
            );
        }
        None => eprintln!("no `ss`: the kernel send queues were not measured"),
    }
    drop(stalled);
    let (_, _) = timed_get(&agent.addr, "/-/healthy")
        .await
        .expect("healthy afterwards");
    assert!(!agent.logs().contains("panicked"), "{}", agent.logs());
    drop(agent);
    drop(cgroup);
}
