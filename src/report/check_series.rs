//! Every series of `/metrics` that scales with the targets, in one table keyed by target name:
//! the per-(target, check, family) families `dualprobe_probe_success`,
//! `dualprobe_probe_duration_seconds`, `dualprobe_last_success_timestamp_seconds` and
//! `dualprobe_probes_total`, and the per-target gauges `metrics` declares
//! (`dualprobe_expectation_met`, `dualprobe_target_info`, the checks' measurements, …). They are
//! all but a few dozen lines of `/metrics`, so they are kept here and written straight to text
//! (`series_encode`), each series' labels escaped once, when it is created, and in bounded
//! chunks, a batch of targets at a time, so a scrape never holds the whole body. The output is
//! the same, byte for byte, as the client crate's encoder would write for these families (tests
//! hold the two together); the metrics that do not scale with targets stay in its registry.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use crate::model::failure::FailureReason;
use crate::model::family::Family;
use crate::model::outcome::Outcome;
use crate::report::prom_text::{DURATION_BUCKETS, Format, bucket_bounds, escape_label_value};

pub use crate::report::series_encode::Cursor;

/// The values of the `result` label, `ok` first, as [`Outcome::result_label`] names them.
pub(crate) static RESULTS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
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

/// A duration histogram's bucket bounds, with their `le` labels in both formats, built once.
#[derive(Debug)]
pub(crate) struct Layout {
    bounds: Box<[f64]>,
    le_openmetrics: Box<[String]>,
    le_text: Box<[String]>,
}

impl Layout {
    fn new(bounds: &[f64]) -> Layout {
        Layout {
            bounds: bounds.into(),
            le_openmetrics: bucket_bounds(bounds, Format::OpenMetrics).into(),
            le_text: bucket_bounds(bounds, Format::PrometheusText).into(),
        }
    }

    /// The `le="…"` labels in `format`, `+Inf` last.
    pub(crate) fn les(&self, format: Format) -> &[String] {
        match format {
            Format::OpenMetrics => &self.le_openmetrics,
            Format::PrometheusText => &self.le_text,
        }
    }
}

static DEFAULT_LAYOUT: LazyLock<Arc<Layout>> =
    LazyLock::new(|| Arc::new(Layout::new(&DURATION_BUCKETS)));

/// The values of one series, behind one lock.
#[derive(Debug)]
pub(crate) struct SeriesValues {
    /// The last run passed.
    pub(crate) success: bool,
    /// The bounds `buckets` counts under (a changed bucket set starts the histogram afresh).
    pub(crate) layout: Arc<Layout>,
    /// Observations per duration bucket (not cumulative); the last slot is `+Inf`.
    pub(crate) buckets: Box<[u64]>,
    /// Number of durations observed; skipped runs are not observed.
    pub(crate) count: u64,
    /// Sum of the durations observed, in seconds.
    pub(crate) sum: f64,
    /// Unix time of the last pass.
    pub(crate) last_success: Option<f64>,
    /// Runs per `result` label value, by [`result_index`].
    pub(crate) results: [u64; RESULT_COUNT],
}

impl SeriesValues {
    fn new(layout: Arc<Layout>) -> SeriesValues {
        SeriesValues {
            success: false,
            buckets: vec![0; layout.bounds.len() + 1].into(),
            layout,
            count: 0,
            sum: 0.0,
            last_success: None,
            results: [0; RESULT_COUNT],
        }
    }
}

/// One (target, check, family).
#[derive(Debug)]
pub(crate) struct Series {
    /// `target="…",check="…",family="…"`, escaped.
    pub(crate) labels: String,
    pub(crate) values: Mutex<SeriesValues>,
}

/// A gauge family of the table: its name and HELP text (without the final period, which is
/// added as the client crate adds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaugeFamily {
    /// Full metric name, e.g. `dualprobe_expectation_met`.
    pub name: &'static str,
    /// HELP text.
    pub help: &'static str,
}

/// A gauge's value: the client crate writes integer and float gauges differently.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GaugeValue {
    /// An `i64` gauge.
    Int(i64),
    /// An `f64` gauge.
    Float(f64),
}

/// A target's gauges: (family index, key within the family) → (the labels after `target`,
/// escaped; the value). The key orders a target's series within a family (ipv4 before ipv6).
pub(crate) type GaugeMap = BTreeMap<(u16, u8), (Cow<'static, str>, GaugeValue)>;

/// A target's gauge series.
#[derive(Debug)]
pub(crate) struct GaugeRow {
    /// `target="…"`, escaped.
    pub(crate) target: String,
    pub(crate) values: Mutex<GaugeMap>,
}

/// Everything of one target.
#[derive(Debug, Default)]
pub(crate) struct TargetEntry {
    /// (check, family) → series.
    pub(crate) checks: BTreeMap<(&'static str, Family), Arc<Series>>,
    pub(crate) gauges: Option<GaugeRow>,
}

impl TargetEntry {
    fn is_empty(&self) -> bool {
        self.checks.is_empty()
            && self
                .gauges
                .as_ref()
                .is_none_or(|g| g.values.lock().expect("gauge lock").is_empty())
    }
}

/// The table behind [`CheckSeries`].
#[derive(Debug)]
pub(crate) struct Table {
    /// By target name, so that the output is sorted, a chunk can resume after the last target
    /// it wrote, and a lookup by `&str` needs no allocation.
    pub(crate) by_target: RwLock<BTreeMap<String, TargetEntry>>,
    /// The bucket bounds new observations are counted under.
    layout: RwLock<Arc<Layout>>,
    /// The gauge families, in output order (a gauge's family index is its place here).
    pub(crate) gauges: Vec<GaugeFamily>,
}

/// Every per-target series (see the module doc). Clones share the table.
#[derive(Debug, Clone)]
pub struct CheckSeries {
    pub(crate) table: Arc<Table>,
}

impl Default for CheckSeries {
    /// The four per-check families only, with the default buckets.
    fn default() -> CheckSeries {
        CheckSeries::with_gauges(Vec::new())
    }
}

impl CheckSeries {
    /// A table that also holds the gauge families `gauges`, written after the per-check ones,
    /// in this order.
    pub fn with_gauges(gauges: Vec<GaugeFamily>) -> CheckSeries {
        CheckSeries {
            table: Arc::new(Table {
                by_target: RwLock::default(),
                layout: RwLock::new(Arc::clone(&DEFAULT_LAYOUT)),
                gauges,
            }),
        }
    }

    /// Sets the duration buckets (`None`: the default ones). A series keeps its old buckets
    /// until its next observation, which starts its histogram afresh under the new ones (a
    /// reset, as after a restart); unchanged bounds change nothing.
    pub fn set_duration_buckets(&self, bounds: Option<&[f64]>) {
        let bounds = bounds.unwrap_or(&DURATION_BUCKETS);
        let mut layout = self.table.layout.write().expect("layout lock");
        if *layout.bounds != *bounds {
            *layout = if *bounds == DURATION_BUCKETS {
                Arc::clone(&DEFAULT_LAYOUT)
            } else {
                Arc::new(Layout::new(bounds))
            };
        }
    }

    /// Records one check's outcome at unix time `now`.
    pub fn record(&self, target: &str, family: Family, outcome: &Outcome, now: f64) {
        let series = self.series(target, outcome.check.name(), family);
        let mut v = series.values.lock().expect("series lock");
        v.success = outcome.passed();
        if !matches!(&outcome.result, Err(f) if f.reason == FailureReason::Skipped) {
            {
                let layout = self.table.layout.read().expect("layout lock");
                if !Arc::ptr_eq(&v.layout, &layout) {
                    v.buckets = vec![0; layout.bounds.len() + 1].into();
                    v.layout = Arc::clone(&layout);
                    v.count = 0;
                    v.sum = 0.0;
                }
            }
            let secs = outcome.duration.as_secs_f64();
            let bounds = &v.layout.bounds;
            let bucket = bounds
                .iter()
                .position(|&le| secs <= le)
                .unwrap_or(bounds.len());
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
            .table
            .by_target
            .read()
            .expect("series table lock")
            .get(target)
            .and_then(|t| t.checks.get(&(check, family)))
        {
            return Arc::clone(s);
        }
        let layout = Arc::clone(&self.table.layout.read().expect("layout lock"));
        let mut table = self.table.by_target.write().expect("series table lock");
        let entry = table.entry(target.to_string()).or_default();
        Arc::clone(entry.checks.entry((check, family)).or_insert_with(|| {
            let mut labels = String::from("target=\"");
            escape_label_value(&mut labels, target);
            let _ = write!(
                labels,
                "\",check=\"{check}\",family=\"{}\"",
                family.as_str()
            );
            Arc::new(Series {
                labels,
                values: Mutex::new(SeriesValues::new(layout)),
            })
        }))
    }

    /// Removes the series of one (target, check, family).
    pub fn remove(&self, target: &str, check: &'static str, family: Family) {
        let mut table = self.table.by_target.write().expect("series table lock");
        if let Some(entry) = table.get_mut(target) {
            entry.checks.remove(&(check, family));
            if entry.is_empty() {
                table.remove(target);
            }
        }
    }

    /// Sets gauge `family` (an index into the families given to [`CheckSeries::with_gauges`])
    /// of `target` under `key` to `value`; `labels` (the labels after `target`, escaped) is
    /// asked for only when the series is new.
    pub fn set_gauge(
        &self,
        target: &str,
        family: u16,
        key: u8,
        labels: impl FnOnce() -> Cow<'static, str>,
        value: GaugeValue,
    ) {
        debug_assert!(usize::from(family) < self.table.gauges.len());
        {
            let table = self.table.by_target.read().expect("series table lock");
            if let Some(row) = table.get(target).and_then(|e| e.gauges.as_ref()) {
                let mut values = row.values.lock().expect("gauge lock");
                match values.get_mut(&(family, key)) {
                    Some(slot) => slot.1 = value,
                    None => {
                        values.insert((family, key), (labels(), value));
                    }
                }
                return;
            }
        }
        let mut table = self.table.by_target.write().expect("series table lock");
        let entry = table.entry(target.to_string()).or_default();
        let row = entry.gauges.get_or_insert_with(|| {
            let mut label = String::from("target=\"");
            escape_label_value(&mut label, target);
            label.push('"');
            GaugeRow {
                target: label,
                values: Mutex::default(),
            }
        });
        let mut values = row.values.lock().expect("gauge lock");
        values
            .entry((family, key))
            .and_modify(|slot| slot.1 = value)
            .or_insert_with(|| (labels(), value));
    }

    /// Removes gauge `family` of `target` under `key`.
    pub fn remove_gauge(&self, target: &str, family: u16, key: u8) {
        let present = {
            let table = self.table.by_target.read().expect("series table lock");
            table
                .get(target)
                .and_then(|e| e.gauges.as_ref())
                .is_some_and(|row| {
                    row.values
                        .lock()
                        .expect("gauge lock")
                        .contains_key(&(family, key))
                })
        };
        if !present {
            return;
        }
        let mut table = self.table.by_target.write().expect("series table lock");
        if let Some(entry) = table.get_mut(target) {
            if let Some(row) = &entry.gauges {
                row.values
                    .lock()
                    .expect("gauge lock")
                    .remove(&(family, key));
            }
            if entry.is_empty() {
                table.remove(target);
            }
        }
    }

    /// Removes every series of gauge `family`.
    pub fn clear_gauges(&self, family: u16) {
        let mut table = self.table.by_target.write().expect("series table lock");
        table.retain(|_, entry| {
            if let Some(row) = &entry.gauges {
                row.values
                    .lock()
                    .expect("gauge lock")
                    .retain(|(f, _), _| *f != family);
            }
            !entry.is_empty()
        });
    }

    /// Number of per-check series (for tests and sizing).
    pub fn len(&self) -> usize {
        let table = self.table.by_target.read().expect("series table lock");
        table.values().map(|e| e.checks.len()).sum()
    }

    /// True when there are no per-check series.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends every family to `out` in `format`: the four per-check ones, then the gauges.
    /// Families without samples are left out, as the client crate does.
    pub fn encode(&self, out: &mut String, format: Format) {
        let mut cursor = Cursor::default();
        while !self.encode_some(&mut cursor, out, format, usize::MAX) {}
    }
}
