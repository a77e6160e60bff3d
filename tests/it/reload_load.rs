//! Reloads under load (issue 16): the real binary, probing a set of local TCP listeners, takes
//! 100 back-to-back `POST /-/reload`s — good configs that change the target set, bad ones each
//! with a different kind of error — while wrk bursts `/probe` and a scraper reads `/metrics`
//! without pause. Every scrape is held to the target sets the reloads allowed while it ran (a
//! removed target's series never comes back, a refused reload keeps exactly the old set, the
//! target in every config never loses its series), and afterwards the process is alive, never
//! panicked, exports exactly the last good config's targets, and its RSS and open fds are back
//! at the baseline measured after a warm-up.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::agent_proc::{AgentProc, client, get, must};
use crate::support::{NeverAccepting, Tasks, tcp_listener_pair, with_free_port};

const TOKEN: &str = "reload-load-7d1e";
/// Targets good configs pick from (besides `anchor`, which every config has).
const POOL: usize = 16;
const RELOADS: usize = 100;
/// Resident memory may exceed the warm-up baseline by this much after the load: measured
/// +0.14 to +0.20 MiB RssAnon and +0.27 to +0.39 MiB VmRSS (debug build, 2 runs); 1 MiB is 2.5×
/// the most seen, and a leak of 12 KiB per reload (1.2 MiB over the 100) would cross it.
const RSS_SLACK_KB: u64 = 1024;
/// Open fds may exceed the baseline by this many (a blocking-pool thread's eventfd, say).
const FD_SLACK: usize = 2;

/// TCP listeners on 127.0.0.1 and [::1] (one port per pair) that accept and close.
struct Listeners {
    ports: Vec<u16>,
    _tasks: Tasks,
}

fn listeners(n: usize) -> Listeners {
    let mut tasks = Tasks::default();
    let mut ports = Vec::new();
    for _ in 0..n {
        let (port, pair) = with_free_port(|p| tcp_listener_pair(p).map(|l| (p, l)));
        for l in pair {
            tasks.spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    drop(s);
                }
            });
        }
        ports.push(port);
    }
    Listeners {
        ports,
        _tasks: tasks,
    }
}

/// The world the configs describe: where each pool target points.
struct World {
    token_file: PathBuf,
    anchor_port: u16,
    /// `(name, yaml line)` of every pool target.
    pool: Vec<(String, String)>,
}

impl World {
    fn new(dir: &Path, listeners: &Listeners, slow_port: u16) -> World {
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let mut pool = Vec::new();
        for j in 0..POOL {
            let name = format!("t{j:02}");
            // Every fourth points at a listener that never accepts: its cycles are in flight
            // (connect waiting for the timeout) when a reload removes it.
            let port = if j % 4 == 3 {
                slow_port
            } else {
                listeners.ports[j % listeners.ports.len()]
            };
            let (host, family) = if j % 2 == 0 {
                ("127.0.0.1", "ipv4")
            } else {
                ("\"::1\"", "ipv6")
            };
            pool.push((
                name.clone(),
                format!(
                    "  - {{ name: {name}, host: {host}, port: {port}, checks: [tcp], families: [{family}] }}\n"
                ),
            ));
        }
        World {
            token_file,
            anchor_port: listeners.ports[0],
            pool,
        }
    }

    /// A good config with the pool targets whose bits are set in `mask`, and its target set.
    fn good(&self, mask: u32) -> (String, BTreeSet<String>) {
        let mut yaml = format!(
            "interval: 1s\ntimeout: 300ms\nprobe:\n  token_file: {}\n  allow: [\"127.0.0.0/8\"]\n  max_concurrent: 16\n  rate_per_second: 500\n  burst: 100\ntargets:\n  - {{ name: anchor, host: 127.0.0.1, port: {}, checks: [tcp], families: [ipv4] }}\n",
            self.token_file.display(),
            self.anchor_port
        );
        let mut names = BTreeSet::from(["anchor".to_string()]);
        for (j, (name, line)) in self.pool.iter().enumerate() {
            if mask & (1 << j) != 0 {
                yaml.push_str(line);
                names.insert(name.clone());
            }
        }
        (yaml, names)
    }
}

/// The bad configs, each a different kind of error made from the running good one, with what
/// the refusal must say. `None` as the text: the config file is replaced by a FIFO.
fn bad(kind: usize, good: &str) -> (Option<String>, &'static str) {
    let first_tcp = |with: &str| good.replacen("checks: [tcp]", with, 1);
    match kind % 12 {
        0 => (
            Some(format!("{good}  - {{ name: broken\n")),
            "YAML syntax error at column",
        ),
        1 => (
            Some(format!("bogus_key: 1\n{good}")),
            "unknown field `bogus_key`",
        ),
        2 => (Some(first_tcp("checks: [ping]")), "unknown check `ping`"),
        3 => (
            Some(format!(
                "{good}  - {{ name: anchor, host: 127.0.0.1, port: 9, checks: [tcp] }}\n"
            )),
            "is used by an earlier target",
        ),
        4 => (
            Some(good.replace("timeout: 300ms", "timeout: 2s")),
            "must be less than interval",
        ),
        5 => (
            Some(first_tcp("checks: [tcp, tls], tls: { ca_file: /dev/zero }")),
            "/dev/zero is not a regular file",
        ),
        6 => (
            Some(good.replace("token_file: /", "token_file: /nonexistent/")),
            "cannot read /nonexistent/",
        ),
        7 => (
            Some(format!(
                "{good}  - {{ name: big, host: 127.0.0.1, port: 70000, checks: [tcp] }}\n"
            )),
            "`70000` is not a port (1-65535)",
        ),
        8 => (
            Some(good.replace("interval: 1s", "interval: 100ms")),
            "shorter than the 1s minimum",
        ),
        9 => (
            Some(good.replacen("families: [ipv4]", "families: [ipv5]", 1)),
            "`ipv5` is not one of ipv4, ipv6",
        ),
        10 => (
            Some(good.replacen("host: 127.0.0.1", "host: \"bad?host\"", 1)),
            "is not a host name",
        ),
        _ => (None, "is not a regular file"),
    }
}

/// Replaces `cfg` atomically (write and rename), so the agent never reads half a file.
fn install_config(cfg: &Path, text: Option<&str>) {
    let tmp = cfg.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    match text {
        Some(t) => std::fs::write(&tmp, t).unwrap(),
        None => crate::support::mkfifo(&tmp),
    }
    std::fs::rename(&tmp, cfg).unwrap();
}

/// Every `target` label value in a `/metrics` body, and those of `dualprobe_probe_success`.
fn target_labels(body: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut all, mut success) = (BTreeSet::new(), BTreeSet::new());
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.split_once("target=\"").map(|(_, r)| r) else {
            continue;
        };
        let name = rest.split('"').next().unwrap_or_default().to_string();
        if line.starts_with("dualprobe_probe_success{") {
            success.insert(name.clone());
        }
        all.insert(name);
    }
    (all, success)
}

/// VmRSS and RssAnon (kB) and the number of open fds of `pid`.
pub fn footprint(pid: u32) -> (u64, u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (kb("VmRSS:"), kb("RssAnon:"), fds)
}

/// [`footprint`] with the fewest open fds seen over one 1 s interval: a cycle in flight to the
/// never-accepting listener holds a socket for its 300 ms timeout, and pairs that start together
/// stay in phase, so one sample may catch several; a leaked fd is there in every sample.
async fn settled_footprint(pid: u32) -> (u64, u64, usize) {
    let mut least = footprint(pid);
    for _ in 0..11 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        least.2 = least.2.min(footprint(pid).2);
    }
    least
}

async fn post_reload(url: &str) -> (u16, String) {
    let r = client()
        .post(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST /-/reload");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// wrk on `/probe` (a configured target and an ad-hoc one, in turn) until interrupted; prints
/// `DPSTAT ok refused other` from its script.
fn start_wrk(base: &str, adhoc_port: u16, dir: &Path) -> std::process::Child {
    let script = dir.join("probe-mix.lua");
    std::fs::write(
        &script,
        format!(
            r#"ok_n, refused_n, other_n = 0, 0, 0
local threads = {{}}
local paths = {{ "/probe?target=anchor", "/probe?target=127.0.0.1:{adhoc_port}&check=tcp&family=ipv4" }}
local i = 0
function setup(thread) table.insert(threads, thread) end
function request()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
function response(status, headers, body)
  if status == 200 and string.find(body, "probe_success 1", 1, true) then ok_n = ok_n + 1
  elseif status == 429 then refused_n = refused_n + 1
  else other_n = other_n + 1 end
end
function done(summary, latency, requests)
  local ok, refused, other = 0, 0, 0
  for _, t in ipairs(threads) do
    ok = ok + t:get("ok_n"); refused = refused + t:get("refused_n"); other = other + t:get("other_n")
  end
  io.write(string.format("DPSTAT %d %d %d\n", ok, refused, other))
end
"#
        ),
    )
    .unwrap();
    Command::new("wrk")
        .args(["-t2", "-c16", "-d120s", "--timeout", "5s", "-H"])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg("-s")
        .arg(&script)
        .arg(format!("{base}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run wrk (Debian: apt-get install -y wrk): {e}"))
}

/// Stops wrk (SIGINT: it reports and exits) and returns `[ok, refused, other]`.
fn stop_wrk(child: std::process::Child) -> [usize; 3] {
    let int = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("wrk:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DPSTAT "))
        .unwrap_or_else(|| panic!("no tally from the wrk script:\n{stdout}"));
    let n: Vec<usize> = line
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    [n[0], n[1], n[2]]
}

/// What the scraper saw while the reloads ran.
#[derive(Default)]
struct Scrapes {
    count: usize,
    violations: Vec<String>,
}

/// Scrapes `/metrics` until `stop`, holding each scrape to the sets `allowed` lists for the
/// reloads that were done or in flight while it ran. `seq` is odd while a reload is in flight,
/// and `seq / 2` reloads are done; `allowed[k]` is the target set after `k` reloads.
async fn scrape_loop(
    url: String,
    seq: Arc<AtomicU64>,
    allowed: Arc<Mutex<Vec<BTreeSet<String>>>>,
    stop: Arc<AtomicBool>,
) -> Scrapes {
    let http = client();
    let mut out = Scrapes::default();
    while !stop.load(Ordering::SeqCst) {
        let s0 = seq.load(Ordering::SeqCst);
        let body = match http.get(&url).send().await {
            Ok(r) if r.status() == 200 => r.text().await.unwrap_or_default(),
            Ok(r) => {
                out.violations
                    .push(format!("/metrics answered {}", r.status()));
                continue;
            }
            Err(e) => {
                out.violations.push(format!("/metrics failed: {e}"));
                continue;
            }
        };
        let s1 = seq.load(Ordering::SeqCst);
        out.count += 1;
        let (all, success) = target_labels(&body);
        let allowed = allowed.lock().unwrap();
        let (from, to) = ((s0 / 2) as usize, s1.div_ceil(2) as usize);
        let union: BTreeSet<&String> = allowed[from..=to.min(allowed.len() - 1)]
            .iter()
            .flatten()
            .collect();
        let extra: Vec<&String> = all.iter().filter(|t| !union.contains(t)).collect();
        if !extra.is_empty() {
            out.violations.push(format!(
                "scrape during reloads {from}..={to} has series of {extra:?}, allowed {union:?}"
            ));
        }
        if !success.contains("anchor") {
            out.violations.push(format!(
                "scrape during reloads {from}..={to} lost anchor's dualprobe_probe_success"
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_probe_and_scrape_load_keep_series_and_footprint() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let listeners = listeners(4);
    let slow = NeverAccepting::full();
    let world = World::new(dir.path(), &listeners, slow.port());
    let cfg = dir.path().join("dualprobe.yml");

    // Good config i: a pseudo-random subset of the pool, never the same as the one before.
    let mut masks = vec![0x00ff_u32];
    let mut x: u32 = 0x2545_f491;
    while masks.len() <= RELOADS / 2 + 10 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let mut m = (x >> 8) & ((1 << POOL) - 1);
        if Some(&m) == masks.last() {
            m ^= 1 << (masks.len() % POOL);
        }
        masks.push(m);
    }
    let (initial, initial_set) = world.good(masks[0]);
    install_config(&cfg, Some(&initial));
    let mut agent = AgentProc::start(&cfg, "info");
    agent.wait_ready().await;
    let reload_url = agent.url("/-/reload");

    let seq = Arc::new(AtomicU64::new(0));
    let allowed = Arc::new(Mutex::new(vec![initial_set.clone()]));
    let mut current = (initial, initial_set);
    let mut good_done = 0usize;
    // One reload: good on even `i`, bad on odd; checks the answer and the reload gauge.
    let reload =
        async |i: usize, current: &mut (String, BTreeSet<String>), good_done: &mut usize| {
            let (text, want, good) = if i.is_multiple_of(2) {
                *good_done += 1;
                let (yaml, names) = world.good(masks[*good_done]);
                *current = (yaml.clone(), names);
                (Some(yaml), "config reloaded", true)
            } else {
                let (text, want) = bad(i / 2, &current.0);
                (text, want, false)
            };
            install_config(&cfg, text.as_deref());
            // The set this reload leaves, listed before it starts: a scrape during it may see it.
            allowed.lock().unwrap().push(current.1.clone());
            seq.fetch_add(1, Ordering::SeqCst);
            let (status, body) = post_reload(&reload_url).await;
            seq.fetch_add(1, Ordering::SeqCst);
            assert_eq!(status, if good { 200 } else { 400 }, "reload {i}: {body}");
            assert!(body.contains(want), "reload {i} must say `{want}`: {body}");
            if !good {
                assert!(body.contains("previous config keeps running"), "{body}");
            }
            let m = get(&agent.url("/metrics")).await.body;
            let gauge = must(&m, "dualprobe_config_last_reload_successful");
            assert_eq!(gauge, if good { 1.0 } else { 0.0 }, "after reload {i}");
        };

    // Warm-up: the same load, briefly, with 10 reloads; then the baseline, after a settle.
    let wrk = start_wrk(&agent.base, listeners.ports[1], dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = tokio::spawn(scrape_loop(
        agent.url("/metrics"),
        Arc::clone(&seq),
        Arc::clone(&allowed),
        Arc::clone(&stop),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..10 {
        reload(i, &mut current, &mut good_done).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warm = stop_wrk(wrk);
    stop.store(true, Ordering::SeqCst);
    let warm_scrapes = scraper.await.unwrap();
    assert!(
        warm_scrapes.violations.is_empty(),
        "{:?}",
        warm_scrapes.violations
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline = settled_footprint(agent.pid()).await;
    eprintln!("warm-up: wrk {warm:?}, baseline VmRSS/RssAnon/fds {baseline:?}");

    // The load: wrk and the scraper for the whole run of 100 reloads.
    let wrk = start_wrk(&agent.base, listeners.ports[1], dir.path());
    stop.store(false, Ordering::SeqCst);
    let scraper = tokio::spawn(scrape_loop(
        agent.url("/metrics"),
        Arc::clone(&seq),
        Arc::clone(&allowed),
        Arc::clone(&stop),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let load_started = Instant::now();
    let mut peak = (0, 0, 0);
    for i in 10..10 + RELOADS {
        reload(i, &mut current, &mut good_done).await;
        let f = footprint(agent.pid());
        peak = (peak.0.max(f.0), peak.1.max(f.1), peak.2.max(f.2));
    }
    let reload_time = load_started.elapsed();
    let load = stop_wrk(wrk);
    stop.store(true, Ordering::SeqCst);
    let scrapes = scraper.await.unwrap();
    eprintln!(
        "{RELOADS} reloads in {reload_time:?}; wrk {load:?}; {} scrapes; peak VmRSS/RssAnon/fds {peak:?}",
        scrapes.count
    );
    assert!(scrapes.violations.is_empty(), "{:#?}", scrapes.violations);
    assert!(
        scrapes.count >= 20,
        "the scraper hardly ran: {}",
        scrapes.count
    );
    assert_eq!(
        load[2], 0,
        "/probe answered other than 200 with success or 429: {load:?}"
    );
    assert!(load[0] >= 100, "the burst hardly probed: {load:?}");

    // The last reload (odd) was a bad one: the last good config's targets, exactly, and the
    // gauge 0, once every target has had a cycle (interval 1s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = get(&agent.url("/metrics")).await.body;
    let (all, success) = target_labels(&m);
    assert_eq!(all, current.1, "series after the load");
    assert_eq!(success, current.1, "dualprobe_probe_success after the load");
    assert_eq!(must(&m, "dualprobe_config_last_reload_successful"), 0.0);
    assert!(agent.running(), "the agent died:\n{}", agent.logs());
    assert!(!agent.logs().contains("panicked"), "{}", agent.logs());

    let after = settled_footprint(agent.pid()).await;
    eprintln!(
        "after a settle: VmRSS/RssAnon/fds {after:?} (baseline {baseline:?}); test took {:?}",
        started.elapsed()
    );
    assert!(
        after.2 <= baseline.2 + FD_SLACK,
        "fds {} after the load, {} before",
        after.2,
        baseline.2
    );
    assert!(
        after.1 <= baseline.1 + RSS_SLACK_KB,
        "RssAnon {} kB after the load, {} kB before",
        after.1,
        baseline.1
    );
    assert!(
        after.0 <= baseline.0 + RSS_SLACK_KB,
        "VmRSS {} kB after the load, {} kB before",
        after.0,
        baseline.0
    );
}
