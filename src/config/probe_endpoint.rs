//! The `probe:` section: who may ask the ad-hoc `/probe` endpoint for what, and how much.

use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::problems::{Problems, line_of, parse_duration, resolve_path};
use super::raw::RawProbe;

/// `probe:`: who may ask `/probe` for what, and how much.
#[derive(Debug, Clone)]
pub struct ProbeEndpointSettings {
    /// Hosts and CIDRs ad-hoc targets may name (empty: only configured targets).
    pub allow: crate::net::guard::Allowlist,
    /// Bearer token `/probe` requires, read from `token_file`.
    pub token: Option<String>,
    /// Most ad-hoc probes in flight; more get 429.
    pub max_concurrent: usize,
    /// Sustained ad-hoc probes per second; more get 429.
    pub rate_per_second: u32,
    /// Burst above the rate.
    pub burst: u32,
    /// Cap on any probe's deadline.
    pub max_timeout: Duration,
    /// Subtracted from Prometheus' scrape timeout header so the answer arrives in time.
    pub timeout_offset: Duration,
}

impl Default for ProbeEndpointSettings {
    fn default() -> Self {
        ProbeEndpointSettings {
            allow: crate::net::guard::Allowlist::default(),
            token: None,
            max_concurrent: 8,
            rate_per_second: 10,
            burst: 20,
            max_timeout: Duration::from_secs(10),
            timeout_offset: Duration::from_millis(500),
        }
    }
}

pub(super) fn build_probe_settings(
    p: &mut Problems,
    raw: Option<&RawProbe>,
    base_dir: Option<&Path>,
) -> ProbeEndpointSettings {
    let mut out = ProbeEndpointSettings::default();
    let Some(raw) = raw else { return out };
    let entries: Vec<String> = raw.allow.iter().map(|e| e.value.clone()).collect();
    match crate::net::guard::Allowlist::parse(&entries) {
        Ok(a) => out.allow = a,
        Err((i, msg)) => p.add(line_of(&raw.allow[i]), format!("probe.allow[{i}]"), msg),
    }
    if let Some(tf) = &raw.token_file {
        let path = resolve_path(base_dir, &tf.value);
        match crate::files::read_text(&path, crate::files::TOKEN_MAX) {
            Ok(t) if !t.trim().is_empty() => out.token = Some(t.trim().to_string()),
            Ok(_) => p.add(
                line_of(tf),
                "probe.token_file",
                format!("{} is empty", path.display()),
            ),
            Err(e) => p.add(
                line_of(tf),
                "probe.token_file",
                e.about(&path.display().to_string()),
            ),
        }
    }
    let positive =
        |p: &mut Problems, v: &Option<Spanned<usize>>, field: &str, default: usize| match v {
            Some(s) if s.value == 0 => {
                p.add(line_of(s), field, "must be at least 1");
                default
            }
            Some(s) if s.value > super::MAX_IN_FLIGHT => {
                p.add(
                    line_of(s),
                    field,
                    format!(
                        "`{}` is more than the {} allowed",
                        s.value,
                        super::MAX_IN_FLIGHT
                    ),
                );
                default
            }
            Some(s) => s.value,
            None => default,
        };
    out.max_concurrent = positive(
        p,
        &raw.max_concurrent,
        "probe.max_concurrent",
        out.max_concurrent,
    );
    let widen = |v: &Option<Spanned<u32>>| {
        v.as_ref()
            .map(|s| Spanned::new(s.value as usize, s.referenced, s.defined))
    };
    out.rate_per_second =
        positive(p, &widen(&raw.rate_per_second), "probe.rate_per_second", 10) as u32;
    out.burst = positive(p, &widen(&raw.burst), "probe.burst", 20) as u32;
    if let Some(d) = parse_duration(p, &raw.max_timeout, "probe.max_timeout") {
        out.max_timeout = d;
    }
    if let Some(d) = parse_duration(p, &raw.timeout_offset, "probe.timeout_offset") {
        out.timeout_offset = d;
    }
    out
}
