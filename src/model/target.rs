//! A validated, ready-to-probe target: what config (or discovery) turns into, and what the
//! scheduler and `/probe` hand to the checks.

use std::any::Any;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::check_kind::CheckKind;
use crate::model::family::Family;
use crate::model::nat64::ViaKind;

/// The host part of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name: the `dns` check resolves it per family.
    Name(String),
    /// An IP literal: DNS is skipped and only its own family is probed.
    Ip(IpAddr),
}

impl Host {
    /// Parses a host the way URL parsers do (WHATWG): IP literals with or without brackets, and
    /// the disguised IPv4 forms (`2852039166`, `0xa9fea9fe`, `0251.0376.0251.0376`,
    /// `169.254.43518`) become the address they mean, so no check ever treats them as names.
    pub fn parse(s: &str) -> Host {
        let s = s.trim().trim_end_matches('.');
        let bare = s.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Host::Ip(ip);
        }
        match url::Host::parse(s) {
            Ok(url::Host::Ipv4(v4)) => Host::Ip(IpAddr::V4(v4)),
            Ok(url::Host::Ipv6(v6)) => Host::Ip(IpAddr::V6(v6)),
            // The text was trimmed of trailing dots before `url` decoded it: `e%2e` decodes to
            // `e.`, which a URL built from it would carry as `e` (found by the host_guard fuzz
            // target), so what the allowlist judges and what is connected to differ. Trim and
            // read again: the trimmed text may now be an address (`0251.%2e` is `0251`, 0.0.0.169).
            // Each round is shorter, so this ends.
            Ok(url::Host::Domain(d)) => match d.strip_suffix('.') {
                Some(_) => Host::parse(d.trim_end_matches('.')),
                None => Host::Name(d),
            },
            Err(_) => Host::Name(s.to_ascii_lowercase()),
        }
    }

    /// Checks that a name (not an IP literal) is a DNS host name: labels of letters, digits,
    /// `-` and `_`, 1–63 bytes each, 253 in all. A `?`, `#`, `%` or any other character is
    /// refused here, before any allowlist pattern could match the text around it
    /// (`169.254.169.254?.x.test` must not pass `*.x.test`).
    pub fn check_name(name: &str) -> Result<(), String> {
        let bare = name.strip_suffix('.').unwrap_or(name);
        if bare.is_empty() || bare.len() > 253 {
            return Err(format!("`{name}` is not a host name (1 to 253 characters)"));
        }
        for label in bare.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!(
                    "`{name}` is not a host name (each label 1 to 63 characters)"
                ));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(format!(
                    "`{name}` is not a host name (`{}` is not allowed in one)",
                    c.escape_default()
                ));
            }
        }
        // WHATWG's "ends in a number": URL parsers read such a host as an IPv4 address, and
        // `parse` only leaves it a name when it is not a valid one (`6169.254`), so no URL
        // could carry it (found by the host_guard fuzz target).
        let last = bare.rsplit('.').next().unwrap_or(bare);
        let hex = last
            .strip_prefix("0x")
            .or_else(|| last.strip_prefix("0X"))
            .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
        if hex || last.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "`{name}` is not a host name or IP address (it ends in a number, so URLs read it as an IPv4 address, and it is not a valid one)"
            ));
        }
        // What passes the character rules but no URL can carry, such as a bad punycode label
        // (`xn--`): an http check could not even build its URL (found by the fuzz target).
        if let Err(e) = url::Host::parse(bare) {
            return Err(format!("`{name}` is not a host name ({e})"));
        }
        Ok(())
    }

    /// The host as written in URLs (IPv6 literals in brackets).
    pub fn url_host(&self) -> String {
        match self {
            Host::Name(n) => n.clone(),
            Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            Host::Ip(ip) => ip.to_string(),
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// What a team asserts about one family of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Every check should pass.
    #[default]
    Reachable,
    /// The connection must fail (DNS may succeed): "no IPv4 path to the internet".
    Unreachable,
    /// The name must have no record of the family's type (NODATA): an IPv4-only PrivateLink
    /// endpoint's name has no AAAA, and that is how it should be.
    Nodata,
    /// Only measure.
    Any,
}

impl Expect {
    /// The value of the `expect` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Reachable => "reachable",
            Expect::Unreachable => "unreachable",
            Expect::Nodata => "nodata",
            Expect::Any => "any",
        }
    }
}

/// Per-family expectations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expectations {
    /// For IPv4.
    pub ipv4: Expect,
    /// For IPv6.
    pub ipv6: Expect,
    /// The IPv6 path a reachable target must use (`expect.via.ipv6`): native, or through NAT64.
    /// `None`: either.
    pub ipv6_via: Option<ViaKind>,
}

impl Expectations {
    /// The expectation of one family.
    pub fn for_family(&self, family: Family) -> Expect {
        match family {
            Family::Ipv4 => self.ipv4,
            Family::Ipv6 => self.ipv6,
        }
    }

    /// The path asserted for one family (only IPv6 has one: IPv4 is never synthesized).
    pub fn via_for(&self, family: Family) -> Option<ViaKind> {
        match family {
            Family::Ipv4 => None,
            Family::Ipv6 => self.ipv6_via,
        }
    }
}

/// Which resolved addresses the connecting checks try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressSelection {
    /// The first address only.
    #[default]
    First,
    /// Every address; the check passes only if all do.
    All,
}

/// TLS settings, with the client configuration built once at load.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// SNI and verification name (default: the host).
    pub server_name: Option<String>,
    /// Skip certificate verification (expiry is still recorded).
    pub insecure_skip_verify: bool,
    /// The rustls client configuration (Mozilla roots plus `ca_file`).
    pub client_config: Arc<rustls::ClientConfig>,
}

/// Where a target came from: the `source` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetSource {
    /// Written in the config's `targets:`.
    Config,
    /// Found in a CloudFormation template.
    Cloudformation,
    /// Found by `ec2:DescribeVpcEndpoints`.
    VpcEndpoints,
    /// An ad-hoc `/probe` or CLI probe.
    Adhoc,
}

impl TargetSource {
    /// The value of the `source` label.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSource::Config => "config",
            TargetSource::Cloudformation => "cloudformation",
            TargetSource::VpcEndpoints => "vpc_endpoints",
            TargetSource::Adhoc => "adhoc",
        }
    }
}

/// A target ready to probe.
#[derive(Debug, Clone)]
pub struct Target {
    /// Unique name: the `target` label.
    pub name: String,
    /// The host to resolve or the literal to use.
    pub host: Host,
    /// The port connecting checks use.
    pub port: u16,
    /// Checks in chain order.
    pub checks: Vec<CheckKind>,
    /// Families probed.
    pub families: Vec<Family>,
    /// How often.
    pub interval: Duration,
    /// Deadline of each check.
    pub timeout: Duration,
    /// Which addresses connecting checks try.
    pub addresses: AddressSelection,
    /// TLS settings.
    pub tls: TlsSettings,
    /// Per-family expectations.
    pub expect: Expectations,
    /// Where it came from.
    pub source: TargetSource,
    /// The `aws:` block (`s3`/`ec2` checks); its resolved endpoint is `host`/`port`.
    pub aws: Option<crate::model::aws::AwsSettings>,
    /// The target's own host is an IP literal the address guard would refuse (the ECS agent at
    /// 169.254.170.2, the instance metadata service), checked on purpose: only a configured
    /// target can say so, only for its literal host, and never for a redirect hop.
    pub allow_metadata_address: bool,
    /// Settings of the check kinds that have their own config section, each typed by its kind.
    pub settings: CheckSettings,
}

/// Per-kind settings: each value's type is owned by its kind's file, which alone reads it back.
#[derive(Clone, Default)]
pub struct CheckSettings(Vec<(CheckKind, Arc<dyn Any + Send + Sync>)>);

impl CheckSettings {
    /// Sets `kind`'s settings.
    pub fn set(&mut self, kind: CheckKind, value: Arc<dyn Any + Send + Sync>) {
        self.0.retain(|(k, _)| *k != kind);
        self.0.push((kind, value));
    }

    /// `kind`'s settings, if set and of type `T`.
    pub fn get<T: Any>(&self, kind: CheckKind) -> Option<&T> {
        self.0
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, v)| v.downcast_ref::<T>())
    }
}

impl std::fmt::Debug for CheckSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Target {
    /// The name TLS verifies and sends as SNI.
    pub fn tls_server_name(&self) -> String {
        self.tls
            .server_name
            .clone()
            .unwrap_or_else(|| self.host.to_string())
    }
}
