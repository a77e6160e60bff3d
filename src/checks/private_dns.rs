//! `private_dns`: every answer for a PrivateLink name must be a private address (RFC 1918, the
//! shared 100.64.0.0/10 range VPCs may use, IPv6 ULA fc00::/7, or one of the target's
//! `private_dns.cidrs`, e.g. the VPC's IPv6 /56). A public answer means the endpoint's private
//! DNS is off (or the VPC does not use Amazon DNS): reason `public_address`. Runs after `dns` and
//! uses its answers.

use std::any::Any;
use std::net::IpAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_saphyr::Spanned;

use crate::model::check_kind::{CheckKind, Layer};
use crate::model::failure::{Failure, FailureReason};
use crate::model::outcome::{CheckOutput, Observations};
use crate::model::target::Target;
use super::{Check, CheckContext, Configure, line_of};

/// The `private_dns` check.
pub struct PrivateDns;

/// The `private_dns:` section of a target.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    #[serde(default)]
    cidrs: Vec<Spanned<String>>,
}

/// What `private_dns` reads back: extra ranges it accepts besides RFC 1918 and ULA (the VPC's
/// CIDRs; discovery sets them from `DescribeVpcs`).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The extra private ranges.
    pub cidrs: Vec<ipnet::IpNet>,
}

/// The extra private ranges of `target` (none when it has no `private_dns:` section).
pub fn extra_cidrs(target: &Target) -> Vec<ipnet::IpNet> {
    target
        .settings
        .get::<Settings>(CheckKind::PrivateDns)
        .map(|s| s.cidrs.clone())
        .unwrap_or_default()
}

impl Configure for PrivateDns {
    type Raw = Raw;

    fn configure(
        raw: &Raw,
        field: &str,
        problem: &mut dyn FnMut(Option<u64>, String, String),
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let mut cidrs = Vec::new();
        let mut ok = true;
        for (i, c) in raw.cidrs.iter().enumerate() {
            match c.value.trim().parse::<ipnet::IpNet>() {
                Ok(n) => cidrs.push(n),
                Err(_) => {
                    ok = false;
                    problem(
                        line_of(c),
                        format!("{field}.cidrs[{i}]"),
                        format!(
                            "`{}` is not a CIDR like 10.0.0.0/16 or 2600:1f18:abcd:ef00::/56",
                            c.value
                        ),
                    );
                }
            }
        }
        ok.then(|| Arc::new(Settings { cidrs }) as Arc<dyn Any + Send + Sync>)
    }
}

/// True for RFC 1918, 100.64.0.0/10 (shared address space, allowed as a VPC CIDR) and
/// fc00::/7 (ULA) addresses, or any address inside `extra`.
pub fn is_private(addr: IpAddr, extra: &[ipnet::IpNet]) -> bool {
    if extra.iter().any(|n| n.contains(&addr)) {
        return true;
    }
    match addr {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4), extra);
            }
            (v6.segments()[0] & 0xfe00) == 0xfc00
        }
    }
}

impl Check for PrivateDns {

    fn layer(&self) -> Layer {
        Layer::Resolve
    }

    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            let addrs = match cx.addresses().await {
                Ok(a) => a,
                Err(f) => return CheckOutput::fail(f),
            };
            let obs = Observations {
                addresses: addrs.clone(),
                ..Observations::default()
            };
            let extra = extra_cidrs(cx.target);
            let public: Vec<String> = addrs
                .iter()
                .filter(|a| !is_private(**a, &extra))
                .map(ToString::to_string)
                .collect();
            if public.is_empty() {
                cx.debug(format!("all {} answers are private", addrs.len()));
                CheckOutput::pass(obs)
            } else {
                CheckOutput::fail(Failure::new(
                    FailureReason::PublicAddress,
                    format!(
                        "{} answered with public address(es) {}: private DNS of the endpoint is off",
                        cx.target.host,
                        public.join(", ")
                    ),
                ))
                .with(obs)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for a in [
            "10.0.1.5",
            "172.16.0.1",
            "172.31.255.1",
            "192.168.3.4",
            "100.64.0.1",
            "fd12::1",
            "fc00::5",
            "::ffff:10.1.2.3",
        ] {
            assert!(is_private(a.parse().unwrap(), &[]), "{a}");
        }
        for a in [
            "52.94.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2600:1f18::1",
            "8.8.8.8",
            "::ffff:52.1.1.1",
        ] {
            assert!(!is_private(a.parse().unwrap(), &[]), "{a}");
        }
        let vpc6: ipnet::IpNet = "2600:1f18:abcd:ef00::/56".parse().unwrap();
        assert!(is_private(
            "2600:1f18:abcd:ef01::5".parse().unwrap(),
            &[vpc6]
        ));
    }
}
