//! `http`: one request over the cycle's family with reqwest. The family is held through
//! redirects: the client's resolver answers only the family's records, and a redirect to an IP
//! literal of the other family is refused.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{CheckOutput, Failure, FailureReason, Observations, ProbeContext, Prober};
use crate::env::AddressPolicy;
use crate::family::Family;
use crate::resolver::DnsResolver;
use crate::target::{Host, Target};

/// The `http` prober.
pub struct Http;

impl Prober for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn probe<'a>(&'a self, cx: &'a mut ProbeContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            // Resolve (and guard) first so an IP literal of the other family fails clearly.
            let addresses = match cx.addresses().await {
                Ok(a) => a,
                Err(f) => return CheckOutput::fail(f),
            };
            let target = cx.target;
            let family = cx.family;
            // The resolver below re-checks names, but a literal host never reaches it.
            if let Some(f) = addresses.iter().find_map(|ip| off_family(*ip, family)) {
                return CheckOutput::fail(f);
            }
            let client = match cx.env.client(target, family, "http", || {
                build_client(target, family, &cx.env.resolver, cx.env.policy.clone())
            }) {
                Ok(c) => c,
                Err(f) => return CheckOutput::fail(f),
            };
            let url_host = match server_name_alias(target) {
                Some((server_name, _)) => server_name,
                None => target.host.url_host(),
            };
            let url = format!(
                "{}://{url_host}:{}{}",
                target.http.scheme, target.port, target.http.path
            );
            cx.debug(format!("GET {url} over {family}"));
            match client.get(&url).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let obs = Observations {
                        http_status: Some(status),
                        remote: resp.remote_addr(),
                        ..Observations::default()
                    };
                    if let Some(remote) = resp.remote_addr()
                        && Family::of(remote.ip()) != family
                    {
                        return CheckOutput::fail(Failure::new(
                            FailureReason::Other,
                            format!("answered from {remote}, not over {family}"),
                        ))
                        .with(obs);
                    }
                    cx.debug(format!(
                        "{} {status} from {:?}",
                        resp.url(),
                        resp.remote_addr()
                    ));
                    if target.http.expect_status.iter().any(|m| m.matches(status)) {
                        CheckOutput::pass(obs)
                    } else {
                        CheckOutput::fail(Failure::new(
                            FailureReason::HttpStatus,
                            format!("status {status} from {} is not an expected one", resp.url()),
                        ))
                        .with(obs)
                    }
                }
                Err(e) => CheckOutput::fail(classify(&e)),
            }
        })
    }
}

/// `unreachable` when connecting to `ip` would leave `family`.
fn off_family(ip: IpAddr, family: Family) -> Option<Failure> {
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

/// A failure carried through reqwest's error chain, so the typed reason survives.
#[derive(Debug)]
struct CarriedFailure(Failure);

impl std::fmt::Display for CarriedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.detail.fmt(f)
    }
}
impl StdError for CarriedFailure {}

/// Resolves only one family's records, through the probe resolver, and applies the policy.
struct PinnedResolver {
    resolver: DnsResolver,
    family: Family,
    policy: Option<Arc<dyn AddressPolicy>>,
    /// `tls.server_name` → the target's host: the URL names the server (SNI and Host header),
    /// the connection goes to the target, like curl's `--resolve`.
    alias: Option<(String, Host)>,
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
        Box::pin(async move {
            let answer = match aliased {
                Some(Host::Ip(ip)) => crate::resolver::Answer {
                    addresses: vec![ip],
                },
                Some(Host::Name(real)) => resolver.lookup(&real, family).await.map_err(|e| {
                    Box::new(CarriedFailure(e.to_failure())) as Box<dyn StdError + Send + Sync>
                })?,
                None => resolver.lookup(&host, family).await.map_err(|e| {
                    Box::new(CarriedFailure(e.to_failure())) as Box<dyn StdError + Send + Sync>
                })?,
            };
            // The guard first: a forbidden address is refused as such, whatever its family.
            if let Some(p) = &policy {
                for a in &answer.addresses {
                    p.check(*a).map_err(|f| {
                        Box::new(CarriedFailure(f)) as Box<dyn StdError + Send + Sync>
                    })?;
                }
            }
            if let Some(f) = answer
                .addresses
                .iter()
                .find_map(|ip| off_family(*ip, family))
            {
                let f = Failure::new(f.reason, format!("{host}: {}", f.detail));
                return Err(Box::new(CarriedFailure(f)) as Box<dyn StdError + Send + Sync>);
            }
            let addrs: Addrs = Box::new(
                answer
                    .addresses
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

/// For HTTPS with `tls.server_name` other than the host: the name the request uses (for SNI,
/// certificate verification and the Host header) and the host it really goes to.
fn server_name_alias(target: &Target) -> Option<(String, Host)> {
    let sn = target
        .tls
        .server_name
        .as_deref()?
        .trim()
        .to_ascii_lowercase();
    (target.http.scheme == "https" && !sn.is_empty() && Host::parse(&sn) != target.host)
        .then(|| (sn, target.host.clone()))
}

/// One client per (target, family): pinned resolver, the target's TLS roots, no proxy from the
/// environment, no connection pooling (every probe opens a real connection).
pub fn build_client(
    target: &Target,
    family: Family,
    resolver: &DnsResolver,
    policy: Option<Arc<dyn AddressPolicy>>,
) -> Result<reqwest::Client, Failure> {
    let mut tls = (*target.tls.client_config).clone();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let redirect_policy = {
        let policy = policy.clone();
        let follow = target.http.follow_redirects;
        reqwest::redirect::Policy::custom(move |attempt| {
            if !follow {
                return attempt.stop();
            }
            if attempt.previous().len() >= 10 {
                return attempt.error(CarriedFailure(Failure::new(
                    FailureReason::HttpStatus,
                    "more than 10 redirects",
                )));
            }
            let host = attempt.url().host_str().map(crate::target::Host::parse);
            // Every hop passes the policy first: literals are guarded, names must be allowed.
            if let (Some(p), Some(h)) = (&policy, &host)
                && let Err(f) = p.check_host(h)
            {
                return attempt.error(CarriedFailure(f));
            }
            if let Some(crate::target::Host::Ip(ip)) = &host
                && let Some(f) = off_family(*ip, family)
            {
                let msg = format!(
                    "redirect to {} leaves {family}: {}",
                    attempt.url(),
                    f.detail
                );
                return attempt.error(CarriedFailure(Failure::new(
                    FailureReason::Unreachable,
                    msg,
                )));
            }
            attempt.follow()
        })
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .dns_resolver(Arc::new(PinnedResolver {
            resolver: resolver.clone(),
            family,
            policy,
            alias: server_name_alias(target),
        }))
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(redirect_policy)
        .timeout(target.timeout)
        .user_agent(concat!("dualprobe/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::new(FailureReason::Other, format!("building HTTP client: {e}")))
}

/// Maps a reqwest error onto a reason by walking its source chain.
fn classify(err: &reqwest::Error) -> Failure {
    let detail = super::reason::error_chain(err);
    let mut src: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = src {
        if let Some(reason) = reason_of(e) {
            return Failure::new(reason, detail);
        }
        src = e.source();
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

/// The reason one link of the chain carries, if it is one we know. An `io::Error` is looked
/// into, since its `source()` skips the error it wraps: that is where rustls errors travel.
fn reason_of(e: &(dyn StdError + 'static)) -> Option<FailureReason> {
    if let Some(c) = e.downcast_ref::<CarriedFailure>() {
        return Some(c.0.reason);
    }
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(super::tls::rustls_reason(r));
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
