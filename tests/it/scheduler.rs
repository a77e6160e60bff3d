//! Scheduler behaviour under paused tokio time: first runs at once for a few pairs and at the
//! start rate for many (never later than an even spread over the interval), phases kept across
//! generations, a global concurrency bound, missed ticks skipped (not queued), a hung pair never delays another, and
//! cancellation stops everything. The cycle itself is a timed fake here: timing is the subject,
//! and no real peer can produce exact timings.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dualprobe::checks::CheckEnv;
use dualprobe::config::Config;
use dualprobe::model::family::Family;
use dualprobe::model::outcome::CycleReport;
use dualprobe::model::target::Target;
use dualprobe::net::resolver::DnsResolver;
use dualprobe::report::metrics::Metrics;
use dualprobe::report::results::Results;
use dualprobe::scheduler::{self, CycleFn, Phases, Readiness, SchedulerDeps, first_run_offset};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn targets(n: usize, interval: &str) -> Vec<Arc<Target>> {
    let mut yaml = format!("interval: {interval}\ntimeout: 1s\ntargets:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - {{ name: t{i}, host: \"2001:db8::{i:x}\", port: 80, checks: [tcp], families: [ipv6] }}\n"
        ));
    }
    Config::from_yaml(&yaml, "test", None).unwrap().targets
}

/// Records (target, start offset) and sleeps `work(target)` per cycle.
#[derive(Clone)]
struct Recorder {
    t0: Instant,
    starts: Arc<Mutex<Vec<(String, Duration)>>>,
    in_flight: Arc<Mutex<(usize, usize)>>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            t0: Instant::now(),
            starts: Arc::default(),
            in_flight: Arc::default(),
        }
    }

    fn cycle(&self, work: fn(&str) -> Duration) -> CycleFn {
        let me = self.clone();
        Arc::new(move |target: Arc<Target>, family: Family, _env| {
            let me = me.clone();
            Box::pin(async move {
                me.starts
                    .lock()
                    .unwrap()
                    .push((target.name.clone(), me.t0.elapsed()));
                {
                    let mut f = me.in_flight.lock().unwrap();
                    f.0 += 1;
                    f.1 = f.1.max(f.0);
                }
                tokio::time::sleep(work(&target.name)).await;
                me.in_flight.lock().unwrap().0 -= 1;
                CycleReport {
                    target,
                    family,
                    checks: vec![],
                    expectation_met: None,
                    expectation_violation: None,
                    ipv6_path: None,
                    finished_at: SystemTime::now(),
                    debug: vec![],
                }
            })
        })
    }

    fn starts_of(&self, name: &str) -> Vec<Duration> {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, d)| *d)
            .collect()
    }
}

fn deps(run: CycleFn, concurrency: usize) -> SchedulerDeps {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    SchedulerDeps {
        env: Arc::new(CheckEnv::new(
            DnsResolver::new(&["127.0.0.1:1".parse().unwrap()], Duration::from_secs(1)).unwrap(),
        )),
        results: Arc::new(Results::new(metrics, vec![])),
        concurrency: Arc::new(Semaphore::new(concurrency)),
        starts_per_second: dualprobe::config::DEFAULT_STARTS_PER_SECOND,
        phases: Arc::new(Phases::default()),
        readiness: Arc::new(Readiness::new()),
        run,
    }
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn a_few_pairs_all_start_at_once() {
    // The embedded default: 2 targets × 2 families every 30 s, at the default rate.
    let i = Duration::from_secs(30);
    for index in 0..4 {
        assert_eq!(first_run_offset(index, 4, i, 100), Duration::ZERO);
    }
    // 100 pairs at 100 a second: all within the first second.
    assert_eq!(first_run_offset(99, 100, i, 100), 900 * MS);
    assert_eq!(first_run_offset(0, 1, i, 100), Duration::ZERO);
}

#[test]
fn many_pairs_start_at_the_rate_on_100ms_slots() {
    // 2,000 pairs every 60 s at 100 a second: 10 per 100 ms slot, the last at 19.9 s.
    let i = Duration::from_secs(60);
    let mut per_slot = std::collections::BTreeMap::new();
    for index in 0..2000 {
        let offset = first_run_offset(index, 2000, i, 100);
        assert_eq!(
            offset.as_nanos() % 100_000_000,
            0,
            "{offset:?} is on a slot"
        );
        *per_slot.entry(offset).or_insert(0) += 1;
    }
    assert_eq!(per_slot.len(), 200);
    assert!(per_slot.values().all(|&n| n == 10), "{per_slot:?}");
    assert_eq!(per_slot.keys().last(), Some(&(19_900 * MS)));
}

#[test]
fn a_first_round_never_takes_longer_than_the_interval() {
    // 2,000 pairs every 10 s need 200 starts a second, as every later round will: the even
    // spread over the interval wins over the 100-a-second rate (20 per slot, all within 10 s).
    let i = Duration::from_secs(10);
    let mut per_slot = std::collections::BTreeMap::new();
    for index in 0..2000 {
        let offset = first_run_offset(index, 2000, i, 100);
        assert!(offset < i, "{offset:?}");
        *per_slot.entry(offset).or_insert(0) += 1;
    }
    assert_eq!(per_slot.len(), 100);
    assert!(per_slot.values().all(|&n| n == 20), "{per_slot:?}");
    // 3 pairs every 2 s at 1 a second: 2 s / 3 = 0.667 s, rounded down to its slot.
    assert_eq!(first_run_offset(1, 3, 2 * i / 10, 1), 600 * MS);
    // Sub-second intervals are spread exactly, not slotted.
    let short = Duration::from_millis(500);
    assert_eq!(first_run_offset(1, 4, short, 1), 125 * MS);
    assert_eq!(first_run_offset(1, 4, short, 1000), MS);
}

#[tokio::test(start_paused = true)]
async fn a_few_pairs_run_at_once_and_keep_their_phase() {
    let rec = Recorder::new();
    let ts = targets(4, "10s");
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let d = deps(rec.cycle(|_| 10 * MS), 100);
    d.readiness.expect(&ts);
    scheduler::spawn(&ts, d.clone(), &tracker, cancel.clone());
    tokio::time::sleep(20 * MS).await;
    assert!(
        d.readiness.is_ready(),
        "ready after every pair's first cycle"
    );
    tokio::time::sleep(Duration::from_millis(25_000)).await;
    for i in 0..4 {
        assert_eq!(
            rec.starts_of(&format!("t{i}")),
            [0, 10, 20].map(Duration::from_secs),
            "t{i} first at once, then every interval"
        );
    }
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test(start_paused = true)]
async fn many_first_runs_are_bounded_by_the_rate() {
    let rec = Recorder::new();
    let ts = targets(50, "60s");
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut d = deps(rec.cycle(|_| MS), 100);
    d.starts_per_second = 10;
    scheduler::spawn(&ts, d, &tracker, cancel.clone());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let starts: Vec<Duration> = rec.starts.lock().unwrap().iter().map(|s| s.1).collect();
    assert_eq!(starts.len(), 50);
    // One slot of 1 each 100 ms: 10 a second, the 50th at 4.9 s.
    for (n, at) in starts.iter().enumerate() {
        assert_eq!(*at, 100 * MS * n as u32, "start {n}");
    }
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_generation_that_keeps_a_pair_keeps_its_phase() {
    let rec = Recorder::new();
    // t2's cycle takes 5 s: it is in flight when the first generation is replaced at 3 s.
    let run = rec.cycle(|name| if name == "t2" { 5000 * MS } else { MS });
    let d = deps(run, 100);
    let tracker = TaskTracker::new();
    let first = CancellationToken::new();
    scheduler::spawn(&targets(3, "10s"), d.clone(), &tracker, first.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.cancel();
    // The new generation: t0 as it was, t1 with a new interval, t2 (stopped mid-cycle), and
    // t3, which is new.
    let mut next = targets(4, "10s");
    next[1] = Arc::clone(&targets(2, "20s")[1]);
    let second = CancellationToken::new();
    scheduler::spawn(&next, d, &tracker, second.clone());
    tokio::time::sleep(Duration::from_millis(18_000)).await;
    let at_ms = |s: &[u64]| {
        s.iter()
            .map(|&m| Duration::from_millis(m))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rec.starts_of("t0"),
        at_ms(&[0, 10_000, 20_000]),
        "kept: its phase"
    );
    assert_eq!(
        rec.starts_of("t1"),
        at_ms(&[0, 3_000]),
        "new interval: started again"
    );
    assert_eq!(
        rec.starts_of("t2"),
        at_ms(&[0, 3_000, 13_000]),
        "stopped mid-cycle: rerun"
    );
    assert_eq!(rec.starts_of("t3"), at_ms(&[3_000, 13_000]), "new: at once");
    second.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded_globally() {
    let rec = Recorder::new();
    let ts = targets(6, "10s");
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    // Each cycle takes longer than the spacing between first runs, so they would overlap.
    scheduler::spawn(
        &ts,
        deps(rec.cycle(|_| Duration::from_secs(8)), 2),
        &tracker,
        cancel.clone(),
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        rec.in_flight.lock().unwrap().1,
        2,
        "never more than 2 cycles at once"
    );
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_are_skipped_and_a_slow_pair_delays_no_other() {
    let rec = Recorder::new();
    let ts = targets(2, "10s");
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    // t0 takes 25s per cycle (2.5 intervals); t1 is quick.
    let work = |name: &str| {
        if name == "t0" {
            Duration::from_secs(25)
        } else {
            Duration::from_millis(5)
        }
    };
    scheduler::spawn(&ts, deps(rec.cycle(work), 100), &tracker, cancel.clone());
    tokio::time::sleep(Duration::from_millis(60_500)).await;
    let slow = rec.starts_of("t0");
    let quick = rec.starts_of("t1");
    // Skip: after a 25s cycle the next run is on the next interval boundary (30s), not a burst
    // of the queued 10s and 20s ticks.
    assert_eq!(
        slow,
        vec![
            Duration::ZERO,
            Duration::from_secs(30),
            Duration::from_secs(60)
        ],
        "slow pair runs on interval boundaries only"
    );
    // The quick pair keeps its own schedule: first at once, then every 10s.
    assert_eq!(quick.len(), 7, "quick pair ran every interval: {quick:?}");
    assert_eq!(quick[0], Duration::ZERO);
    assert_eq!(quick[6], Duration::from_secs(60));
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_a_hung_cycle() {
    let rec = Recorder::new();
    let ts = targets(1, "10s");
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    scheduler::spawn(
        &ts,
        deps(rec.cycle(|_| Duration::from_secs(3600)), 10),
        &tracker,
        cancel.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    cancel.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_millis(10), tracker.wait())
        .await
        .expect("tasks stop promptly on cancel");
}

/// Keeps every report it is given.
#[derive(Default)]
struct Kept(Mutex<Vec<String>>);

impl scheduler::CycleRecorder for Kept {
    fn record(&self, report: CycleReport) {
        self.0.lock().unwrap().push(report.target.name.clone());
    }
}

#[tokio::test(start_paused = true)]
async fn a_cycle_finishing_as_its_generation_is_cancelled_records_nothing() {
    // The reload's cancellation lands while the cycle completes: the cycle itself fires the
    // token and returns its report in the same poll, the race a reload can hit for real.
    let cancel = CancellationToken::new();
    let fire = cancel.clone();
    let run: CycleFn = Arc::new(move |target: Arc<Target>, family: Family, _env| {
        let fire = fire.clone();
        Box::pin(async move {
            fire.cancel();
            CycleReport {
                target,
                family,
                checks: vec![],
                expectation_met: None,
                expectation_violation: None,
                ipv6_path: None,
                finished_at: SystemTime::now(),
                debug: vec![],
            }
        })
    });
    let kept = Arc::new(Kept::default());
    let mut d = deps(run, 4);
    d.results = Arc::clone(&kept) as Arc<dyn scheduler::CycleRecorder>;
    let tracker = TaskTracker::new();
    scheduler::spawn(&targets(3, "10s"), d, &tracker, cancel);
    tracker.close();
    tokio::time::timeout(Duration::from_secs(30), tracker.wait())
        .await
        .expect("tasks stop");
    assert!(
        kept.0.lock().unwrap().is_empty(),
        "recorded after cancellation: {:?}",
        kept.0.lock().unwrap()
    );
}
