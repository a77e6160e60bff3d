//! `http`: one request over the cycle's family with reqwest. The family is held through
//! redirects: the client's resolver answers only the family's records, and a redirect to an IP
//! literal of the other family is refused.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{Check, CheckContext};
use crate::model::failure::{Failure, FailureReason};
use crate::model::family::Family;
use crate::model::outcome::{CheckOutput, Measurement, Observations};
use crate::model::target::{Host, Target};
use crate::net::guard::AddressPolicy;
use crate::net::http::{self, CarriedFailure, ClientOptions, Protocols, off_family};
use crate::net::resolver::DnsResolver;

/// The final response's status.
static STATUS: Measurement = Measurement {
    metric: "dualprobe_http_status_code",
    help: "Status of the last HTTP response",
    blackbox: Some(("probe_http_status_code", "Response HTTP status code")),
    probe_help: "",
    key: "http_status",
    describe: Some(describe_status),
};

static MEASURED: &[&Measurement] = &[&STATUS];

fn describe_status(status: i64) -> String {
    format!("HTTP {status}")
}

/// The `http` check.
pub(super) struct Http;

impl Check for Http {
    fn measurements(&self) -> &'static [&'static Measurement] {
        MEASURED
    }

    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput> {
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
                        remote: resp.remote_addr(),
                        ..Observations::default()
                    }
                    .measure(&STATUS, i64::from(status));
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
                Err(e) => CheckOutput::fail(http::classify(&e)),
            }
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
            let host = attempt.url().host_str().map(crate::model::target::Host::parse);
            // Every hop passes the policy first: literals are guarded, names must be allowed.
            if let (Some(p), Some(h)) = (&policy, &host)
                && let Err(f) = p.check_host(h)
            {
                return attempt.error(CarriedFailure(f));
            }
            if let Some(crate::model::target::Host::Ip(ip)) = &host
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
    http::build_client(ClientOptions {
        family: Some(family),
        resolver: resolver.clone(),
        policy,
        tls: Arc::clone(&target.tls.client_config),
        protocols: Protocols::Http2AndHttp1,
        timeout: target.timeout,
        pool: false,
        redirect: redirect_policy,
        alias: server_name_alias(target),
    })
}
