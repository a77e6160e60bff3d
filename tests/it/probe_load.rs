//! `/probe`'s concurrency cap and rate limit under a burst from a load tool (Debian `wrk`, with a
//! Lua script that paces and bounds the requests and tallies answers by status and reason): some
//! requests get 429, the probes let through never hold more than `probe.max_concurrent`
//! connections at the peer at once, the burst and rate are honoured, and the agent stays healthy.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::agent_proc::{AgentProc, get};
use crate::support::closed_port;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_CONCURRENT: usize = 2;
const RATE: usize = 5;
const BURST: usize = 5;
/// How long the peer holds each probe's request before answering.
const HOLD: Duration = Duration::from_millis(700);

/// An HTTP peer on 127.0.0.1 that holds every request for [`HOLD`], counting the connections
/// open at once. It stops counting a connection *before* it answers, and the agent only frees a
/// slot after the answer arrived, so a new probe's connection can never be counted together with
/// the one whose slot it took: the maximum is exact, not racy.
struct HoldingPeer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    max_open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HoldingPeer {
    async fn start() -> HoldingPeer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let max_open = Arc::new(AtomicUsize::new(0));
        let (a, o, m) = (accepted.clone(), open.clone(), max_open.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                let o = o.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    tokio::time::sleep(HOLD).await;
                    o.fetch_sub(1, Ordering::SeqCst);
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        HoldingPeer {
            port,
            accepted,
            open,
            max_open,
            task,
        }
    }
}

impl Drop for HoldingPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the wrk script counted.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    rate: usize,
    in_flight: usize,
    other: usize,
}

/// Runs wrk against `url` with a script that waits `delay_ms` between a connection's requests
/// and stops each thread after `per_thread` answers; `wrk` itself stops after `seconds`.
fn wrk(
    url: &str,
    threads: u32,
    connections: u32,
    seconds: u32,
    delay_ms: u32,
    per_thread: u32,
    dir: &Path,
) -> Tally {
    let script = dir.join(format!("burst-{threads}-{connections}-{delay_ms}.lua"));
    std::fs::write(
        &script,
        format!(
            r#"ok_n, rate_n, inflight_n, other_n = 0, 0, 0, 0
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function delay() return {delay_ms} end
function response(status, headers, body)
  if status == 200 then ok_n = ok_n + 1
  elseif status == 429 and string.find(body, "rate limit", 1, true) then rate_n = rate_n + 1
  elseif status == 429 and string.find(body, "in flight", 1, true) then inflight_n = inflight_n + 1
  else other_n = other_n + 1 end
  if ok_n + rate_n + inflight_n + other_n >= {per_thread} then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local ok, rate, inflight, other = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    ok = ok + t:get("ok_n"); rate = rate + t:get("rate_n")
    inflight = inflight + t:get("inflight_n"); other = other + t:get("other_n")
  end
  io.write(string.format("DPSTAT %d %d %d %d\n", ok, rate, inflight, other))
end
"#
        ),
    )
    .unwrap();
    let out = Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "5s",
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("run wrk (Debian: apt-get install -y wrk): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DPSTAT "))
        .unwrap_or_else(|| panic!("no tally from the wrk script:\n{stdout}"));
    let n: Vec<usize> = line
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let tally = Tally {
        ok: n[0],
        rate: n[1],
        in_flight: n[2],
        other: n[3],
    };
    eprintln!("wrk {url}: {tally:?}\n{stdout}");
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_and_rate_limit_hold_under_a_wrk_burst() {
    let peer = HoldingPeer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dualprobe.yml");
    std::fs::write(
        &cfg,
        format!(
            "targets: []\nprobe:\n  allow: [\"127.0.0.0/8\"]\n  max_concurrent: {MAX_CONCURRENT}\n  rate_per_second: {RATE}\n  burst: {BURST}\n  max_timeout: 5s\n"
        ),
    )
    .unwrap();
    let mut agent = AgentProc::start(&cfg, "info");

    // Phase 1: 8 connections, each asking every 100 ms for 3 s (the pacing bounds it to 240
    // requests; no thread stops early, so only wrk's end cuts answers off), for probes the peer
    // holds open for 0.7 s.
    let hold_url = agent.url(&format!(
        "/probe?target=127.0.0.1:{}&check=http&family=ipv4&timeout=4s",
        peer.port
    ));
    let started = Instant::now();
    let t = tokio::task::spawn_blocking({
        let url = hold_url.clone();
        let dir = dir.path().to_path_buf();
        move || wrk(&url, 2, 8, 3, 100, 1000, &dir)
    })
    .await
    .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    // Let the last held probes finish.
    tokio::time::sleep(HOLD + Duration::from_millis(500)).await;
    let accepted = peer.accepted.load(Ordering::SeqCst);
    let max_open = peer.max_open.load(Ordering::SeqCst);
    assert_eq!(t.other, 0, "only 200 and 429 expected: {t:?}");
    assert!(t.ok >= MAX_CONCURRENT, "the first probes run: {t:?}");
    assert!(t.in_flight > 0, "the cap refused some: {t:?}");
    assert!(t.rate > 0, "the rate limit refused some: {t:?}");
    assert!(
        max_open <= MAX_CONCURRENT,
        "{max_open} probe connections at once at the peer, cap {MAX_CONCURRENT}"
    );
    assert_eq!(
        max_open, MAX_CONCURRENT,
        "the cap was reached (else this proves nothing)"
    );
    // Every 200 was one held connection; wrk may have cut off answers still in flight at its end.
    assert!(
        accepted >= t.ok && accepted <= t.ok + MAX_CONCURRENT,
        "{accepted} connections at the peer for {t:?}"
    );
    // Each accepted probe took a rate token: no more than the burst plus the rate over the run.
    let bound = BURST + (RATE as f64 * elapsed).ceil() as usize;
    assert!(
        accepted <= bound,
        "{accepted} probes accepted in {elapsed:.1}s, bound {bound}"
    );
    assert_eq!(peer.open.load(Ordering::SeqCst), 0);

    // Phase 2: the rate limit alone, with fast probes (a refused port) on one connection as fast
    // as wrk can, stopping after 60 answers. The bucket is full again (1.2 s > burst / rate).
    let fast_url = agent.url(&format!(
        "/probe?target=127.0.0.1:{}&check=tcp&family=ipv4",
        closed_port()
    ));
    let started = Instant::now();
    let t = tokio::task::spawn_blocking({
        let url = fast_url.clone();
        let dir = dir.path().to_path_buf();
        move || wrk(&url, 1, 1, 2, 0, 60, &dir)
    })
    .await
    .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(t.other + t.in_flight, 0, "{t:?}");
    assert_eq!(t.ok + t.rate, 60, "{t:?}");
    assert!(t.ok >= BURST, "the burst is allowed at once: {t:?}");
    let bound = BURST + (RATE as f64 * elapsed).ceil() as usize;
    assert!(
        t.ok <= bound,
        "{} passed in {elapsed:.1}s, bound {bound}: {t:?}",
        t.ok
    );
    assert!(t.rate >= 60 - bound, "{t:?}");

    // The agent is healthy and serves /probe again once tokens are back.
    assert!(agent.running(), "the agent died:\n{}", agent.logs());
    assert_eq!(get(&agent.url("/-/healthy")).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = get(&fast_url).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(crate::agent_proc::must(&r.body, "probe_success"), 0.0);
    let r = get(&hold_url).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        crate::agent_proc::must(&r.body, "probe_success"),
        1.0,
        "{}",
        r.body
    );
}
