//! Scheduler behaviour under paused tokio time: first runs spread over the interval, a global
//! concurrency bound, missed ticks skipped (not queued), a hung pair never delays another, and
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
use dualprobe::scheduler::{self, CycleFn, Readiness, SchedulerDeps, first_run_offset};
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
        readiness: Arc::new(Readiness::new()),
        run,
    }
}

#[test]
fn offsets_spread_evenly_over_the_interval() {
    let i = Duration::from_secs(10);
    assert_eq!(first_run_offset(0, 1, i), Duration::ZERO);
    assert_eq!(first_run_offset(0, 4, i), Duration::ZERO);
    assert_eq!(first_run_offset(1, 4, i), Duration::from_millis(2500));
    assert_eq!(first_run_offset(3, 4, i), Duration::from_millis(7500));
}

#[test]
fn offsets_share_100ms_slots_so_due_pairs_wake_together() {
    let i = Duration::from_secs(10);
    // 10 s / 3 = 3.333 s, rounded down to its slot.
    assert_eq!(first_run_offset(1, 3, i), Duration::from_millis(3300));
    // 2,000 pairs: every slot of the interval is used, none holds more than 20.
    let mut per_slot = std::collections::BTreeMap::new();
    for index in 0..2000 {
        let offset = first_run_offset(index, 2000, i);
        assert_eq!(
            offset.as_nanos() % 100_000_000,
            0,
            "{offset:?} is on a slot"
        );
        assert!(offset < i);
        *per_slot.entry(offset).or_insert(0) += 1;
    }
    assert_eq!(per_slot.len(), 100);
    assert!(per_slot.values().all(|&n| n == 20), "{per_slot:?}");
    // Sub-second intervals are spread exactly.
    let short = Duration::from_millis(500);
    assert_eq!(first_run_offset(1, 4, short), Duration::from_millis(125));
}

#[tokio::test(start_paused = true)]
async fn first_runs_are_spread_not_a_thundering_herd() {
    let rec = Recorder::new();
    let ts = targets(4, "10s");
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let d = deps(rec.cycle(|_| Duration::from_millis(10)), 100);
    d.readiness.expect(&ts);
    scheduler::spawn(&ts, d.clone(), &tracker, cancel.clone());
    tokio::time::sleep(Duration::from_millis(9_999)).await;
    assert!(!d.readiness.is_ready() || rec.starts.lock().unwrap().len() == 4);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let firsts: Vec<Duration> = (0..4).map(|i| rec.starts_of(&format!("t{i}"))[0]).collect();
    assert_eq!(
        firsts,
        vec![
            Duration::ZERO,
            Duration::from_millis(2500),
            Duration::from_millis(5000),
            Duration::from_millis(7500)
        ]
    );
    assert!(
        d.readiness.is_ready(),
        "ready after every pair's first cycle"
    );
    cancel.cancel();
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
    // The quick pair keeps its own schedule: first at 5s (half the interval), then every 10s.
    assert_eq!(quick.len(), 6, "quick pair ran every interval: {quick:?}");
    assert_eq!(quick[0], Duration::from_secs(5));
    assert_eq!(quick[5], Duration::from_secs(55));
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
