//! The one family-pinned HTTP stack: a reqwest client whose resolver answers only one family's
//! records from the probe resolver (or both, IPv6 first, for calls that are not per-family
//! measurements), applies the address policy to every answer, and refuses an answer that would
//! leave the family (an IPv4-mapped AAAA). The `http` check and the AWS SDK connector both build
//! their clients here, so the two cannot drift apart.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::model::failure::{Failure, FailureReason, error_chain};
use crate::model::family::Family;
use crate::model::target::Host;
use crate::net::guard::AddressPolicy;
use crate::net::resolver::DnsResolver;

/// A typed failure carried through reqwest's (and the AWS SDK's) error chains, so the reason
/// found by the resolver, the policy or the family rule survives to [`classify`].
#[derive(Debug)]
pub struct CarriedFailure(pub Failure);

impl fmt::Display for CarriedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.detail.fmt(f)
    }
}
impl StdError for CarriedFailure {}

fn carried(f: Failure) -> Box<dyn StdError + Send + Sync> {
    Box::new(CarriedFailure(f))
}

/// `unreachable` when connecting to `ip` would leave `family`.
pub fn off_family(ip: IpAddr, family: Family) -> Option<Failure> {
    if Family::of(ip) == family {
        return None;
    }
    let detail = if matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()) {
        format!("{ip} is an IPv4-mapped address: reaching it would use IPv4, not {family}")
    } else {
        format!("{ip} is not an {family} address")
    };
    Some(Failure::new(FailureReason::Unreachable, detail))
}

/// Which ALPN protocols the client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/2 and HTTP/1.1, as a browser would (the `http` check).
    Http2AndHttp1,
    /// HTTP/1.1 only (the AWS SDK connector).
    Http1Only,
}

/// How to build a pinned client.
pub struct ClientOptions {
    /// The family every connection is pinned to; `None` resolves both (IPv6 first).
    pub family: Option<Family>,
    /// The probe resolver (cache off).
    pub resolver: DnsResolver,
    /// Refuses addresses before anything is sent to them.
    pub policy: Option<Arc<dyn AddressPolicy>>,
    /// Roots, extra CA and verification; ALPN is set from `protocols`.
    pub tls: Arc<rustls::ClientConfig>,
    /// What ALPN offers.
    pub protocols: Protocols,
    /// Deadline of one request, connect included.
    pub timeout: Duration,
    /// Keep idle connections for reuse (off for checks: every call is a new connection).
    pub pool: bool,
    /// What to do on a redirect.
    pub redirect: reqwest::redirect::Policy,
    /// A name the resolver answers with another host's addresses, like curl's `--resolve`:
    /// `tls.server_name` in the URL (SNI, Host header), the target's host on the wire.
    pub alias: Option<(String, Host)>,
    /// The alias's host is an IP literal its target checks on purpose (`allow_metadata_address`):
    /// the policy does not refuse it (any other name, and every redirect, still is checked).
    pub alias_exempt: bool,
    /// The agent's origin id, sent in `x-dualprobe-origin` on every request (redirects too), so
    /// that the agent's `/probe` can refuse its own checks.
    pub origin: Option<String>,
}

/// Builds the client: pinned resolver, the given TLS configuration, no proxy from the
/// environment.
pub fn build_client(opts: ClientOptions) -> Result<reqwest::Client, Failure> {
    let mut tls = (*opts.tls).clone();
    tls.alpn_protocols = match opts.protocols {
        Protocols::Http2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Protocols::Http1Only => vec![b"http/1.1".to_vec()],
    };
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .dns_resolver(Arc::new(PinnedResolver {
            resolver: opts.resolver,
            family: opts.family,
            policy: opts.policy,
            alias: opts.alias,
            alias_exempt: opts.alias_exempt,
        }))
        .no_proxy()
        .redirect(opts.redirect)
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout)
        .user_agent(concat!("dualprobe/", env!("CARGO_PKG_VERSION")));
    if opts.protocols == Protocols::Http1Only {
        builder = builder.http1_only();
    }
    if let Some(origin) = opts
        .origin
        .as_deref()
        .and_then(|o| reqwest::header::HeaderValue::from_str(o).ok())
    {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(crate::net::own_listener::ORIGIN_HEADER, origin);
        builder = builder.default_headers(headers);
    }
    if !opts.pool {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder
        .build()
        .map_err(|e| Failure::new(FailureReason::Other, format!("building HTTP client: {e}")))
}

/// Resolves one family's records (or both, IPv6 first) through the probe resolver, then applies
/// the policy and the family rule.
struct PinnedResolver {
    resolver: DnsResolver,
    family: Option<Family>,
    policy: Option<Arc<dyn AddressPolicy>>,
    alias: Option<(String, Host)>,
    alias_exempt: bool,
}

impl Resolve for PinnedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.resolver.clone();
        let family = self.family;
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        let aliased = self
            .alias
            .as_ref()
            .filter(|(server_name, _)| server_name.eq_ignore_ascii_case(&host))
            .map(|(_, target)| target.clone());
        let exempt = self.alias_exempt && matches!(aliased, Some(Host::Ip(_)));
        let policy = if exempt { None } else { policy };
        let lookup_host = aliased.unwrap_or_else(|| Host::Name(host.clone()));
        Box::pin(async move {
            let addresses: Vec<IpAddr> = match (&lookup_host, family) {
                (Host::Ip(ip), _) => vec![*ip],
                (Host::Name(n), Some(f)) => {
                    resolver
                        .lookup(n, f)
                        .await
                        .map_err(|e| carried(e.to_failure()))?
                        .addresses
                }
                (Host::Name(n), None) => {
                    let (v6, v4) = tokio::join!(
                        resolver.lookup(n, Family::Ipv6),
                        resolver.lookup(n, Family::Ipv4)
                    );
                    match (v6, v4) {
                        (Err(e), Err(_)) => return Err(carried(e.to_failure())),
                        (v6, v4) => {
                            let mut all = v6.map(|a| a.addresses).unwrap_or_default();
                            all.extend(v4.map(|a| a.addresses).unwrap_or_default());
                            all
                        }
                    }
                }
            };
            // The guard first: a forbidden address is refused as such, whatever its family.
            if let Some(p) = &policy {
                for a in &addresses {
                    p.check(*a).map_err(carried)?;
                }
            }
            if let Some(f) = family
                && let Some(off) = addresses.iter().find_map(|ip| off_family(*ip, f))
            {
                return Err(carried(Failure::new(
                    off.reason,
                    format!("{host}: {}", off.detail),
                )));
            }
            let addrs: Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

/// Maps a reqwest error onto a reason by walking its source chain.
pub fn classify(err: &reqwest::Error) -> Failure {
    let detail = error_chain(err);
    if let Some(reason) = network_reason(err) {
        return Failure::new(reason, detail);
    }
    let reason = if err.is_timeout() {
        FailureReason::Timeout
    } else if err.is_connect() {
        FailureReason::Unreachable
    } else {
        FailureReason::HttpStatus
    };
    Failure::new(reason, detail)
}

/// The reason found in an error's source chain — a carried failure (DNS, the family rule, the
/// address policy), a rustls error, or a socket error — for the `http` check and the AWS
/// connector alike.
pub fn network_reason(err: &(dyn StdError + 'static)) -> Option<FailureReason> {
    let mut src = Some(err);
    while let Some(e) = src {
        if let Some(reason) = reason_of(e) {
            return Some(reason);
        }
        src = e.source();
    }
    None
}

/// The reason one link of the chain carries, if it is one we know. An `io::Error` is looked
/// into, since its `source()` skips the error it wraps: that is where rustls errors travel.
fn reason_of(e: &(dyn StdError + 'static)) -> Option<FailureReason> {
    if let Some(c) = e.downcast_ref::<CarriedFailure>() {
        return Some(c.0.reason);
    }
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(crate::net::tls::rustls_reason(r));
    }
    let io = e.downcast_ref::<std::io::Error>()?;
    if let Some(inner) = io.get_ref()
        && let Some(reason) = reason_of(inner)
    {
        return Some(reason);
    }
    match FailureReason::from_io(io) {
        FailureReason::Other => None,
        reason => Some(reason),
    }
}
