//! CloudWatch Embedded Metric Format output (`--emf`): each finished cycle becomes JSON lines on
//! stdout that the awslogs driver ships and CloudWatch turns into metrics. An EMF document holds
//! one value per dimension, so a cycle writes one line per check (dimensions target, family,
//! check) and one for the expectation (dimensions target, family; and task_family, family, so
//! one alarm covers every target). Besides cycles: a `Heartbeat` every 60 s (an alarm on its
//! absence per task finds a dead prober) and a `DiscoverySuccess`/`DiscoveryEndpoints` line
//! after every discovery attempt. The CloudWatch alarms in `cloudformation/` use these names.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::discovery::health::DiscoveryStatus;
use crate::model::outcome::CycleReport;
use crate::report::metrics::BuildLabels;
use crate::report::results::ReportSink;

/// How often the heartbeat line is written.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(60);

/// Who writes: the task identity the heartbeat, expectation and discovery lines carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmfTask {
    /// The task definition family; `dualprobe` without task metadata.
    pub task_family: String,
    /// The task ID; `local` without task metadata.
    pub task: String,
    /// The availability zone; empty without task metadata.
    pub availability_zone: String,
}

impl EmfTask {
    /// From the labels of `dualprobe_build_info` (which come from task metadata).
    pub fn from_build_labels(b: &BuildLabels) -> EmfTask {
        let or = |v: &str, d: &str| (if v.is_empty() { d } else { v }).to_string();
        EmfTask {
            task_family: or(&b.task_family, "dualprobe"),
            task: or(&b.task, "local"),
            availability_zone: b.availability_zone.clone(),
        }
    }
}

impl Default for EmfTask {
    fn default() -> Self {
        EmfTask::from_build_labels(&BuildLabels::default())
    }
}

/// Writes EMF lines to a writer (stdout in production).
pub struct EmfSink {
    namespace: String,
    task: EmfTask,
    /// Lines go to a writer thread through this bounded queue: a stdout pipe that stops
    /// draining (awslogs blocked on CloudWatch Logs) must never stall the checks or the health
    /// check, so when the queue is full a batch is dropped and counted instead.
    queue: std::sync::mpsc::SyncSender<Item>,
    /// `dualprobe_emf_dropped_total`: batches dropped because the queue was full.
    dropped: prometheus_client::metrics::counter::Counter,
}

/// What the writer thread is sent.
enum Item {
    /// Lines to write in one `write_all`.
    Batch(Vec<u8>),
    /// Answer once everything queued before it is written (shutdown).
    Flush(std::sync::mpsc::Sender<()>),
}

/// Batches (one cycle's lines, a heartbeat) the writer thread may fall behind by.
const QUEUE: usize = 4096;

impl EmfSink {
    /// EMF to stdout under `namespace`.
    pub fn stdout(namespace: &str, task: EmfTask) -> EmfSink {
        EmfSink::new(namespace, task, Box::new(std::io::stdout()))
    }

    /// EMF to any writer (tests), written by a thread of its own.
    pub fn new(namespace: &str, task: EmfTask, mut out: Box<dyn Write + Send>) -> EmfSink {
        let (queue, lines) = std::sync::mpsc::sync_channel::<Item>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("emf-writer".into())
            .spawn(move || {
                for item in lines {
                    match item {
                        // One write per batch keeps a cycle's lines together; a closed stdout
                        // is not fatal.
                        Item::Batch(batch) => {
                            let _ = out.write_all(&batch).and_then(|_| out.flush());
                        }
                        Item::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the EMF writer; EMF lines are dropped");
        }
        EmfSink {
            namespace: namespace.to_string(),
            task,
            queue,
            dropped: Default::default(),
        }
    }

    /// The counter of dropped batches, to register as `dualprobe_emf_dropped`.
    pub fn dropped(&self) -> prometheus_client::metrics::counter::Counter {
        self.dropped.clone()
    }

    fn write(&self, docs: &[serde_json::Value]) {
        let mut buf = Vec::with_capacity(512);
        for d in docs {
            // Serializing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut buf, d);
            buf.push(b'\n');
        }
        if let Err(std::sync::mpsc::TrySendError::Full(_)) = self.queue.try_send(Item::Batch(buf)) {
            self.dropped.inc();
        }
    }

    /// Waits, at most `within`, until every line queued so far is written: the last cycles'
    /// lines before the process exits. Blocking; false when stdout did not drain in time.
    pub fn flush(&self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        let (done, written) = std::sync::mpsc::channel();
        let mut item = Item::Flush(done);
        loop {
            match self.queue.try_send(item) {
                Ok(()) => break,
                Err(std::sync::mpsc::TrySendError::Full(back)) => {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    item = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
            }
        }
        written
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }

    /// Writes one heartbeat line.
    pub fn heartbeat(&self) {
        self.write(&[heartbeat_document(
            &self.namespace,
            &self.task,
            SystemTime::now(),
        )]);
    }

    /// Writes the line of one discovery attempt.
    pub fn discovery(&self, status: &DiscoveryStatus) {
        self.write(&[discovery_document(&self.namespace, &self.task, status)]);
    }

    /// Writes a heartbeat now and every `period` until `cancel` fires.
    pub fn spawn_heartbeat(
        self: &Arc<Self>,
        period: Duration,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) {
        let sink = Arc::clone(self);
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => sink.heartbeat(),
                }
            }
        });
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The heartbeat line: `Heartbeat` = 1 by [task_family] and [task_family, task].
pub fn heartbeat_document(namespace: &str, task: &EmfTask, at: SystemTime) -> serde_json::Value {
    json!({
        "_aws": {
            "Timestamp": millis(at),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["task_family"], ["task_family", "task"]],
                "Metrics": [{"Name": "Heartbeat", "Unit": "Count"}]
            }]
        },
        "task_family": task.task_family,
        "task": task.task,
        "availability_zone": task.availability_zone,
        "Heartbeat": 1,
    })
}

/// The line of one discovery attempt: `DiscoverySuccess` (0/1) and, on success,
/// `DiscoveryEndpoints`, by [task_family, source].
pub fn discovery_document(
    namespace: &str,
    task: &EmfTask,
    status: &DiscoveryStatus,
) -> serde_json::Value {
    let ok = status.succeeded();
    let mut metrics = vec![json!({"Name": "DiscoverySuccess", "Unit": "Count"})];
    if ok {
        metrics.push(json!({"Name": "DiscoveryEndpoints", "Unit": "Count"}));
    }
    let mut doc = json!({
        "_aws": {
            "Timestamp": millis(status.last_attempt),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["task_family", "source"]],
                "Metrics": metrics
            }]
        },
        "task_family": task.task_family,
        "task": task.task,
        "source": status.source.as_str(),
        "DiscoverySuccess": u8::from(ok),
    });
    if ok {
        doc["DiscoveryEndpoints"] = json!(status.endpoints.unwrap_or(0));
    } else if let Some(e) = &status.error {
        doc["error"] = json!(e);
    }
    doc
}

/// The EMF lines of one cycle.
pub fn documents(namespace: &str, task: &EmfTask, report: &CycleReport) -> Vec<serde_json::Value> {
    let ts = millis(report.finished_at);
    let target = &report.target.name;
    let family = report.family.as_str();
    let mut docs = Vec::with_capacity(report.checks.len() + 1);
    for o in &report.checks {
        docs.push(json!({
            "_aws": {
                "Timestamp": ts,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [["target", "family", "check"]],
                    "Metrics": [
                        {"Name": "ProbeSuccess", "Unit": "Count"},
                        {"Name": "ProbeDuration", "Unit": "Milliseconds"}
                    ]
                }]
            },
            "target": target,
            "family": family,
            "check": o.check.name(),
            "result": o.result_label(),
            "ProbeSuccess": u8::from(o.passed()),
            "ProbeDuration": o.duration.as_secs_f64() * 1000.0,
        }));
    }
    if let Some(met) = report.expectation_met {
        let mut doc = json!({
            "_aws": {
                "Timestamp": ts,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [["target", "family"], ["task_family", "family"]],
                    "Metrics": [{"Name": "ExpectationMet", "Unit": "Count"}]
                }]
            },
            "target": target,
            "family": family,
            "task_family": task.task_family,
            "expect": report.target.expect.for_family(report.family).as_str(),
            "ExpectationMet": u8::from(met),
        });
        // Properties, not dimensions: searchable in Logs Insights, no new metric per path.
        if let Some(p) = &report.ipv6_path {
            doc["via"] = json!(p.via.as_str());
            doc["ipv6_address"] = json!(p.address);
        }
        if let Some(v) = &report.expectation_violation {
            doc["violation"] = json!(v.reason);
        }
        docs.push(doc);
    }
    docs
}

impl ReportSink for EmfSink {
    fn report(&self, report: &CycleReport) {
        self.write(&documents(&self.namespace, &self.task, report));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stdout nobody drains: every write blocks for good.
    struct Stuck(std::sync::mpsc::Receiver<()>);

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv(); // never answered
            Ok(0)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_stdout_drops_and_counts_instead_of_blocking() {
        let (_keep, rx) = std::sync::mpsc::channel();
        let sink = Arc::new(EmfSink::new("dp", EmfTask::default(), Box::new(Stuck(rx))));
        let writer = Arc::clone(&sink);
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..(QUEUE + 100) {
                writer.heartbeat();
            }
            let _ = done.send(());
        });
        // The checks' side must never wait on stdout.
        finished
            .recv_timeout(Duration::from_secs(5))
            .expect("writing EMF blocked on a stdout that does not drain");
        // The writer thread holds one batch, the queue QUEUE; the rest are dropped.
        assert!(sink.dropped().get() >= 99, "{}", sink.dropped().get());
        // At exit, a stdout that never drains costs the bounded wait, not a hang.
        let started = std::time::Instant::now();
        assert!(!sink.flush(Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// A slow stdout: every batch takes 2 ms to write.
    struct Slow(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_millis(2));
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the last cycles queued before SIGTERM is written before the process exits.
    #[test]
    fn flush_waits_for_every_queued_line() {
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = EmfSink::new("dp", EmfTask::default(), Box::new(Slow(Arc::clone(&out))));
        for _ in 0..200 {
            sink.heartbeat();
        }
        assert!(sink.flush(Duration::from_secs(10)));
        let lines = out.lock().unwrap().iter().filter(|b| **b == b'\n').count();
        assert_eq!(lines, 200);
        assert_eq!(sink.dropped().get(), 0);
    }
}
