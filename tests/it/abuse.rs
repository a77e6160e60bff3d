//! The real binary under abuse with the resources a Fargate task has (issue 16): inside a 64 MiB
//! memory cgroup, hundreds of slowloris connections and connections sending ~380 KB of header
//! lines must not OOM-kill it; with `nofile=1024`, 1,500 idle connections must not starve its
//! own sockets. The hostile clients reconnect the moment they are closed, so every connection
//! slot stays taken. Throughout, `/-/healthy` and `/metrics` over TCP get a 200 within 2 s, the
//! local health socket answers, `dualprobe healthcheck` (the container's health check) passes
//! well within ECS's 5 s, and the scheduled checks against local peers keep passing. Root only
//! (cgroups, `prlimit` on our own process for the client side's sockets); skipped loudly
//! otherwise.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::agent_proc::{AgentProc, BIN, get, must};
use crate::reload_load::footprint;
use crate::support::is_root;
use crate::support::{
    DUAL_HOST, DnsServer, Tasks, standard_zone, tcp_listener_pair, with_free_port,
};

pub(crate) const MEMORY_LIMIT: u64 = 64 << 20;
/// Each health sample must be answered within this.
pub(crate) const HEALTH_DEADLINE: Duration = Duration::from_secs(2);

/// Raises this test process's open-file limit to `n` (the client side of the abuse needs
/// thousands of sockets; CI's default soft limit is 1024).
pub(crate) fn raise_own_nofile(n: u64) {
    let ok = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={n}:{n}"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "prlimit --nofile={n} on the test process (util-linux)");
}

/// A memory cgroup made for one test: v2 (`memory.max`, `memory.swap.max`) where the memory
/// controller is enabled at the root, else v1 (`memory.limit_in_bytes`, `memory.memsw.*`).
/// Removed on drop (after the agent in it is gone: declare it before the agent).
pub(crate) struct MemCgroup {
    path: PathBuf,
    pub(crate) v2: bool,
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("write {value} to {}: {e}", path.display()))
}

impl MemCgroup {
    pub(crate) fn create(limit: u64) -> Result<MemCgroup, String> {
        MemCgroup::create_named(limit, "abuse")
    }

    /// [`MemCgroup::create`] under a name of its own (tests run in parallel in one process).
    pub(crate) fn create_named(limit: u64, tag: &str) -> Result<MemCgroup, String> {
        let name = format!("dualprobe-test-{}-{tag}", std::process::id());
        let root = Path::new("/sys/fs/cgroup");
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers"));
        if controllers.is_ok_and(|c| c.split_whitespace().any(|c| c == "memory")) {
            let subtree =
                std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
            if !subtree.split_whitespace().any(|c| c == "memory") {
                write(&root.join("cgroup.subtree_control"), "+memory")?;
            }
            let path = root.join(name);
            std::fs::create_dir(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
            let cg = MemCgroup { path, v2: true };
            write(&cg.path.join("memory.max"), &limit.to_string())?;
            if cg.path.join("memory.swap.max").exists() {
                write(&cg.path.join("memory.swap.max"), "0")?;
            }
            return Ok(cg);
        }
        let v1 = root.join("memory");
        if v1.join("memory.limit_in_bytes").exists() {
            let path = v1.join(name);
            std::fs::create_dir(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
            let cg = MemCgroup { path, v2: false };
            write(&cg.path.join("memory.limit_in_bytes"), &limit.to_string())?;
            if cg.path.join("memory.memsw.limit_in_bytes").exists() {
                write(
                    &cg.path.join("memory.memsw.limit_in_bytes"),
                    &limit.to_string(),
                )?;
            }
            return Ok(cg);
        }
        Err("no cgroup v2 memory controller and no v1 memory hierarchy".into())
    }

    /// A shell that moves itself into the cgroup, then execs the agent (same pid).
    pub(crate) fn wrapper(&self) -> Vec<String> {
        let procs = self.path.join("cgroup.procs");
        vec![
            "sh".into(),
            "-c".into(),
            format!("echo $$ > {} && exec \"$@\"", procs.display()),
            "sh".into(),
        ]
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path.join(file)).unwrap_or_default()
    }

    pub(crate) fn members(&self) -> Vec<u32> {
        self.read("cgroup.procs")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// OOM kills in the cgroup so far.
    pub(crate) fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        self.read(file)
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Charged memory now (bytes): anonymous, page cache, and (v2) kernel socket buffers.
    pub(crate) fn current(&self) -> u64 {
        let file = if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        self.read(file).trim().parse().unwrap_or(0)
    }

    /// The kernel's high-water mark, where it keeps one.
    pub(crate) fn peak(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        self.read(file).trim().parse().ok()
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            for pid in self.members() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove {}", self.path.display());
    }
}

/// TCP listeners on 127.0.0.1 and [::1] (one port) that accept and close: a scheduled check's
/// peer.
fn tcp_peer(tasks: &mut Tasks) -> u16 {
    let (port, pair) = with_free_port(|p| tcp_listener_pair(p).map(|l| (p, l)));
    for l in pair {
        tasks.spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        });
    }
    port
}

/// Runs `start` (which spawns its tasks on the current runtime) on a runtime of its own thread,
/// kept until the returned sender drops: the local peers of the scheduled checks must answer
/// promptly while the test's own runtime is busy with thousands of hostile clients, or a slow
/// answer would be the test's fault, not the agent's.
pub(crate) fn on_own_runtime<T: Send + 'static>(
    start: impl FnOnce() -> T + Send + 'static,
) -> (T, tokio::sync::oneshot::Sender<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("peer runtime");
        rt.block_on(async move {
            tx.send(start()).expect("hand the peer over");
            let _ = stop_rx.await;
        });
    });
    (rx.recv().expect("peer started"), stop_tx)
}

/// One GET on a fresh connection, as a health checker or Prometheus makes it: the time until a
/// `200` arrived, retrying a connection closed without an answer until [`HEALTH_DEADLINE`].
pub(crate) async fn timed_get(addr: &str, path: &str) -> Result<(Duration, usize), String> {
    let started = Instant::now();
    let mut attempts = 0;
    let mut last = String::new();
    while started.elapsed() < HEALTH_DEADLINE {
        attempts += 1;
        let left = HEALTH_DEADLINE.saturating_sub(started.elapsed());
        let attempt = async {
            let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(out)
        };
        match tokio::time::timeout(left, attempt).await {
            Ok(Ok(out)) if out.starts_with(b"HTTP/1.1 200") => {
                return Ok((started.elapsed(), attempts));
            }
            Ok(Ok(out)) => {
                last = format!(
                    "answer {:?}",
                    String::from_utf8_lossy(&out[..out.len().min(80)])
                )
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = "no answer".into(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!(
        "GET {path}: no 200 within {HEALTH_DEADLINE:?} ({attempts} attempts; last: {last})"
    ))
}

/// What the health sampler saw.
#[derive(Debug, Default)]
struct Health {
    samples: usize,
    worst: Duration,
    most_attempts: usize,
    failures: Vec<String>,
}

/// Samples `/-/healthy` and `/metrics` every 250 ms until `stop`.
async fn sample_health(addr: String, stop: Arc<AtomicBool>) -> Health {
    let mut h = Health::default();
    while !stop.load(Ordering::SeqCst) {
        for path in ["/-/healthy", "/metrics"] {
            h.samples += 1;
            match timed_get(&addr, path).await {
                Ok((took, attempts)) => {
                    h.worst = h.worst.max(took);
                    h.most_attempts = h.most_attempts.max(attempts);
                }
                Err(e) => h.failures.push(e),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    h
}

/// [`sample_health`] on a thread and runtime of its own, so that a late answer is the agent's,
/// not the busy test runtime's.
fn health_thread(addr: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Health> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("health runtime")
            .block_on(sample_health(addr, stop))
    })
}

/// What the container health check saw: `dualprobe healthcheck` runs, and direct asks of the
/// local health socket.
#[derive(Debug, Default)]
struct ContainerHealth {
    runs: usize,
    worst_run: Duration,
    local_asks: usize,
    worst_local: Duration,
    failures: Vec<String>,
}

/// Every 500 ms until `stop`: `dualprobe healthcheck` on a config that listens where the agent
/// does (as the task definition runs it), then one GET of `/-/healthy` on the agent's local
/// health socket, which proves that socket itself answers under the flood.
fn container_health_thread(
    addr: &str,
    dir: &Path,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<ContainerHealth> {
    let port: u16 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap();
    let cfg = dir.join("healthcheck.yml");
    std::fs::write(&cfg, format!("listen: \"{addr}\"\ntargets: []\n")).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("local health runtime");
        let mut h = ContainerHealth::default();
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let out = std::process::Command::new(BIN)
                .args(["healthcheck", "--config"])
                .arg(&cfg)
                .output()
                .expect("run dualprobe healthcheck");
            let took = started.elapsed();
            h.runs += 1;
            h.worst_run = h.worst_run.max(took);
            if !out.status.success() || took > ECS_HEALTH_TIMEOUT {
                h.failures.push(format!(
                    "healthcheck {:?} after {took:?}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let started = Instant::now();
            let local = rt.block_on(dualprobe::serve::local::get_status(
                port,
                "/-/healthy",
                HEALTH_DEADLINE,
            ));
            h.local_asks += 1;
            h.worst_local = h.worst_local.max(started.elapsed());
            if !matches!(local, Ok(200)) {
                h.failures.push(format!("local health socket: {local:?}"));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        h
    })
}

/// ECS's default container health check timeout (the task definitions here use it).
const ECS_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The flood's verdict on health: every TCP sample got its 200 within [`HEALTH_DEADLINE`],
/// every health check passed.
fn assert_health(health: &Health, container: &ContainerHealth) {
    assert!(
        health.failures.is_empty(),
        "/-/healthy or /metrics got no 200 within {HEALTH_DEADLINE:?}: {health:?}"
    );
    assert!(
        container.failures.is_empty() && container.runs >= 5 && container.local_asks >= 5,
        "the container health check under the flood: {container:?}"
    );
}

/// How a hostile client behaves on each connection it opens (it reopens when closed).
#[derive(Clone, Copy)]
enum Hostile {
    /// Sends nothing.
    Idle,
    /// Sends a request line and then a header line every 500 ms, never the end of the head.
    Slowloris,
    /// Sends a request line and ~380 KB of header lines at once, never the end of the head.
    BigHead,
}

/// Runs `n` clients of `kind` against `addr` until `stop`; `opened` counts connections.
fn spawn_hostile(
    tasks: &mut Tasks,
    kind: Hostile,
    n: usize,
    addr: &str,
    stop: &Arc<AtomicBool>,
    opened: &Arc<AtomicUsize>,
) {
    let mut big = b"GET /metrics HTTP/1.1\r\nHost: x\r\n".to_vec();
    let mut i = 0;
    while big.len() < 380_000 {
        big.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "a".repeat(90)).as_bytes());
        i += 1;
    }
    let big: Arc<[u8]> = big.into();
    for _ in 0..n {
        let (addr, stop, opened, big) =
            (addr.to_string(), stop.clone(), opened.clone(), big.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let Ok(Ok(s)) =
                    tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&addr)).await
                else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::SeqCst);
                let (mut r, mut w) = s.into_split();
                let talk = async {
                    match kind {
                        Hostile::Idle => {}
                        Hostile::Slowloris => {
                            let _ = w.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
                            for k in 0.. {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                                let line = format!("X-Dribble-{k}: a\r\n");
                                if w.write_all(line.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Hostile::BigHead => {
                            if w.write_all(&big).await.is_err() {
                                return;
                            }
                        }
                    }
                    std::future::pending::<()>().await;
                };
                let mut buf = [0u8; 1024];
                let closed = async {
                    // Until the server closes (it may answer 408 or 431 first).
                    while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
                };
                let stopped = async {
                    while !stop.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                };
                tokio::select! {
                    _ = talk => {}
                    _ = closed => {}
                    _ = stopped => {}
                }
            }
        });
    }
}

/// Sum of `dualprobe_probes_total` of `target` by whether the result was `ok`.
fn probe_counts(metrics: &str, target: &str) -> (f64, f64) {
    let prefix = format!("dualprobe_probes_total{{target=\"{target}\",");
    let (mut ok, mut bad) = (0.0, 0.0);
    for l in metrics.lines().filter(|l| l.starts_with(&prefix)) {
        let v: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if l.contains("result=\"ok\"") {
            ok += v;
        } else {
            bad += v;
        }
    }
    (ok, bad)
}

fn assert_checks_never_failed(
    agent: &AgentProc,
    m: &str,
    target: &str,
    before_ok: f64,
    min_new: f64,
) {
    let (ok, bad) = probe_counts(m, target);
    assert_eq!(
        bad,
        0.0,
        "scheduled checks of {target} failed under abuse:\n{}",
        agent.logs()
    );
    assert!(
        ok - before_ok >= min_new,
        "only {} passing checks of {target} during the abuse",
        ok - before_ok
    );
    for false_alarm in ["now failing", "first probe: failing"] {
        assert!(!agent.logs().contains(false_alarm), "{}", agent.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_big_heads_under_a_64mib_memory_limit() {
    memory_abuse().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_under_nofile_1024_do_not_starve_checks() {
    fd_abuse().await;
}

async fn memory_abuse() {
    if !is_root() {
        eprintln!("SKIPPED the 64 MiB memory-cgroup abuse test: needs root (a memory cgroup)");
        return;
    }
    let started = Instant::now();
    raise_own_nofile(8192);
    let ((port, _tasks), _peers) = on_own_runtime(|| {
        let mut tasks = Tasks::default();
        (tcp_peer(&mut tasks), tasks)
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "interval: 1s\ntimeout: 500ms\ntargets:\n  - {{ name: local, host: 127.0.0.1, port: {port}, checks: [tcp], families: [ipv4] }}\n  - {{ name: local6, host: \"::1\", port: {port}, checks: [tcp], families: [ipv6] }}\n"
        ),
    )
    .unwrap();
    // No `prlimit --as` fallback: a limit on address space is not one on memory (the debug
    // binary alone maps 110 MB), so without a memory cgroup the test cannot say anything.
    let cgroup = match MemCgroup::create(MEMORY_LIMIT) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "SKIPPED the 64 MiB memory-cgroup abuse test: cannot make a memory cgroup: {e}"
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
    agent.wait_ready().await;
    let m = get(&agent.url("/metrics")).await.body;
    let before = (probe_counts(&m, "local").0, probe_counts(&m, "local6").0);
    let idle = (cgroup.current(), footprint(agent.pid()));

    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let mut hostile = Tasks::default();
    spawn_hostile(
        &mut hostile,
        Hostile::Slowloris,
        300,
        &agent.addr,
        &stop,
        &opened,
    );
    spawn_hostile(
        &mut hostile,
        Hostile::BigHead,
        400,
        &agent.addr,
        &stop,
        &opened,
    );
    let health = health_thread(agent.addr.clone(), stop.clone());
    let container = container_health_thread(&agent.addr, dir.path(), stop.clone());
    let attack = Duration::from_secs(20);
    let mut max_current = 0;
    let mut max_rss = (0, 0, 0);
    let t0 = Instant::now();
    while t0.elapsed() < attack && agent.running() {
        max_current = max_current.max(cgroup.current());
        let f = footprint(agent.pid());
        max_rss = (max_rss.0.max(f.0), max_rss.1.max(f.1), max_rss.2.max(f.2));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (health, container) =
        tokio::task::spawn_blocking(move || (health.join().unwrap(), container.join().unwrap()))
            .await
            .unwrap();
    drop(hostile);
    let opened = opened.load(Ordering::SeqCst);
    let peak = cgroup.peak().unwrap_or(0).max(max_current);
    eprintln!(
        "{opened} hostile connections in {attack:?}; health {health:?}; {container:?}; cgroup idle {} KiB, peak {} KiB of {} KiB; agent idle VmRSS/RssAnon/fds {:?}, max {max_rss:?}; oom_kill {}; {} cgroup; test took {:?}",
        idle.0 >> 10,
        peak >> 10,
        MEMORY_LIMIT >> 10,
        idle.1,
        cgroup.oom_kills(),
        if cgroup.v2 { "v2" } else { "v1" },
        started.elapsed()
    );
    assert_eq!(cgroup.oom_kills(), 0, "OOM kills in the agent's cgroup");
    assert!(agent.running(), "the agent died:\n{}", agent.logs());
    assert!(opened >= 600, "only {opened} hostile connections");
    assert_health(&health, &container);
    assert!(health.samples >= 8, "{health:?}");
    assert!(
        peak < MEMORY_LIMIT / 2,
        "memory peak {} KiB, limit {} KiB",
        peak >> 10,
        MEMORY_LIMIT >> 10
    );
    let m = get(&agent.url("/metrics")).await.body;
    assert_checks_never_failed(&agent, &m, "local", before.0, 15.0);
    assert_checks_never_failed(&agent, &m, "local6", before.1, 15.0);
    assert!(!agent.logs().contains("panicked"), "{}", agent.logs());
    drop(agent);
    drop(cgroup);
}

async fn fd_abuse() {
    if !is_root() {
        eprintln!("SKIPPED the nofile=1024 abuse test: needs root (prlimit on the test process)");
        return;
    }
    let started = Instant::now();
    raise_own_nofile(8192);
    let ((dns, port, _tasks), _peers) = on_own_runtime(|| {
        let mut tasks = Tasks::default();
        let port = tcp_peer(&mut tasks);
        (DnsServer::start(standard_zone()), port, tasks)
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "interval: 1s\ntimeout: 500ms\nresolver:\n  nameservers: [\"{}\"]\ntargets:\n  - {{ name: local, host: {DUAL_HOST}, port: {port}, checks: [dns, tcp], families: [ipv4, ipv6] }}\n",
            dns.addr(dualprobe::model::family::Family::Ipv4)
        ),
    )
    .unwrap();
    let wrapper: Vec<String> = ["prlimit", "--nofile=1024:1024", "--"]
        .map(String::from)
        .into();
    let mut agent = AgentProc::start_wrapped(&cfg, "info", &wrapper);
    agent.wait_ready().await;
    let m = get(&agent.url("/metrics")).await.body;
    assert_eq!(must(&m, "process_max_fds"), 1024.0, "prlimit applied");
    let before = probe_counts(&m, "local").0;

    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let mut hostile = Tasks::default();
    spawn_hostile(
        &mut hostile,
        Hostile::Idle,
        1500,
        &agent.addr,
        &stop,
        &opened,
    );
    let health = health_thread(agent.addr.clone(), stop.clone());
    let container = container_health_thread(&agent.addr, dir.path(), stop.clone());
    let attack = Duration::from_secs(15);
    let mut max_fds = 0;
    let t0 = Instant::now();
    while t0.elapsed() < attack && agent.running() {
        max_fds = max_fds.max(footprint(agent.pid()).2);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (health, container) =
        tokio::task::spawn_blocking(move || (health.join().unwrap(), container.join().unwrap()))
            .await
            .unwrap();
    drop(hostile);
    let opened = opened.load(Ordering::SeqCst);
    eprintln!(
        "{opened} idle connections in {attack:?}; health {health:?}; {container:?}; agent fds at most {max_fds} of 1024; test took {:?}",
        started.elapsed()
    );
    assert!(agent.running(), "the agent died:\n{}", agent.logs());
    assert!(opened >= 1500, "only {opened} idle connections");
    assert_health(&health, &container);
    assert!(health.samples >= 8, "{health:?}");
    // The slots and the evicted connections still closing, the local socket, the checks' own.
    assert!(max_fds <= 400, "the agent held {max_fds} fds");
    let m = get(&agent.url("/metrics")).await.body;
    // Two families × two checks per second.
    assert_checks_never_failed(&agent, &m, "local", before, 40.0);
    assert!(
        !agent.logs().contains("no connections available"),
        "{}",
        agent.logs()
    );
    assert!(!agent.logs().contains("panicked"), "{}", agent.logs());
}
