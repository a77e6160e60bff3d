//! The Prometheus text exposition pieces shared by `/metrics` and `/probe`: the two formats,
//! the duration buckets, and the sample-line writer with its label escaping. One writer, so both
//! endpoints spell values, escapes and bucket bounds the same way (and as prometheus-client does).

/// Histogram buckets for check durations: 100µs to 10s.
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

/// The `le="…"` labels, `+Inf` last, the bounds spelled as the client crate spells them: Rust's shortest
/// float (`1.0`) in OpenMetrics, Go's `%g` (`1`) in the classic format. Within [1e-4, 1e6),
/// where every bound lies, Go's `%g` is Rust's `Display` with whole numbers as integers.
pub fn bucket_bounds(format: Format) -> Vec<String> {
    DURATION_BUCKETS
        .iter()
        .map(|&le| match format {
            Format::OpenMetrics => dtoa::Buffer::new().format(le).to_string(),
            Format::PrometheusText if le.fract() == 0.0 => format!("{}", le as i64),
            Format::PrometheusText => format!("{le}"),
        })
        .chain(std::iter::once("+Inf".to_string()))
        .map(|le| format!("le=\"{le}\""))
        .collect()
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
