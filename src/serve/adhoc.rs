//! Targets for one-off probes (the `probe` subcommand and `/probe`): parses `HOST[:PORT]`,
//! picks checks and families, and fills the rest with the defaults a configured target gets.

use std::sync::Arc;
use std::time::Duration;

use crate::checks::http;
use crate::model::check_kind::{CheckKind, Layer};
use crate::model::family::Family;
use crate::model::target::{
    AddressSelection, Expectations, Host, Target, TargetSource, TlsSettings,
};

/// What an ad-hoc probe asks for.
#[derive(Debug, Clone)]
pub struct AdhocRequest {
    /// `HOST`, `HOST:PORT`, `[v6]:PORT` or a URL-ish `https://host:port/path`.
    pub target: String,
    /// Check names (empty: dns, tcp, plus tls and http for https targets).
    pub checks: Vec<String>,
    /// Families (empty: both).
    pub families: Vec<Family>,
    /// Per-check timeout.
    pub timeout: Duration,
}

/// Why an ad-hoc request is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AdhocError(pub String);

/// The parts of an ad-hoc target string.
pub type TargetParts = (Host, Option<u16>, Option<&'static str>, Option<String>);

/// Splits `HOST[:PORT]`, `[V6]:PORT`, a bare IPv6 literal, or `scheme://host[:port][/path]`.
/// Returns host, port (if given), scheme (if given) and path (if given).
pub fn split_target(s: &str) -> Result<TargetParts, AdhocError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(AdhocError("target is empty".into()));
    }
    let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
        (Some("https"), r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (Some("http"), r)
    } else if s.contains("://") {
        return Err(AdhocError(format!(
            "`{s}`: only http:// and https:// URLs are understood"
        )));
    } else {
        (None, s)
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_string())),
        None => (rest, None),
    };
    if authority.contains('@') {
        return Err(AdhocError(format!(
            "`{s}`: user info is not allowed in a target"
        )));
    }
    let bad_port = |p: &str| AdhocError(format!("`{p}` is not a port (1-65535)"));
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| AdhocError(format!("`{authority}`: missing `]`")))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad_port(p))?,
            ),
            None if after.is_empty() => None,
            None => return Err(AdhocError(format!("`{authority}`: junk after `]`"))),
        };
        (h.to_string(), port)
    } else if authority.matches(':').count() > 1 {
        (authority.to_string(), None) // a bare IPv6 literal
    } else if let Some((h, p)) = authority.rsplit_once(':') {
        (
            h.to_string(),
            Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad_port(p))?,
            ),
        )
    } else {
        (authority.to_string(), None)
    };
    if host.is_empty() {
        return Err(AdhocError(format!("`{s}`: no host")));
    }
    if host.contains(|c: char| c.is_whitespace() || c == '/' || c == '\\') {
        return Err(AdhocError(format!(
            "`{host}` is not a host name or IP address"
        )));
    }
    // An IPv6 literal with a zone ID (`fe80::1%eth0`, `%25` in URLs): zones only matter for
    // link-local addresses, which the metadata guard always refuses, so such a literal is kept
    // as its address (and refused); a zone on any other address is an error.
    if let Some((addr, _zone)) = host.split_once('%')
        && let Ok(v6) = addr.parse::<std::net::Ipv6Addr>()
    {
        let ip = std::net::IpAddr::V6(v6);
        if crate::net::guard::forbidden(ip).is_some() {
            return Ok((Host::Ip(ip), port, scheme, path));
        }
        return Err(AdhocError(format!(
            "`{host}`: zone IDs are only meaningful for link-local addresses"
        )));
    }
    let parsed = Host::parse(&host);
    if let Host::Name(name) = &parsed {
        if host.contains(':') {
            return Err(AdhocError(format!(
                "`{host}` is not a host name or IP address"
            )));
        }
        Host::check_name(name).map_err(AdhocError)?;
    }
    Ok((parsed, port, scheme, path))
}

/// Builds an ad-hoc target. TLS uses Mozilla's roots; HTTP accepts 2xx and 3xx.
pub fn build(req: &AdhocRequest) -> Result<Arc<Target>, AdhocError> {
    let (host, port, scheme, path) = split_target(&req.target)?;
    let mut checks = Vec::new();
    let names: Vec<String> = if req.checks.is_empty() {
        let tls_like =
            scheme == Some("https") || (scheme.is_none() && port.is_none_or(|p| p == 443));
        let mut v = vec!["dns".to_string(), "tcp".to_string()];
        if tls_like {
            v.push("tls".into());
        }
        if scheme.is_some() || tls_like {
            v.push("http".into());
        }
        v
    } else {
        req.checks.clone()
    };
    for n in &names {
        for part in n.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let kind = CheckKind::from_name(part).ok_or_else(|| {
                AdhocError(format!(
                    "unknown check `{part}`; known checks: {}",
                    CheckKind::all_names().join(", ")
                ))
            })?;
            if !checks.contains(&kind) {
                checks.push(kind);
            }
        }
    }
    // `check=` or `check=,` names nothing: an error, not a target with no checks (which would
    // answer success having checked nothing; found by the probe_query fuzz target).
    if checks.is_empty() {
        return Err(AdhocError(format!(
            "`check` names no check; known checks: {}",
            CheckKind::all_names().join(", ")
        )));
    }
    checks.sort();
    if matches!(host, Host::Ip(_)) {
        checks.retain(|k| crate::checks::check_for(*k).layer() != Layer::Resolve);
        if checks.is_empty() {
            return Err(AdhocError(
                "an IP literal needs no dns check; ask for tcp, tls or http".into(),
            ));
        }
    }
    let has_tls = checks.contains(&CheckKind::Tls);
    let scheme = scheme.unwrap_or(if has_tls || port == Some(443) || port.is_none() {
        "https"
    } else {
        "http"
    });
    let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
    let mut families = if req.families.is_empty() {
        Family::ALL.to_vec()
    } else {
        req.families.clone()
    };
    families.sort();
    families.dedup();
    if let Host::Ip(ip) = host {
        let asked: Vec<&str> = families.iter().map(|f| f.as_str()).collect();
        let asked = asked.join(" or ");
        families.retain(|f| *f == Family::of(ip));
        if families.is_empty() {
            return Err(AdhocError(format!(
                "{ip} is an {} address, not probed over {asked}",
                Family::of(ip)
            )));
        }
    }
    let mut target = Target {
        name: req.target.trim().to_string(),
        host,
        port,
        checks,
        families,
        interval: req.timeout.saturating_mul(2),
        timeout: req.timeout,
        addresses: AddressSelection::First,
        tls: TlsSettings {
            server_name: None,
            insecure_skip_verify: false,
            client_config: default_tls()?,
        },
        expect: Expectations::default(),
        source: TargetSource::Adhoc,
        aws: None,
        allow_metadata_address: false,
        settings: Default::default(),
    };
    // Any answer but a 4xx/5xx means the path works; the scheme is the request's, fixed.
    target.settings.set(
        CheckKind::Http,
        Arc::new(http::Settings {
            scheme: Some(if scheme == "https" {
                http::Scheme::Https
            } else {
                http::Scheme::Http
            }),
            path: path.unwrap_or_else(|| "/".into()),
            expect_status: vec![http::StatusMatcher::Class(2), http::StatusMatcher::Class(3)],
            follow_redirects: true,
        }),
    );
    // A check that cannot run on an ad-hoc target (`s3` and `ec2` need an `aws:` block) is the
    // caller's mistake: a 400 naming it, not a failed probe.
    for k in &target.checks {
        crate::checks::check_for(*k)
            .validate(&target)
            .map_err(|e| {
                AdhocError(format!(
                    "check `{}` cannot run on an ad-hoc target: {e}",
                    k.name()
                ))
            })?;
    }
    Ok(Arc::new(target))
}

/// The TLS configuration of every ad-hoc target (Mozilla's roots), built once per process
/// instead of once per request: a config holds a copy of the whole root store.
fn default_tls() -> Result<Arc<rustls::ClientConfig>, AdhocError> {
    static DEFAULT: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    DEFAULT
        .get_or_init(|| crate::net::tls::client_config(None, false).map(Arc::new))
        .clone()
        .map_err(AdhocError)
}
