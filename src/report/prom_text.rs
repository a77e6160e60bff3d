//! The Prometheus text exposition pieces shared by `/metrics` and `/probe`: the two formats,
//! the duration buckets, and the sample-line writer with its label escaping. One writer, so both
//! endpoints spell values, escapes and bucket bounds the same way (and as prometheus-client does).

/// The default histogram buckets for check durations, 100µs to 10s (`metrics.duration_buckets`
/// replaces them).
pub const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The exposition formats `/metrics` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0, what Prometheus asks for.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4, for clients that ask for nothing else (curl,
    /// `promtool check metrics`).
    PrometheusText,
}

impl Format {
    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The `le="…"` labels of `bounds`, `+Inf` last, spelled as the client crate spells them: Rust's
/// shortest float (`1.0`) in OpenMetrics, Go's `%g` (`1`, `1e-05`) in the classic format.
pub fn bucket_bounds(bounds: &[f64], format: Format) -> Vec<String> {
    bounds
        .iter()
        .map(|&le| match format {
            Format::OpenMetrics => dtoa::Buffer::new().format(le).to_string(),
            Format::PrometheusText => go_float(le),
        })
        .chain(std::iter::once("+Inf".to_string()))
        .map(|le| format!("le=\"{le}\""))
        .collect()
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)` for a finite `v`, as the client crate writes a
/// classic-format `le`: whole numbers below 1e6 as integers, Rust's `Display` within
/// [1e-4, 1e6), exponent notation with a signed two-digit exponent outside it.
fn go_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e6 {
        return format!("{}", v as i64);
    }
    if (1e-4..1e6).contains(&v.abs()) {
        return format!("{v}");
    }
    let sci = format!("{v:e}");
    match sci.split_once('e') {
        Some((mantissa, exp)) => {
            let exp: i32 = exp.parse().unwrap_or(0);
            format!("{mantissa}e{exp:+03}")
        }
        None => sci,
    }
}

/// A float sample value as the client crate writes it: Rust's shortest float in OpenMetrics
/// (`inf`, `NaN` as `dtoa` spells them), and `+Inf`, `-Inf`, `NaN` in the classic format.
pub fn float_value(buf: &mut dtoa::Buffer, v: f64, format: Format) -> &str {
    match format {
        Format::OpenMetrics => buf.format(v),
        Format::PrometheusText if v.is_finite() => buf.format_finite(v),
        Format::PrometheusText if v.is_nan() => "NaN",
        Format::PrometheusText if v > 0.0 => "+Inf",
        Format::PrometheusText => "-Inf",
    }
}

/// One sample line: `name{labels joined by commas} value` (no braces without labels): the one
/// line writer of `/metrics`' per-check series and of `/probe`.
pub fn sample(out: &mut String, name: &str, labels: &[&str], value: &str) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, l) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(l);
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Escapes a label value as both text formats require: backslash, double quote and newline.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A label pair, its value escaped: `name="value"`.
pub fn label(name: &str, value: &str) -> String {
    let mut out = format!("{name}=\"");
    escape_label_value(&mut out, value);
    out.push('"');
    out
}
