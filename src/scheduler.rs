//! Runs every (target, family) on its interval: one task each, first runs spread across the
//! interval, a global concurrency bound, missed ticks skipped (never queued), and every task
//! stopped by one cancellation token.

use std::collections::HashSet;
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
/// one: timer coalescing, as the kernel's timer slack does. With 1,000 targets × 2 families every
/// 10 s that is 10 wake-ups a second instead of 200, while no slot holds more than 1/100 of them.
pub const START_SLOT: Duration = Duration::from_millis(100);

/// Shorter intervals are spread exactly: a slot would be a large share of them.
pub const MIN_SLOTTED_INTERVAL: Duration = Duration::from_secs(1);

/// Where a pair's first run lands: spread evenly over its interval by position, so a start or a
/// reload never fires every probe at once, and rounded down to a [`START_SLOT`].
pub fn first_run_offset(index: usize, total: usize, interval: Duration) -> Duration {
    if total <= 1 {
        return Duration::ZERO;
    }
    let spread = interval.mul_f64(index as f64 / total as f64);
    if interval < MIN_SLOTTED_INTERVAL {
        return spread;
    }
    let slots = spread.as_nanos() / START_SLOT.as_nanos();
    START_SLOT * u32::try_from(slots).unwrap_or(u32::MAX)
}

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
    /// First-cycle tracking.
    pub readiness: Arc<Readiness>,
    /// What one cycle does.
    pub run: CycleFn,
}

/// Spawns one task per (target, family) onto `tracker`; all stop when `cancel` fires.
pub fn spawn(
    targets: &[Arc<Target>],
    deps: SchedulerDeps,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) {
    let pairs: Vec<(Arc<Target>, Family)> = targets
        .iter()
        .flat_map(|t| t.families.iter().map(move |f| (Arc::clone(t), *f)))
        .collect();
    let total = pairs.len();
    // One start instant for all, so pairs in the same slot share a timer tick.
    let start = Instant::now();
    for (index, (target, family)) in pairs.into_iter().enumerate() {
        let first = start + first_run_offset(index, total, target.interval);
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
                _ = run_pair(target, family, first, deps, &cancel) => {}
            }
        });
    }
}

/// One (target, family): a cycle at every interval boundary from `first`, until dropped.
async fn run_pair(
    target: Arc<Target>,
    family: Family,
    first: Instant,
    deps: SchedulerDeps,
    cancel: &CancellationToken,
) {
    let mut next = first;
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
    }
}
