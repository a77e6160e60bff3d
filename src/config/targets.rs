//! Turns one raw target (or module) into a validated [`Target`]: host and port (from `aws:` when
//! set), checks in chain order, durations, families, TLS settings, expectations, and
//! each check kind's own section and validation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::problems::{
    Problems, check_endpoint_url, check_region, families_or_problem, line_of, parse_duration,
    parse_interval, resolve_path,
};
use super::raw::{RawAws, RawTarget};
use crate::checks::check_for;
use crate::model::aws::AwsService;
use crate::model::check_kind::{CheckKind, Layer};
use crate::model::family::Family;
use crate::model::target::{Expect, Expectations, Host, Target, TargetSource, TlsSettings};

pub(super) struct TargetDefaults<'a> {
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) families: &'a [Family],
    pub(super) base_dir: Option<&'a Path>,
    /// One TLS client config per (CA file, insecure) in this load: a config holds a copy of
    /// the roots and a session cache, too much to build per target.
    pub(super) tls_configs: std::cell::RefCell<HashMap<TlsKey, Arc<rustls::ClientConfig>>>,
}

/// What makes two targets' TLS client configurations the same: the CA file and insecure.
type TlsKey = (Option<PathBuf>, bool);

pub(super) fn build_target(
    p: &mut Problems,
    rt: &RawTarget,
    field: &str,
    d: &TargetDefaults<'_>,
) -> Option<Target> {
    let before = p.0.len();
    let name = rt.name.value.trim().to_string();
    if name.is_empty() {
        p.add(
            line_of(&rt.name),
            format!("{field}.name"),
            "must not be empty",
        );
    }
    let aws = rt.aws.as_ref().and_then(|a| build_aws(p, a, field));
    let aws_endpoint = aws
        .as_ref()
        .and_then(|a| crate::aws::endpoint_host_port(&a.endpoint));
    let host = match &rt.host {
        Some(h) if rt.aws.is_some() => {
            p.add(
                line_of(h),
                format!("{field}.host"),
                "must not be set with `aws:`: the host is the SDK's endpoint (override it with `aws.endpoint_url`)",
            );
            Host::Name(String::new())
        }
        None if rt.aws.is_some() => match &aws_endpoint {
            Some((h, _)) => Host::parse(h),
            None => Host::Name(String::new()),
        },
        Some(h) if !h.value.trim().is_empty() => Host::parse(h.value.trim()),
        Some(h) => {
            p.add(line_of(h), format!("{field}.host"), "must not be empty");
            Host::Name(String::new())
        }
        None => {
            p.add(line_of(&rt.name), format!("{field}.host"), "is required");
            Host::Name(String::new())
        }
    };
    if let Host::Name(n) = &host
        && !n.is_empty()
    {
        let line = rt.host.as_ref().and_then(line_of);
        if n.contains('/') {
            p.add(
                line,
                format!("{field}.host"),
                format!(
                    "`{n}` is not a host name or IP address (a host, not a URL: the path goes in `http.path`, the port in `port:`)"
                ),
            );
        } else if n.contains(':') {
            p.add(
                line,
                format!("{field}.host"),
                format!("`{n}` is not a host name or IP address (put the port in `port:`)"),
            );
        } else if let Err(e) = Host::check_name(n) {
            p.add(line, format!("{field}.host"), e);
        }
    }

    // A guarded literal is refused on every cycle unless the target says so: say it once, here.
    let allow_metadata_address = rt.allow_metadata_address.unwrap_or(false);
    let host_line = rt.host.as_ref().and_then(line_of).or(line_of(&rt.name));
    match &host {
        Host::Ip(ip) if !allow_metadata_address => {
            if let Some(why) = crate::net::guard::forbidden(*ip) {
                p.add(
                    host_line,
                    format!("{field}.host"),
                    format!(
                        "{why}: no check may reach it unless the target says `allow_metadata_address: true`"
                    ),
                );
            }
        }
        _ if allow_metadata_address
            && !matches!(&host, Host::Ip(ip) if crate::net::guard::forbidden(*ip).is_some()) =>
        {
            p.add(
                host_line,
                format!("{field}.allow_metadata_address"),
                format!(
                    "only applies to a guarded IP literal host (the ECS agent at 169.254.170.2, the instance metadata service); `{host}` is not one"
                ),
            );
        }
        _ => {}
    }

    let mut checks = Vec::new();
    match &rt.checks {
        None => {
            checks.extend([CheckKind::Dns, CheckKind::Tcp]);
            match aws.as_ref().map(|a| a.service) {
                Some(AwsService::S3) => checks.extend([CheckKind::Tls, CheckKind::S3]),
                Some(AwsService::Ec2) => checks.extend([CheckKind::Tls, CheckKind::Ec2]),
                None => {}
            }
        }
        Some(list) => {
            if list.value.is_empty() {
                p.add(
                    line_of(list),
                    format!("{field}.checks"),
                    "must name at least one check",
                );
            }
            for (j, c) in list.value.iter().enumerate() {
                match CheckKind::from_name(c.value.trim()) {
                    Some(k) if checks.contains(&k) => p.add(
                        line_of(c),
                        format!("{field}.checks[{j}]"),
                        format!("`{}` is listed twice", c.value),
                    ),
                    Some(k) => checks.push(k),
                    None => p.add(
                        line_of(c),
                        format!("{field}.checks[{j}]"),
                        format!(
                            "unknown check `{}`; known checks: {}",
                            c.value,
                            CheckKind::all_names().join(", ")
                        ),
                    ),
                }
            }
        }
    }
    checks.sort();
    // An IP literal needs no lookup: DNS is skipped for it.
    if matches!(host, Host::Ip(_)) {
        checks.retain(|k| check_for(*k).layer() != Layer::Resolve);
    }

    let interval =
        parse_interval(p, &rt.interval, &format!("{field}.interval")).unwrap_or(d.interval);
    let timeout = parse_duration(p, &rt.timeout, &format!("{field}.timeout")).unwrap_or(d.timeout);
    // With neither set here, the top-level check already reported it.
    let overrides = rt.timeout.is_some() || rt.interval.is_some();
    if timeout >= interval && overrides {
        p.add(
            rt.timeout
                .as_ref()
                .or(rt.interval.as_ref())
                .and_then(line_of)
                .or(line_of(&rt.name)),
            format!("{field}.timeout"),
            format!(
                "must be less than interval ({} >= {})",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ),
        );
    }
    let mut families = match &rt.families {
        None => d.families.to_vec(),
        Some(f) => families_or_problem(p, f, &format!("{field}.families")),
    };
    if let Host::Ip(ip) = host {
        families.retain(|f| *f == Family::of(ip));
        if families.is_empty() {
            p.add(
                rt.families.as_ref().and_then(line_of).or(line_of(&rt.name)),
                format!("{field}.families"),
                format!(
                    "{ip} is an {} address but that family is not probed",
                    Family::of(ip)
                ),
            );
        }
    }

    let has_tls = checks.contains(&CheckKind::Tls);
    let port = match &rt.port {
        Some(pv) if pv.value == 0 => {
            p.add(line_of(pv), format!("{field}.port"), "must be 1-65535");
            0
        }
        Some(pv) => pv.value,
        None if aws_endpoint.is_some() => aws_endpoint.as_ref().map_or(443, |(_, port)| *port),
        None if has_tls => 443,
        None => rt.section_default_port().unwrap_or(443),
    };

    let raw_tls = rt.tls.as_ref();
    let ca_file = raw_tls
        .and_then(|t| t.ca_file.as_ref())
        .map(|c| (resolve_path(d.base_dir, &c.value), line_of(c)));
    let insecure = raw_tls.map(|t| t.insecure_skip_verify).unwrap_or(false);
    let key = (ca_file.as_ref().map(|(p, _)| p.clone()), insecure);
    let cached = d.tls_configs.borrow().get(&key).cloned();
    let built = match cached {
        Some(c) => Ok(c),
        None => crate::net::tls::client_config(key.0.as_deref(), insecure).map(|c| {
            let c = Arc::new(c);
            d.tls_configs.borrow_mut().insert(key, Arc::clone(&c));
            c
        }),
    };
    let client_config = match built {
        Ok(c) => c,
        Err(e) => {
            p.add(
                ca_file.as_ref().and_then(|(_, l)| *l),
                format!("{field}.tls.ca_file"),
                e,
            );
            return None;
        }
    };
    let tls = TlsSettings {
        server_name: raw_tls.and_then(|t| t.server_name.clone()),
        insecure_skip_verify: insecure,
        client_config,
    };
    let expect = expectations(p, rt.expect.as_ref(), &families, field);
    let target = Target {
        name,
        host,
        port,
        checks,
        families,
        interval,
        timeout,
        addresses: rt.addresses.unwrap_or_default(),
        tls,
        expect,
        source: TargetSource::Config,
        aws,
        allow_metadata_address,
        settings: rt.check_settings(field, &mut |line, field, message| {
            p.add(line, field, message)
        }),
    };
    for k in &target.checks {
        if let Err(msg) = check_for(*k).validate(&target) {
            p.add(
                line_of(&rt.name),
                format!("{field}.checks"),
                format!("{}: {msg}", k.name()),
            );
        }
    }
    (p.0.len() == before).then_some(target)
}

fn build_aws(
    p: &mut Problems,
    raw: &Spanned<RawAws>,
    field: &str,
) -> Option<crate::aws::AwsSettings> {
    use crate::aws::Ec2Operation;
    let a = &raw.value;
    let before = p.0.len();
    let service = AwsService::parse(a.service.value.trim());
    if service.is_none() {
        p.add(
            line_of(&a.service),
            format!("{field}.aws.service"),
            format!(
                "unknown service `{}`; known services: s3, ec2",
                a.service.value
            ),
        );
    }
    let region = check_region(p, &a.region, format!("{field}.aws.region"));
    let dual_stack = a.dual_stack.unwrap_or(true);
    let endpoint_url = a.endpoint_url.as_ref().map(|u| u.value.trim().to_string());
    check_endpoint_url(
        p,
        &a.endpoint_url,
        dual_stack,
        &format!("{field}.aws.endpoint_url"),
    );
    let ec2_operation = match &a.operation {
        None => Ec2Operation::default(),
        Some(o) => match (service, Ec2Operation::parse(o.value.trim())) {
            (Some(AwsService::Ec2), Some(op)) => op,
            (Some(AwsService::Ec2), None) => {
                let known: Vec<&str> = Ec2Operation::ALL.iter().map(|o| o.as_str()).collect();
                p.add(
                    line_of(o),
                    format!("{field}.aws.operation"),
                    format!(
                        "unknown operation `{}`; known: {}",
                        o.value,
                        known.join(", ")
                    ),
                );
                Ec2Operation::default()
            }
            _ => {
                p.add(
                    line_of(o),
                    format!("{field}.aws.operation"),
                    "only applies to `service: ec2`",
                );
                Ec2Operation::default()
            }
        },
    };
    if p.0.len() != before {
        return None;
    }
    let (service, region) = (service?, region?);
    match crate::aws::resolve_endpoint(service, &region, dual_stack, endpoint_url.as_deref()) {
        Ok(endpoint) => Some(crate::aws::AwsSettings {
            service,
            region,
            dual_stack,
            endpoint_url,
            ec2_operation,
            endpoint,
            credentials: None,
        }),
        Err(e) => {
            p.add(
                line_of(raw),
                format!("{field}.aws"),
                format!("no endpoint: {e}"),
            );
            None
        }
    }
}

/// `expect:` with its `via:` checked: only IPv6 has a path to assert, and only a reachable
/// IPv6 target (probed over IPv6) has one.
fn expectations(
    p: &mut Problems,
    raw: Option<&super::raw::RawExpect>,
    families: &[Family],
    field: &str,
) -> Expectations {
    let ipv4 = raw.and_then(|e| e.ipv4).unwrap_or_default();
    let ipv6 = raw.and_then(|e| e.ipv6).unwrap_or_default();
    let mut ipv6_via = None;
    if let Some(via) = raw.and_then(|e| e.via.as_ref()) {
        if let Some(v4) = &via.value.ipv4 {
            p.add(
                line_of(v4),
                format!("{field}.expect.via.ipv4"),
                "IPv4 addresses are never synthesized: `via` applies to ipv6 only",
            );
        }
        if let Some(kind) = via.value.ipv6 {
            if ipv6 != Expect::Reachable {
                p.add(
                    line_of(via),
                    format!("{field}.expect.via.ipv6"),
                    format!(
                        "asserts the path of a reachable target, but expect.ipv6 is `{}`",
                        ipv6.as_str()
                    ),
                );
            } else if !families.contains(&Family::Ipv6) {
                p.add(
                    line_of(via),
                    format!("{field}.expect.via.ipv6"),
                    "the target is not probed over ipv6 (families)",
                );
            } else {
                ipv6_via = Some(kind);
            }
        }
    }
    Expectations {
        ipv4,
        ipv6,
        ipv6_via,
    }
}
