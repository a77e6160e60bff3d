//! Runs every (target, family) on its interval: one task each, first runs started at a bounded
//! rate (at once for a few pairs, never later than an even spread over the interval), each pair's
//! phase kept across generations, a global concurrency bound, missed ticks skipped (never
//! queued), and every task stopped by one cancellation token.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::checks::CheckEnv;
use crate::checks::run_cycle;
use crate::model::family::Family;
use crate::model::outcome::CycleReport;
use crate::model::target::Target;

/// Where the scheduler hands each finished cycle: the reports' `Results` in the
/// agent, anything that keeps reports in tests. The scheduler knows nothing of metrics.
pub trait CycleRecorder: Send + Sync + 'static {
    /// Takes one finished cycle.
    fn record(&self, report: CycleReport);
}

/// Tracks which (target, family) pairs have finished a first cycle; ready once all have.
#[derive(Debug)]
pub struct Readiness {
    pending: Mutex<HashSet<(String, Family)>>,
    ready: watch::Sender<bool>,
}

impl Readiness {
    /// Not ready until [`Readiness::expect`] is called and every pair has reported.
    pub fn new() -> Readiness {
        Readiness {
            pending: Mutex::new(HashSet::new()),
            ready: watch::channel(false).0,
        }
    }

    /// Sets the pairs of the first generation. Later reloads do not make the agent unready.
    pub fn expect(&self, targets: &[Arc<Target>]) {
        if *self.ready.borrow() {
            return;
        }
        let mut pending = self.pending.lock().expect("readiness lock");
        *pending = targets
            .iter()
            .flat_map(|t| t.families.iter().map(move |f| (t.name.clone(), *f)))
            .collect();
        if pending.is_empty() {
            self.ready.send_replace(true);
        }
    }

    fn done(&self, target: &str, family: Family) {
        if *self.ready.borrow() {
            return;
        }
        let mut pending = self.pending.lock().expect("readiness lock");
        pending.remove(&(target.to_string(), family));
        if pending.is_empty() {
            self.ready.send_replace(true);
        }
    }

    /// True after the first full probe cycle.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until ready.
    pub async fn wait(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

/// First runs land on multiples of this (for intervals of at least [`MIN_SLOTTED_INTERVAL`]),
/// so the pairs due in one slot share one timer wake-up instead of waking the runtime one by
/// one: timer coalescing, as the kernel's timer slack does. At 100 starts a second that is 10
/// wake-ups a second, each starting 10 pairs.
pub const START_SLOT: Duration = Duration::from_millis(100);

/// Shorter intervals are spread exactly: a slot would be a large share of them.
pub const MIN_SLOTTED_INTERVAL: Duration = Duration::from_secs(1);

/// Where the `index`th of `total` pairs waiting for a first run lands: `index / starts_per_second`
/// (so a few pairs all start at once, and many never more than the rate), but never later than
/// an even spread over its interval would put it (so a first round never takes longer than one
/// interval: when the pairs' own intervals demand more starts a second than the rate, every later
/// round will start them that fast anyway). Rounded down to a [`START_SLOT`].
pub fn first_run_offset(
    index: usize,
    total: usize,
    interval: Duration,
    starts_per_second: u32,
) -> Duration {
    let index = index as u128;
    let by_rate = index * 1_000_000_000 / u128::from(starts_per_second.max(1));
    let spread = interval.as_nanos() * index / (total.max(1) as u128);
    let at = Duration::from_nanos(u64::try_from(by_rate.min(spread)).unwrap_or(u64::MAX));
    if interval < MIN_SLOTTED_INTERVAL {
        return at;
    }
    let slots = at.as_nanos() / START_SLOT.as_nanos();
    START_SLOT * u32::try_from(slots).unwrap_or(u32::MAX)
}

/// A (target name, family).
type PairKey = (String, Family);

/// When one pair runs next, for the next generation to keep.
#[derive(Debug, Clone, Copy)]
struct Due {
    interval: Duration,
    next: Instant,
}

/// When each (target, family) runs next, shared by every generation of the agent: a reload or a
/// VPC endpoint swap that keeps a pair (same target name, family and interval) keeps its phase,
/// instead of running it again at once or re-spreading it, so a reload adds no cycles and no
/// burst. A kept pair's changed settings (host, checks, ...) apply from its next run.
#[derive(Debug, Default)]
pub struct Phases(Mutex<HashMap<PairKey, Arc<Mutex<Due>>>>);

/// The first interval boundary after `now`: a cycle that overran its interval skips the ticks
/// it missed instead of running them late, back to back.
pub fn next_boundary(previous: Instant, interval: Duration, now: Instant) -> Instant {
    let mut next = previous + interval;
    if next <= now {
        let behind = now.duration_since(next).as_nanos() / interval.as_nanos().max(1);
        next += interval * (behind as u32 + 1);
    }
    next
}

/// Runs one cycle. The agent uses [`real_cycle`]; scheduler tests substitute a timed fake.
pub type CycleFn = Arc<
    dyn Fn(Arc<Target>, Family, Arc<CheckEnv>) -> BoxFuture<'static, CycleReport> + Send + Sync,
>;

/// The production cycle: every configured check, for real.
pub fn real_cycle() -> CycleFn {
    Arc::new(|target, family, env| {
        Box::pin(async move { run_cycle(&target, family, &env, false).await })
    })
}

/// Everything the per-pair tasks share.
#[derive(Clone)]
pub struct SchedulerDeps {
    /// Probe resources of this generation.
    pub env: Arc<CheckEnv>,
    /// Where reports go.
    pub results: Arc<dyn CycleRecorder>,
    /// Global bound on cycles in flight.
    pub concurrency: Arc<Semaphore>,
    /// Most first runs started per second (`starts_per_second`).
    pub starts_per_second: u32,
    /// Each pair's next run, kept across generations.
    pub phases: Arc<Phases>,
    /// First-cycle tracking.
    pub readiness: Arc<Readiness>,
    /// What one cycle does.
    pub run: CycleFn,
}

/// Spawns one task per (target, family) onto `tracker`; all stop when `cancel` fires. A pair the
/// previous generation ran with the same interval keeps its next run; the others (new, a changed
/// interval, or overdue because the previous generation was stopped mid-cycle) start from now at
/// `starts_per_second` ([`first_run_offset`]).
pub fn spawn(
    targets: &[Arc<Target>],
    deps: SchedulerDeps,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) {
    // A generation replaced before its scheduler started (NAT64 discovery's first round) must
    // not take over the phases of the one that replaced it.
    if cancel.is_cancelled() {
        return;
    }
    // One start instant for all, so pairs in the same slot share a timer tick.
    let start = Instant::now();
    let mut phases = deps.phases.0.lock().expect("phases lock");
    let mut previous = std::mem::take(&mut *phases);
    let mut kept = Vec::new();
    let mut waiting = Vec::new();
    for target in targets {
        for &family in &target.families {
            let key = (target.name.clone(), family);
            let due = previous.remove(&key).filter(|due| {
                let d = *due.lock().expect("due lock");
                d.interval == target.interval && d.next >= start
            });
            match due {
                Some(due) => kept.push((Arc::clone(target), family, due)),
                None => waiting.push((Arc::clone(target), family)),
            }
        }
    }
    let total = waiting.len();
    let rate = deps.starts_per_second;
    let fresh = waiting
        .into_iter()
        .enumerate()
        .map(|(index, (target, family))| {
            let next = start + first_run_offset(index, total, target.interval, rate);
            let interval = target.interval;
            (target, family, Arc::new(Mutex::new(Due { interval, next })))
        });
    for (target, family, due) in kept.into_iter().chain(fresh.collect::<Vec<_>>()) {
        phases.insert((target.name.clone(), family), Arc::clone(&due));
        let deps = deps.clone();
        let cancel = cancel.clone();
        // One cancellation wait per task, for its lifetime; dropping the loop stops it at
        // whichever await it is in.
        tracker.spawn(async move {
            // Cancellation first: a cycle that finishes as its generation is replaced must not
            // record after the new generation pruned the old targets' series.
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {}
                _ = run_pair(target, family, due, deps, &cancel) => {}
            }
        });
    }
}

/// One (target, family): a cycle at every interval boundary from its first run, until dropped.
async fn run_pair(
    target: Arc<Target>,
    family: Family,
    due: Arc<Mutex<Due>>,
    deps: SchedulerDeps,
    cancel: &CancellationToken,
) {
    let mut next = due.lock().expect("due lock").next;
    loop {
        tokio::time::sleep_until(next).await;
        let Ok(permit) = deps.concurrency.acquire().await else {
            return;
        };
        let report = (deps.run)(Arc::clone(&target), family, Arc::clone(&deps.env)).await;
        drop(permit);
        // The cycle and the cancellation can complete in the same poll.
        if cancel.is_cancelled() {
            return;
        }
        deps.results.record(report);
        deps.readiness.done(&target.name, family);
        next = next_boundary(next, target.interval, Instant::now());
        let mut d = due.lock().expect("due lock");
        // Checked under the lock: the next generation reads it after cancelling this one, so a
        // stopped task never moves the phase the next one took over.
        if cancel.is_cancelled() {
            return;
        }
        d.next = next;
    }
}
