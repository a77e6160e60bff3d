//! CloudWatch Embedded Metric Format output (`--emf`): each finished cycle becomes JSON lines on
//! stdout that the awslogs driver ships and CloudWatch turns into metrics. An EMF document holds
//! one value per dimension, so a cycle writes one line per check (dimensions target, family,
//! check) and one for the expectation (dimensions target, family).

use std::io::Write;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use serde_json::json;

use crate::model::outcome::CycleReport;
use crate::report::results::ReportSink;

/// Writes EMF lines to a writer (stdout in production).
pub struct EmfSink {
    namespace: String,
    out: Mutex<Box<dyn Write + Send>>,
}

impl EmfSink {
    /// EMF to stdout under `namespace`.
    pub fn stdout(namespace: &str) -> EmfSink {
        EmfSink::new(namespace, Box::new(std::io::stdout()))
    }

    /// EMF to any writer (tests).
    pub fn new(namespace: &str, out: Box<dyn Write + Send>) -> EmfSink {
        EmfSink {
            namespace: namespace.to_string(),
            out: Mutex::new(out),
        }
    }
}

/// The EMF lines of one cycle.
pub fn documents(namespace: &str, report: &CycleReport) -> Vec<serde_json::Value> {
    let ts = report
        .finished_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
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
        docs.push(json!({
            "_aws": {
                "Timestamp": ts,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [["target", "family"]],
                    "Metrics": [{"Name": "ExpectationMet", "Unit": "Count"}]
                }]
            },
            "target": target,
            "family": family,
            "expect": report.target.expect.for_family(report.family).as_str(),
            "ExpectationMet": u8::from(met),
        }));
    }
    docs
}

impl ReportSink for EmfSink {
    fn report(&self, report: &CycleReport) {
        let mut buf = Vec::with_capacity(512);
        for d in documents(&self.namespace, report) {
            // Serializing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut buf, &d);
            buf.push(b'\n');
        }
        let mut out = self.out.lock().expect("emf writer lock");
        // One write per cycle keeps a cycle's lines together; a closed stdout is not fatal.
        let _ = out.write_all(&buf).and_then(|_| out.flush());
    }
}
