//! The `metrics:` section: what `/metrics` writes beyond what the targets decide, today the
//! bucket bounds of `dualprobe_probe_duration_seconds`.

use serde_saphyr::Spanned;

use super::problems::{Problems, line_of};
use super::raw::RawMetrics;

/// The most bounds `metrics.duration_buckets` may list: every bound is one more line per
/// (target, check, family), nine in ten lines of `/metrics` are bucket lines already.
pub const MAX_DURATION_BUCKETS: usize = 32;

/// `metrics:`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSettings {
    /// The duration histograms' upper bounds in seconds, increasing (`+Inf` is always added);
    /// `None`: the default 100 µs … 10 s set.
    pub duration_buckets: Option<Vec<f64>>,
}

pub(super) fn build_metrics_settings(
    p: &mut Problems,
    raw: Option<&RawMetrics>,
) -> MetricsSettings {
    let Some(buckets) = raw.and_then(|r| r.duration_buckets.as_ref()) else {
        return MetricsSettings::default();
    };
    let field = "metrics.duration_buckets";
    if buckets.value.is_empty() {
        p.add(
            line_of(buckets),
            field,
            "lists no bound; give at least one (seconds), or leave it out for the default buckets",
        );
        return MetricsSettings::default();
    }
    if buckets.value.len() > MAX_DURATION_BUCKETS {
        p.add(
            line_of(buckets),
            field,
            format!(
                "lists {} bounds, more than the {MAX_DURATION_BUCKETS} allowed",
                buckets.value.len()
            ),
        );
        return MetricsSettings::default();
    }
    let before = p.0.len();
    let mut previous: Option<&Spanned<f64>> = None;
    for (i, b) in buckets.value.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if !b.value.is_finite() || b.value <= 0.0 {
            p.add(
                line_of(b),
                at,
                format!("`{}` is not a positive, finite number of seconds", b.value),
            );
            continue;
        }
        if let Some(prev) = previous
            && b.value <= prev.value
        {
            p.add(
                line_of(b),
                at,
                format!(
                    "`{}` is not above the bound before it (`{}`); bounds must increase",
                    b.value, prev.value
                ),
            );
        }
        previous = Some(b);
    }
    if p.0.len() > before {
        return MetricsSettings::default();
    }
    MetricsSettings {
        duration_buckets: Some(buckets.value.iter().map(|b| b.value).collect()),
    }
}
