//! The per-(target, check, family) series: `dualprobe_probe_success`,
//! `dualprobe_probe_duration_seconds`, `dualprobe_last_success_timestamp_seconds` and
//! `dualprobe_probes_total`. They are nine in ten lines of `/metrics`, so they live in one table
//! of their own and are written straight to text: each series' labels are escaped once, when it
//! is created, instead of on every line of every scrape. The output is the same, byte for byte,
//! as the client crate's encoder would write for these families (a test holds the two together);
//! every other metric stays in the client crate's registry.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use crate::model::failure::FailureReason;
use crate::model::family::Family;
use crate::model::outcome::Outcome;
use crate::report::prom_text::{
    DURATION_BUCKETS, Format, bucket_bounds, escape_label_value, sample,
};

/// The values of the `result` label, `ok` first, as [`Outcome::result_label`] names them.
static RESULTS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    std::iter::once("ok")
        .chain(FailureReason::ALL.iter().map(|r| r.as_str()))
        .collect()
});

/// How many values the `result` label has.
const RESULT_COUNT: usize = 1 + FailureReason::ALL.len();

/// `outcome`'s slot in [`RESULTS`]: 0 for `ok`, else 1 + the reason's place in
/// [`FailureReason::ALL`] (an enum comparison per reason, on every recorded check).
fn result_index(outcome: &Outcome) -> usize {
    outcome.result_reason().map_or(0, |reason| {
        1 + FailureReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("FailureReason::ALL lists every reason")
    })
}

/// The values of one series, behind one lock.
#[derive(Debug, Clone, Default)]
struct SeriesValues {
    /// The last run passed.
    success: bool,
    /// Observations per duration bucket (not cumulative); the last slot is `+Inf`.
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// Number of durations observed; skipped runs are not observed.
    count: u64,
    /// Sum of the durations observed, in seconds.
    sum: f64,
    /// Unix time of the last pass.
    last_success: Option<f64>,
    /// Runs per `result` label value, by [`result_index`].
    results: [u64; RESULT_COUNT],
}

/// One (target, check, family).
#[derive(Debug)]
struct Series {
    /// `target="…",check="…",family="…"`, escaped.
    labels: String,
    values: Mutex<SeriesValues>,
}

/// (check, family) → series, within one target.
type TargetSeries = BTreeMap<(&'static str, Family), Arc<Series>>;

/// Every per-check series, by target name, so that the output is sorted and a lookup by
/// `&str` needs no allocation.
#[derive(Debug, Clone, Default)]
pub struct CheckSeries {
    by_target: Arc<RwLock<BTreeMap<String, TargetSeries>>>,
}

/// A family's name, HELP text and TYPE.
struct Header {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
}

const SUCCESS: Header = Header {
    name: "dualprobe_probe_success",
    help: "1 if the last run of the check passed.",
    kind: "gauge",
};
const DURATION: Header = Header {
    name: "dualprobe_probe_duration_seconds",
    help: "Duration of each check run.",
    kind: "histogram",
};
const LAST_SUCCESS: Header = Header {
    name: "dualprobe_last_success_timestamp_seconds",
    help: "Unix time the check last passed.",
    kind: "gauge",
};
const PROBES: Header = Header {
    name: "dualprobe_probes",
    help: "Check runs by result (ok or a failure reason).",
    kind: "counter",
};

impl CheckSeries {
    /// Records one check's outcome at unix time `now`.
    pub fn record(&self, target: &str, family: Family, outcome: &Outcome, now: f64) {
        let series = self.series(target, outcome.check.name(), family);
        let mut v = series.values.lock().expect("series lock");
        v.success = outcome.passed();
        if !matches!(&outcome.result, Err(f) if f.reason == FailureReason::Skipped) {
            let secs = outcome.duration.as_secs_f64();
            let bucket = DURATION_BUCKETS
                .iter()
                .position(|&le| secs <= le)
                .unwrap_or(DURATION_BUCKETS.len());
            v.buckets[bucket] += 1;
            v.count += 1;
            v.sum += secs;
        }
        if outcome.passed() {
            v.last_success = Some(now);
        }
        v.results[result_index(outcome)] += 1;
    }

    fn series(&self, target: &str, check: &'static str, family: Family) -> Arc<Series> {
        if let Some(s) = self
            .by_target
            .read()
            .expect("series table lock")
            .get(target)
            .and_then(|t| t.get(&(check, family)))
        {
            return Arc::clone(s);
        }
        let mut table = self.by_target.write().expect("series table lock");
        let per_target = table.entry(target.to_string()).or_default();
        Arc::clone(per_target.entry((check, family)).or_insert_with(|| {
            let mut labels = String::from("target=\"");
            escape_label_value(&mut labels, target);
            let _ = write!(
                labels,
                "\",check=\"{check}\",family=\"{}\"",
                family.as_str()
            );
            Arc::new(Series {
                labels,
                values: Mutex::default(),
            })
        }))
    }

    /// Removes the series of one (target, check, family).
    pub fn remove(&self, target: &str, check: &'static str, family: Family) {
        let mut table = self.by_target.write().expect("series table lock");
        if let Some(per_target) = table.get_mut(target) {
            per_target.remove(&(check, family));
            if per_target.is_empty() {
                table.remove(target);
            }
        }
    }

    /// Number of series (for tests and sizing).
    pub fn len(&self) -> usize {
        let table = self.by_target.read().expect("series table lock");
        table.values().map(BTreeMap::len).sum()
    }

    /// True when there are no series.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the four families to `out` in `format`. Families without samples are left out,
    /// as the client crate does.
    pub fn encode(&self, out: &mut String, format: Format) {
        let table = self.by_target.read().expect("series table lock");
        let all: Vec<&Series> = table
            .values()
            .flat_map(|t| t.values().map(Arc::as_ref))
            .collect();
        let all = all.as_slice();
        let mut int = itoa::Buffer::new();
        let mut float = dtoa::Buffer::new();
        // Locking each series once per family is cheaper than copying every value out.
        write_family(out, format, &SUCCESS, all, |out, s, v| {
            let value = int.format(u8::from(v.success));
            sample(out, SUCCESS.name, &[&s.labels], value);
        });
        let sum = format!("{}_sum", DURATION.name);
        let count = format!("{}_count", DURATION.name);
        let bucket = format!("{}_bucket", DURATION.name);
        let bounds = bucket_bounds(format);
        write_family(out, format, &DURATION, all, |out, s, v| {
            if v.count == 0 {
                return;
            }
            // The client crate's order: OpenMetrics puts sum and count first and `le`
            // first among the labels, the classic format the other way round.
            let om = format == Format::OpenMetrics;
            if om {
                sample(out, &sum, &[&s.labels], float.format(v.sum));
                sample(out, &count, &[&s.labels], int.format(v.count));
            }
            let mut cumulative = 0;
            for (le, n) in bounds.iter().zip(v.buckets) {
                cumulative += n;
                let (le, series): (&str, &str) = (le, &s.labels);
                let labels = if om { [le, series] } else { [series, le] };
                sample(out, &bucket, &labels, int.format(cumulative));
            }
            if !om {
                sample(out, &sum, &[&s.labels], float.format(v.sum));
                sample(out, &count, &[&s.labels], int.format(v.count));
            }
        });
        write_family(out, format, &LAST_SUCCESS, all, |out, s, v| {
            if let Some(t) = v.last_success {
                sample(out, LAST_SUCCESS.name, &[&s.labels], float.format(t));
            }
        });
        let total = format!("{}_total", PROBES.name);
        let results: Vec<String> = RESULTS.iter().map(|r| format!("result=\"{r}\"")).collect();
        write_family(out, format, &PROBES, all, |out, s, v| {
            for (result, &n) in results.iter().zip(&v.results) {
                if n > 0 {
                    sample(out, &total, &[&s.labels, result], int.format(n));
                }
            }
        });
    }
}

/// Writes one family's HELP and TYPE lines and its samples; nothing when it has no samples.
fn write_family(
    out: &mut String,
    format: Format,
    &Header { name, help, kind }: &Header,
    all: &[&Series],
    mut samples: impl FnMut(&mut String, &Series, &SeriesValues),
) {
    let header_at = out.len();
    // Counters are named with `_total` in the classic format's headers, without it in
    // OpenMetrics'.
    let suffix = if kind == "counter" && format == Format::PrometheusText {
        "_total"
    } else {
        ""
    };
    let _ = write!(
        out,
        "# HELP {name}{suffix} {help}\n# TYPE {name}{suffix} {kind}\n"
    );
    let samples_at = out.len();
    for s in all {
        let v = s.values.lock().expect("series lock");
        samples(out, s, &v);
    }
    if out.len() == samples_at {
        out.truncate(header_at);
    }
}
