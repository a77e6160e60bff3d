//! Writes the [`CheckSeries`] table as text, a bounded piece at a time: a [`Cursor`] says which
//! family and which target the last piece stopped after, and the next piece seeks there in the
//! sorted table, so a scrape holds a few dozen KiB however many targets there are. Each piece
//! reads the live table under its read lock (held for one piece only, never across an await):
//! a family's HELP and TYPE come once, just before its first sample, families stay contiguous
//! and each series appears at most once per family; a target added or removed while a scrape is
//! under way may be in some of its families and not others, as between two scrapes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Bound;
use std::sync::LazyLock;

use crate::model::family::Family;
use crate::report::check_series::{
    CheckSeries, GaugeFamily, GaugeValue, RESULTS, Series, SeriesValues, TargetEntry,
};
use crate::report::prom_text::{Format, float_value, sample};

/// The per-check families, in output order (the gauge families follow).
const CHECK_FAMILIES: usize = 4;

/// A family's name, HELP text (with its final period) and TYPE.
struct Header<'a> {
    name: &'a str,
    help: &'a str,
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
const DURATION_SUM: &str = "dualprobe_probe_duration_seconds_sum";
const DURATION_COUNT: &str = "dualprobe_probe_duration_seconds_count";
const DURATION_BUCKET: &str = "dualprobe_probe_duration_seconds_bucket";
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
const PROBES_TOTAL: &str = "dualprobe_probes_total";

/// `result="…"` for every value of the `result` label, in [`RESULTS`] order.
static RESULT_LABELS: LazyLock<Vec<String>> =
    LazyLock::new(|| RESULTS.iter().map(|r| format!("result=\"{r}\"")).collect());

/// Where an encoding of the table stands between two pieces.
#[derive(Debug, Default)]
pub struct Cursor {
    /// The family being written: the per-check ones, then the gauge families.
    family: usize,
    /// The last target written in it, and within that target the last per-check series
    /// (`None`: the whole target). `None`: the family has not started.
    after: Option<(String, Option<(&'static str, Family)>)>,
    /// The family's HELP and TYPE lines are out.
    header_written: bool,
}

impl CheckSeries {
    /// Appends the next piece of the encoding in `format` to `out`, stopping after the first
    /// series that takes `out` to `limit` bytes or more. True when the encoding is complete.
    pub fn encode_some(
        &self,
        cursor: &mut Cursor,
        out: &mut String,
        format: Format,
        limit: usize,
    ) -> bool {
        let table = self.table.by_target.read().expect("series table lock");
        let gauges = &self.table.gauges;
        let mut w = Writer {
            format,
            int: itoa::Buffer::new(),
            float: dtoa::Buffer::new(),
        };
        while cursor.family < CHECK_FAMILIES + gauges.len() {
            let gauge = cursor
                .family
                .checked_sub(CHECK_FAMILIES)
                .map(|g| &gauges[g]);
            let header_at = out.len();
            if !cursor.header_written {
                write_header(out, format, &header(cursor.family, gauge));
            }
            let samples_at = out.len();
            let stopped = match gauge {
                None => w.checks(&table, cursor, out, limit),
                Some(family) => {
                    let g = u16::try_from(cursor.family - CHECK_FAMILIES).expect("few families");
                    w.gauges(&table, (g, family.name), cursor, out, limit)
                }
            };
            if !cursor.header_written {
                if out.len() == samples_at {
                    out.truncate(header_at);
                } else {
                    cursor.header_written = true;
                }
            }
            if stopped {
                return false;
            }
            *cursor = Cursor {
                family: cursor.family + 1,
                ..Cursor::default()
            };
        }
        true
    }
}

fn header(family: usize, gauge: Option<&GaugeFamily>) -> Header<'_> {
    match (family, gauge) {
        (_, Some(g)) => Header {
            name: g.name,
            help: g.help,
            kind: "gauge",
        },
        (0, None) => SUCCESS,
        (1, None) => DURATION,
        (2, None) => LAST_SUCCESS,
        _ => PROBES,
    }
}

/// HELP and TYPE. Counters are named with `_total` in the classic format's headers, without
/// it in OpenMetrics'; a gauge family's HELP gets the period the client crate adds.
fn write_header(out: &mut String, format: Format, h: &Header) {
    debug_assert!(
        !h.help.contains(['\\', '\n']),
        "HELP texts need no escaping"
    );
    let suffix = if h.kind == "counter" && format == Format::PrometheusText {
        "_total"
    } else {
        ""
    };
    let period = if h.help.ends_with('.') { "" } else { "." };
    let (name, help, kind) = (h.name, h.help, h.kind);
    let _ = write!(
        out,
        "# HELP {name}{suffix} {help}{period}\n# TYPE {name}{suffix} {kind}\n"
    );
}

/// The targets after the cursor's, its own included when it stopped inside it.
fn start(cursor: &Cursor) -> (Bound<&str>, Bound<&str>) {
    let from = match &cursor.after {
        None => Bound::Unbounded,
        Some((t, None)) => Bound::Excluded(t.as_str()),
        Some((t, Some(_))) => Bound::Included(t.as_str()),
    };
    (from, Bound::Unbounded)
}

/// Number formatting buffers and the format.
struct Writer {
    format: Format,
    int: itoa::Buffer,
    float: dtoa::Buffer,
}

impl Writer {
    /// Writes per-check family `cursor.family` from the cursor on; true when it stopped at
    /// `limit` (the cursor then says after which series).
    fn checks(
        &mut self,
        table: &BTreeMap<String, TargetEntry>,
        cursor: &mut Cursor,
        out: &mut String,
        limit: usize,
    ) -> bool {
        for (name, entry) in table.range::<str, _>(start(cursor)) {
            let from = match &cursor.after {
                Some((t, Some(key))) if t == name => Bound::Excluded(*key),
                _ => Bound::Unbounded,
            };
            for (key, s) in entry.checks.range((from, Bound::Unbounded)) {
                let v = s.values.lock().expect("series lock");
                self.series(out, cursor.family, s, &v);
                drop(v);
                if out.len() >= limit {
                    cursor.after = Some((name.clone(), Some(*key)));
                    return true;
                }
            }
        }
        false
    }

    /// One series' samples in per-check family `family`.
    fn series(&mut self, out: &mut String, family: usize, s: &Series, v: &SeriesValues) {
        let labels = s.labels.as_str();
        match family {
            0 => sample(
                out,
                SUCCESS.name,
                &[labels],
                self.int.format(u8::from(v.success)),
            ),
            1 => self.histogram(out, labels, v),
            2 => {
                if let Some(t) = v.last_success {
                    sample(out, LAST_SUCCESS.name, &[labels], self.float.format(t));
                }
            }
            _ => {
                for (result, &n) in RESULT_LABELS.iter().zip(&v.results) {
                    if n > 0 {
                        sample(out, PROBES_TOTAL, &[labels, result], self.int.format(n));
                    }
                }
            }
        }
    }

    /// The client crate's order: OpenMetrics puts sum and count first and `le` first among
    /// the labels, the classic format the other way round.
    fn histogram(&mut self, out: &mut String, labels: &str, v: &SeriesValues) {
        if v.count == 0 {
            return;
        }
        let om = self.format == Format::OpenMetrics;
        if om {
            sample(out, DURATION_SUM, &[labels], self.float.format(v.sum));
            sample(out, DURATION_COUNT, &[labels], self.int.format(v.count));
        }
        let mut cumulative = 0;
        for (le, n) in v.layout.les(self.format).iter().zip(v.buckets.iter()) {
            cumulative += n;
            let le = le.as_str();
            let pair = if om { [le, labels] } else { [labels, le] };
            sample(out, DURATION_BUCKET, &pair, self.int.format(cumulative));
        }
        if !om {
            sample(out, DURATION_SUM, &[labels], self.float.format(v.sum));
            sample(out, DURATION_COUNT, &[labels], self.int.format(v.count));
        }
    }

    /// Writes gauge family `g` (named `name`) from the cursor on; true when it stopped at
    /// `limit`. A target has a handful of gauges per family, so a piece ends between targets.
    fn gauges(
        &mut self,
        table: &BTreeMap<String, TargetEntry>,
        (g, name): (u16, &str),
        cursor: &mut Cursor,
        out: &mut String,
        limit: usize,
    ) -> bool {
        for (target, entry) in table.range::<str, _>(start(cursor)) {
            let Some(row) = &entry.gauges else { continue };
            let values = row.values.lock().expect("gauge lock");
            for (labels, value) in values.range((g, 0)..=(g, u8::MAX)).map(|(_, v)| v) {
                let value = match *value {
                    GaugeValue::Int(i) => self.int.format(i),
                    GaugeValue::Float(f) => float_value(&mut self.float, f, self.format),
                };
                if labels.is_empty() {
                    sample(out, name, &[&row.target], value);
                } else {
                    sample(out, name, &[&row.target, labels], value);
                }
            }
            drop(values);
            if out.len() >= limit {
                cursor.after = Some((target.clone(), None));
                return true;
            }
        }
        false
    }
}
