//! Discovery health: the outcome of the last attempt of each configured discovery source, which
//! `/metrics` (`dualprobe_discovery_*`), the status page and the EMF `DiscoverySuccess`
//! documents report. Without it a discovery that fails (a missing IAM action) or finds nothing
//! looks exactly like a VPC without endpoints: no targets, nothing red, no alert.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use super::DiscoveryConfig;
use crate::model::target::TargetSource;

/// The last attempt of one discovery source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryStatus {
    /// `cloudformation` or `vpc_endpoints`.
    pub source: TargetSource,
    /// What was asked: the VPC ID or the template path.
    pub subject: String,
    /// When the last attempt finished.
    pub last_attempt: SystemTime,
    /// The last attempt's error; `None` when it succeeded.
    pub error: Option<String>,
    /// Endpoints found by the last successful attempt; `None` before the first success.
    pub endpoints: Option<usize>,
    /// When an attempt last succeeded.
    pub last_success: Option<SystemTime>,
}

impl DiscoveryStatus {
    /// The last attempt succeeded.
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// The status of every source that made an attempt, kept across generations.
#[derive(Debug, Default)]
pub struct DiscoveryHealth {
    by_source: Mutex<BTreeMap<&'static str, DiscoveryStatus>>,
}

impl DiscoveryHealth {
    /// Records an attempt: `Ok(endpoints found)` or `Err(message)`. Returns the new status.
    pub fn record(
        &self,
        source: TargetSource,
        subject: &str,
        outcome: Result<usize, String>,
    ) -> DiscoveryStatus {
        let now = SystemTime::now();
        let mut map = self.by_source.lock().expect("discovery health lock");
        let previous = map.get(source.as_str());
        let (endpoints, last_success) = match &outcome {
            Ok(n) => (Some(*n), Some(now)),
            Err(_) => (
                previous.and_then(|p| p.endpoints),
                previous.and_then(|p| p.last_success),
            ),
        };
        let status = DiscoveryStatus {
            source,
            subject: subject.to_string(),
            last_attempt: now,
            error: outcome.err(),
            endpoints,
            last_success,
        };
        map.insert(source.as_str(), status.clone());
        status
    }

    /// Drops the sources `discovery` no longer configures; returns them.
    pub fn retain_configured(&self, discovery: &DiscoveryConfig) -> Vec<TargetSource> {
        let keep = configured_sources(discovery);
        let mut map = self.by_source.lock().expect("discovery health lock");
        let gone: Vec<TargetSource> = map
            .values()
            .map(|s| s.source)
            .filter(|s| !keep.contains(s))
            .collect();
        for s in &gone {
            map.remove(s.as_str());
        }
        gone
    }

    /// Every source's status, by source name.
    pub fn all(&self) -> Vec<DiscoveryStatus> {
        let map = self.by_source.lock().expect("discovery health lock");
        map.values().cloned().collect()
    }
}

/// The discovery sources `discovery` configures, in label order.
pub fn configured_sources(discovery: &DiscoveryConfig) -> Vec<TargetSource> {
    let mut out = Vec::new();
    if discovery.cloudformation.is_some() {
        out.push(TargetSource::Cloudformation);
    }
    if discovery.vpc_endpoints.is_some() {
        out.push(TargetSource::VpcEndpoints);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_last_success() {
        let h = DiscoveryHealth::default();
        let s = h.record(TargetSource::VpcEndpoints, "vpc-1", Ok(3));
        assert!(s.succeeded());
        assert_eq!(s.endpoints, Some(3));
        let ok_at = s.last_success;
        let s = h.record(TargetSource::VpcEndpoints, "vpc-1", Err("denied".into()));
        assert!(!s.succeeded());
        assert_eq!(s.error.as_deref(), Some("denied"));
        assert_eq!(s.endpoints, Some(3), "the last successful count stays");
        assert_eq!(s.last_success, ok_at);
        let s = h.record(TargetSource::Cloudformation, "t.yml", Err("bad".into()));
        assert_eq!((s.endpoints, s.last_success), (None, None));
        assert_eq!(h.all().len(), 2);
        assert_eq!(
            h.retain_configured(&DiscoveryConfig::default()),
            [TargetSource::Cloudformation, TargetSource::VpcEndpoints]
        );
        assert!(h.all().is_empty());
    }
}
