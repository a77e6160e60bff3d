//! How config problems are collected and reported: every problem at once, each as
//! `FILE:LINE: field: problem`, plus the small value parsers whose errors follow that form.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Spanned;

use super::MAX_DURATION;
use crate::model::family::Family;

/// One problem in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// The field path, e.g. `targets[1].timeout`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in one config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where the config came from.
    pub origin: String,
    /// The problems, in document order.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub(super) fn single(
        origin: &str,
        line: Option<u64>,
        field: &str,
        message: String,
    ) -> ConfigError {
        ConfigError {
            origin: origin.to_string(),
            problems: vec![Problem {
                line,
                field: field.to_string(),
                message,
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.origin)?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            if p.field.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, ": {}: {}", p.field, p.message)?;
            }
        }
        Ok(())
    }
}

/// Collects problems while validating.
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn add(
        &mut self,
        line: Option<u64>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(Problem {
            line,
            field: field.into(),
            message: message.into(),
        });
    }
}

pub(super) fn line_of<T>(s: &Spanned<T>) -> Option<u64> {
    let l = s.referenced.line();
    (l > 0).then_some(l)
}

pub(super) fn parse_duration(
    p: &mut Problems,
    raw: &Option<Spanned<String>>,
    field: &str,
) -> Option<Duration> {
    let raw = raw.as_ref()?;
    match humantime::parse_duration(raw.value.trim()) {
        Ok(d) if d.is_zero() => {
            p.add(line_of(raw), field, "must be greater than zero");
            None
        }
        // Far-future deadlines would overflow clock arithmetic; nothing needs more than a week.
        Ok(d) if d > MAX_DURATION => {
            p.add(
                line_of(raw),
                field,
                format!("`{}` is longer than 7d", raw.value),
            );
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            p.add(
                line_of(raw),
                field,
                format!(
                    "`{}` is not a duration ({e}); write e.g. 15s, 500ms, 1m",
                    raw.value
                ),
            );
            None
        }
    }
}

/// Parses `IP:PORT` (`[v6]:PORT`), or a bare IP meaning port 53.
pub fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| {
        s.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

pub(super) fn families_or_problem(
    p: &mut Problems,
    f: &Spanned<Vec<Family>>,
    field: &str,
) -> Vec<Family> {
    let mut v = f.value.clone();
    v.sort();
    v.dedup();
    if v.is_empty() {
        p.add(line_of(f), field, "must name at least one of ipv4, ipv6");
        return Family::ALL.to_vec();
    }
    v
}

pub(super) fn check_region(p: &mut Problems, r: &Spanned<String>, field: String) -> Option<String> {
    let v = r.value.trim();
    if is_region_name(v) && v.contains('-') {
        Some(v.to_string())
    } else {
        p.add(
            line_of(r),
            field,
            format!("`{}` is not a region name like us-east-1", r.value),
        );
        None
    }
}

pub(super) fn is_region_name(r: &str) -> bool {
    !r.is_empty()
        && r.len() < 32
        && r.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The SDKs' rule for an endpoint override, for `aws:` and `discovery.vpc_endpoints`: not with
/// `dual_stack`, and a URL with a host.
pub(super) fn check_endpoint_url(
    p: &mut Problems,
    url: &Option<Spanned<String>>,
    dual_stack: bool,
    field: &str,
) {
    let Some(u) = url else { return };
    if dual_stack {
        p.add(
            line_of(u),
            field,
            "cannot be used with `dual_stack: true` (the SDKs reject both); set `dual_stack: false`",
        );
    } else if crate::aws::endpoint_host_port(u.value.trim()).is_none() {
        p.add(
            line_of(u),
            field,
            format!("`{}` is not a URL like https://host:port", u.value),
        );
    }
}

/// A path from the config, relative to the config file's directory when it is relative.
pub(super) fn resolve_path(base_dir: Option<&Path>, path: &Path) -> PathBuf {
    match base_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// The shortest interval: a cycle more often than every second measures the agent, not the
/// path, and `1ns` would spin a core.
pub(super) const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// [`parse_duration`] for an `interval`, which must also be at least [`MIN_INTERVAL`].
pub(super) fn parse_interval(
    p: &mut Problems,
    raw: &Option<Spanned<String>>,
    field: &str,
) -> Option<Duration> {
    let d = parse_duration(p, raw, field)?;
    if d < MIN_INTERVAL {
        p.add(
            raw.as_ref().and_then(line_of),
            field,
            format!(
                "`{}` is shorter than the 1s minimum",
                raw.as_ref().map_or("", |r| r.value.as_str())
            ),
        );
        return None;
    }
    Some(d)
}
