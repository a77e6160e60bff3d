//! The entry points the fuzz targets (`fuzz/`) drive that are not public API: the `/probe`
//! request's parsing and target resolution, and the conversion of `DescribeVpcEndpoints` /
//! `DescribeVpcs` items and the classification of failed SDK calls. Hidden from the docs and not
//! for embedders: it exists so the targets run the very code the agent runs, without widening
//! the library's public surface.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};

use crate::config::Config;
use crate::model::target::Target;
use crate::serve::probe_endpoint;

pub use crate::aws::errors::classify as classify_sdk_error;
pub use crate::discovery::vpc_endpoints::{from_endpoints, vpc_cidrs};

/// What a `/probe` request resolves to before anything is sent.
#[derive(Debug)]
pub struct ProbeRequest {
    /// The target to probe.
    pub target: Arc<Target>,
    /// Ad hoc (not a configured target): held to `probe.allow` and the metadata guard.
    pub adhoc: bool,
    /// The probe's deadline.
    pub timeout: Duration,
}

/// The `/probe` handler's own steps (`probe_endpoint::resolve_request`) from the raw query (and
/// the scrape timeout header) to the target. An `Err` is the status and message the handler
/// answers with.
pub fn probe_request(
    config: &Config,
    query: &str,
    scrape_timeout: Option<&str>,
) -> Result<ProbeRequest, (u16, String)> {
    let mut headers = HeaderMap::new();
    if let Some(v) = scrape_timeout.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert("x-prometheus-scrape-timeout-seconds", v);
    }
    let policy = crate::net::guard::AdhocPolicy {
        allow: config.probe_endpoint.allow.clone(),
        guard: Default::default(),
    };
    let probe_endpoint::Resolved {
        target,
        adhoc,
        timeout,
        ..
    } = probe_endpoint::resolve_request(config, &config.targets, &policy, &headers, Some(query))
        .map_err(|(s, m)| (s.as_u16(), m))?;
    Ok(ProbeRequest {
        target,
        adhoc,
        timeout,
    })
}
