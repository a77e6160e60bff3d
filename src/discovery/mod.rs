//! Targets found rather than written: AWS PrivateLink endpoints from a CloudFormation template
//! ([`cloudformation`]) or from `ec2:DescribeVpcEndpoints` ([`vpc_endpoints`]). Both produce
//! [`Discovered`] endpoints, which [`to_targets`] turns into probe targets with the config's
//! defaults, and [`render_discovered`] prints for `dualprobe targets`.

pub mod cloudformation;
pub mod health;
pub(crate) mod vpc_endpoints;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::model::check_kind::CheckKind;
use crate::model::family::Family;
use crate::model::target::{
    AddressSelection, CheckSettings, Expectations, Host, Target, TargetSource, TlsSettings,
};

/// The `discovery:` section.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryConfig {
    /// `cloudformation:`: read a template once per (re)load.
    pub cloudformation: Option<CloudFormationDiscovery>,
    /// `vpc_endpoints:`: ask EC2 for the VPC's endpoints every `refresh`.
    pub vpc_endpoints: Option<VpcEndpointsDiscovery>,
}

/// `discovery.cloudformation`.
#[derive(Debug, Clone)]
pub struct CloudFormationDiscovery {
    /// The template file (YAML or JSON), relative paths resolved against the config's folder.
    pub template: PathBuf,
    /// The region `${AWS::Region}` stands for.
    pub region: String,
}

/// `discovery.vpc_endpoints`.
#[derive(Debug, Clone)]
pub struct VpcEndpointsDiscovery {
    /// The VPC (from config or `DUALPROBE_VPC_ID`).
    pub vpc_id: String,
    /// The region of the VPC and of the EC2 endpoint asked.
    pub region: String,
    /// How often to ask again.
    pub refresh: Duration,
    /// Use EC2's dual-stack endpoint (`ec2.R.api.aws`), the default: reachable over IPv6 from a
    /// subnet without IPv4 egress.
    pub dual_stack: bool,
    /// An EC2 endpoint override (without `dual_stack`).
    pub endpoint_url: Option<String>,
    /// An extra CA (PEM) for the EC2 endpoint (tests, TLS-inspecting proxies).
    pub ca_file: Option<PathBuf>,
}

/// Whether the endpoint is an interface (PrivateLink ENIs, private DNS) or a gateway (route
/// table entries only; the public name is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// `Interface`: private addresses behind the service's name when private DNS is on.
    Interface,
    /// `Gateway` (S3, DynamoDB): public addresses reached through the VPC's route tables,
    /// IPv4 only.
    Gateway,
}

impl EndpointKind {
    /// `interface` / `gateway`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Interface => "interface",
            EndpointKind::Gateway => "gateway",
        }
    }
}

/// One name to probe, found for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The target name (unique within one discovery run).
    pub name: String,
    /// Where it came from: the template's logical ID or the endpoint ID.
    pub origin: String,
    /// `com.amazonaws.REGION.SERVICE`.
    pub service_name: String,
    /// Interface or gateway.
    pub kind: EndpointKind,
    /// The DNS name to probe.
    pub host: String,
    /// The families probed: both for an interface endpoint's names (one of them may be
    /// expected to have no record), IPv4 for a gateway endpoint's regional name.
    pub families: Vec<Family>,
    /// What each family of this name should do, from the endpoint's `IpAddressType` and
    /// `DnsOptions.DnsRecordIpType` ([`name_expectations`]).
    pub expect: Expectations,
    /// `private_dns` applies (interface endpoints whose name is answered by the endpoint).
    pub check_private: bool,
    /// The template's `Condition:` the endpoint depends on, if any.
    pub condition: Option<String>,
    /// The VPC's CIDRs (when known), which `private_dns` accepts besides RFC 1918 and ULA.
    pub cidrs: Vec<ipnet::IpNet>,
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The template could not be read or parsed.
    #[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Template {
        /// The template file.
        path: String,
        /// What is wrong (with the line when known).
        message: String,
    },
    /// An EC2 call failed (or its client could not be built).
    #[error("{operation} for {vpc_id}: {failure}")]
    Api {
        /// What failed: the IAM action of the call (`ec2:DescribeVpcEndpoints`,
        /// `ec2:DescribeVpcs`), or `ec2 client setup` before any call.
        operation: &'static str,
        /// The VPC asked about.
        vpc_id: String,
        /// The classified failure.
        failure: crate::model::failure::Failure,
    },
}

/// The private DNS name AWS gives an interface endpoint of `service` (the part after
/// `com.amazonaws.REGION.`), or `None` for services with no known name. Wildcard names
/// (`*.dkr.ecr...`) are returned with a concrete first label (`dualprobe`), which the wildcard
/// record answers.
pub fn private_dns_name(service: &str, region: &str) -> Option<String> {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    let name = match service {
        "" => return None,
        "ecr.api" => format!("api.ecr.{region}.{suffix}"),
        "ecr.dkr" => format!("dualprobe.dkr.ecr.{region}.{suffix}"),
        "ecs-agent" => format!("ecs-a.{region}.{suffix}"),
        "ecs-telemetry" => format!("ecs-t.{region}.{suffix}"),
        "kinesis-streams" => format!("kinesis.{region}.{suffix}"),
        "execute-api" => format!("dualprobe.execute-api.{region}.{suffix}"),
        "s3" => format!("s3.{region}.{suffix}"),
        s if s.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.')) => {
            return None;
        }
        // logs, ssm, ssmmessages, ec2messages, secretsmanager, ecs, sts, kms, monitoring, sqs,
        // sns, events, ec2, elasticloadbalancing, xray, ...: SERVICE.REGION.amazonaws.com.
        s => format!("{s}.{region}.{suffix}"),
    };
    Some(name)
}

/// Splits `com.amazonaws.REGION.SERVICE` into (region, service).
pub fn split_service_name(service_name: &str) -> Option<(&str, &str)> {
    let rest = service_name
        .strip_prefix("com.amazonaws.")
        .or_else(|| service_name.strip_prefix("cn.com.amazonaws."))?;
    let (region, service) = rest.split_once('.')?;
    (!region.is_empty() && !service.is_empty()).then_some((region, service))
}

/// A target name from a service: `vpce-ecr-api`, `vpce-s3-gateway`.
pub fn target_name(service: &str, kind: EndpointKind) -> String {
    let base: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    match kind {
        EndpointKind::Interface => format!("vpce-{base}"),
        EndpointKind::Gateway => format!("vpce-{base}-gateway"),
    }
}

/// Turns discovered endpoints into targets with the config's defaults: interface endpoints get
/// `[dns, private_dns, tcp, tls]`, gateway endpoints `[dns, tcp, tls]` over IPv4, port 443.
/// Families are the endpoint's, intersected with the config's. Names already used by
/// configured targets are skipped (configured targets win).
pub fn to_targets(
    found: &[Discovered],
    defaults: &TargetDefaults,
    source: TargetSource,
) -> Vec<Arc<Target>> {
    let client_config = match crate::net::tls::client_config(None, false) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!("TLS setup for discovered targets: {e}");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(found.len());
    for d in found {
        if defaults.taken.contains(&d.name) || out.iter().any(|t: &Arc<Target>| t.name == d.name) {
            continue;
        }
        let families: Vec<Family> = d
            .families
            .iter()
            .copied()
            .filter(|f| defaults.families.contains(f))
            .collect();
        if families.is_empty() {
            continue;
        }
        let mut checks = vec![CheckKind::Dns, CheckKind::Tcp, CheckKind::Tls];
        if d.check_private {
            checks.insert(1, CheckKind::PrivateDns);
        }
        out.push(Arc::new(Target {
            name: d.name.clone(),
            host: Host::parse(&d.host),
            port: 443,
            checks,
            families,
            interval: defaults.interval,
            timeout: defaults.timeout,
            addresses: AddressSelection::First,
            tls: TlsSettings {
                server_name: None,
                insecure_skip_verify: false,
                client_config: Arc::clone(&client_config),
            },
            expect: d.expect,
            source,
            aws: None,
            allow_metadata_address: false,
            settings: private_dns_settings(&d.cidrs),
        }));
    }
    out
}

/// Which families an interface endpoint's DNS name answers, as AWS documents it for
/// `IpAddressType` (`ipv4`, `dualstack`, `ipv6`) and `DnsOptions.DnsRecordIpType` (`ipv4`,
/// `dualstack`, `ipv6`, `service-defined`; by default the endpoint's own type): a family with
/// records is expected `reachable`, one without `nodata`, so an IPv4-only endpoint's missing
/// AAAA is what it should be, not an alert, and an AAAA appearing there is. `service-defined`
/// gives the private DNS name A records only and the regional and zonal `vpce-…` names both.
/// Both families are probed; the config's `families` still narrow that. Values AWS may add
/// later are not judged (`any`).
pub fn name_expectations(
    ip_address_type: Option<&str>,
    dns_record_ip_type: Option<&str>,
    private_name: bool,
) -> (Vec<Family>, Expectations) {
    use crate::model::target::Expect::{Any, Nodata, Reachable};
    let ip = ip_address_type.unwrap_or("ipv4").to_ascii_lowercase();
    let records = dns_record_ip_type.map_or_else(|| ip.clone(), str::to_ascii_lowercase);
    // (IPv4, IPv6) per source: addresses on the endpoint's interfaces, then DNS records.
    let pair = |t: &str, private_name: bool| match t {
        "ipv4" => Some((true, false)),
        "dualstack" => Some((true, true)),
        "ipv6" => Some((false, true)),
        "service-defined" if private_name => Some((true, false)),
        "service-defined" => Some((true, true)),
        _ => None,
    };
    // `service-defined` is a record type only; as an address type it is unknown.
    let (Some((has4, has6)), Some((rec4, rec6))) = (
        pair(&ip, false).filter(|_| ip != "service-defined"),
        pair(&records, private_name),
    ) else {
        let unjudged = Expectations {
            ipv4: Any,
            ipv6: Any,
            ipv6_via: None,
        };
        return (Family::ALL.to_vec(), unjudged);
    };
    let judge = |records: bool, addresses: bool| {
        if records && addresses {
            Reachable
        } else {
            Nodata
        }
    };
    (
        Family::ALL.to_vec(),
        Expectations {
            ipv4: judge(rec4, has4),
            ipv6: judge(rec6, has6),
            ipv6_via: None,
        },
    )
}

/// What discovered targets take from the config: its defaults, and the names configured
/// targets already use (configured targets win).
#[derive(Debug, Clone)]
pub struct TargetDefaults {
    /// The config's default interval.
    pub interval: std::time::Duration,
    /// The config's default per-check timeout.
    pub timeout: std::time::Duration,
    /// The families the config probes; an endpoint's families are intersected with them.
    pub families: Vec<Family>,
    /// Names of configured targets.
    pub taken: std::collections::HashSet<String>,
}

/// The VPC's CIDRs, which `private_dns` accepts as private.
fn private_dns_settings(cidrs: &[ipnet::IpNet]) -> CheckSettings {
    let mut s = CheckSettings::default();
    s.set(
        CheckKind::PrivateDns,
        Arc::new(crate::checks::private_dns::Settings {
            cidrs: cidrs.to_vec(),
        }),
    );
    s
}

/// What one discovery attempt produced: the targets, and how many endpoints (template resources
/// or VPC endpoint IDs) they came from, which is what discovery health reports.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The targets (configured names removed).
    pub targets: Vec<Arc<Target>>,
    /// Distinct endpoints that yielded at least one name.
    pub endpoints: usize,
}

impl Found {
    fn new(found: &[Discovered], defaults: &TargetDefaults, source: TargetSource) -> Found {
        let mut origins: Vec<&str> = found.iter().map(|d| d.origin.as_str()).collect();
        origins.sort_unstable();
        origins.dedup();
        Found {
            targets: to_targets(found, defaults, source),
            endpoints: origins.len(),
        }
    }
}

/// `discovery.cloudformation` as targets (source `cloudformation`); none when the section is
/// absent. The template is read again on every call (call it on each (re)load).
pub fn discover_cloudformation(
    settings: &DiscoveryConfig,
    defaults: &TargetDefaults,
) -> Result<Vec<Arc<Target>>, DiscoveryError> {
    Ok(discover_cloudformation_found(settings, defaults)?
        .map(|f| f.targets)
        .unwrap_or_default())
}

/// [`discover_cloudformation`] with the endpoint count; `None` when the section is absent.
pub fn discover_cloudformation_found(
    settings: &DiscoveryConfig,
    defaults: &TargetDefaults,
) -> Result<Option<Found>, DiscoveryError> {
    let Some(c) = &settings.cloudformation else {
        return Ok(None);
    };
    let found = cloudformation::discover_template_file(&c.template, &c.region)?;
    Ok(Some(Found::new(
        &found,
        defaults,
        TargetSource::Cloudformation,
    )))
}

/// One round of `discovery.vpc_endpoints` as targets (source `vpc_endpoints`); none
/// when the section is absent. Call it at start and every `refresh`; `credentials` replaces the
/// standard chain (tests).
pub async fn discover_vpc_endpoints(
    settings: &DiscoveryConfig,
    defaults: &TargetDefaults,
    resolver: &crate::net::resolver::DnsResolver,
    credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
) -> Result<Vec<Arc<Target>>, DiscoveryError> {
    Ok(
        discover_vpc_endpoints_found(settings, defaults, resolver, credentials)
            .await?
            .map(|f| f.targets)
            .unwrap_or_default(),
    )
}

/// [`discover_vpc_endpoints`] with the endpoint count; `None` when the section is absent.
pub async fn discover_vpc_endpoints_found(
    settings: &DiscoveryConfig,
    defaults: &TargetDefaults,
    resolver: &crate::net::resolver::DnsResolver,
    credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
) -> Result<Option<Found>, DiscoveryError> {
    let Some(v) = &settings.vpc_endpoints else {
        return Ok(None);
    };
    let client = vpc_endpoints::VpcEndpointsClient::new(v, resolver, credentials).await?;
    let found = client.discover().await?;
    Ok(Some(Found::new(
        &found,
        defaults,
        TargetSource::VpcEndpoints,
    )))
}

/// What `dualprobe targets` prints: one line per discovered name, conditional endpoints marked.
pub fn render_discovered(found: &[Discovered]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} endpoint target(s)", found.len());
    for d in found {
        // `ipv4,ipv6:nodata`: the families probed, with what is expected where not reachable.
        let fams: Vec<String> = d
            .families
            .iter()
            .map(|f| match d.expect.for_family(*f) {
                crate::model::target::Expect::Reachable => f.as_str().to_string(),
                other => format!("{f}:{}", other.as_str()),
            })
            .collect();
        let checks = if d.check_private {
            "dns,private_dns,tcp,tls"
        } else {
            "dns,tcp,tls"
        };
        let _ = write!(
            s,
            "{:<28} {:<9} {:<44} {:<16} {:<24} from {} ({})",
            d.name,
            d.kind.as_str(),
            d.host,
            fams.join(","),
            checks,
            d.origin,
            d.service_name
        );
        if let Some(c) = &d.condition {
            let _ = write!(s, " if {c}");
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `IpAddressType` × `DnsRecordIpType` AWS allows, for the private DNS name and for
    /// a `vpce-…` name: (IPv4, IPv6) expectations.
    /// `IpAddressType`, `DnsRecordIpType`, private DNS name?, (IPv4, IPv6) expected.
    type Row<'a> = (Option<&'a str>, Option<&'a str>, bool, (&'a str, &'a str));

    #[test]
    fn endpoint_families_follow_aws() {
        #[rustfmt::skip]
        let rows: &[Row] = &[
            (None, None, true, ("reachable", "nodata")),
            (Some("ipv4"), None, false, ("reachable", "nodata")),
            (Some("ipv4"), Some("ipv4"), true, ("reachable", "nodata")),
            (Some("ipv4"), Some("service-defined"), false, ("reachable", "nodata")),
            (Some("dualstack"), None, true, ("reachable", "reachable")),
            (Some("dualstack"), Some("dualstack"), false, ("reachable", "reachable")),
            (Some("dualstack"), Some("ipv4"), true, ("reachable", "nodata")),
            (Some("dualstack"), Some("ipv6"), true, ("nodata", "reachable")),
            (Some("dualstack"), Some("service-defined"), true, ("reachable", "nodata")),
            (Some("dualstack"), Some("service-defined"), false, ("reachable", "reachable")),
            (Some("ipv6"), None, true, ("nodata", "reachable")),
            (Some("ipv6"), Some("ipv6"), false, ("nodata", "reachable")),
            (Some("ipv6"), Some("service-defined"), false, ("nodata", "reachable")),
            (Some("Dualstack"), Some("Service-Defined"), false, ("reachable", "reachable")),
            (Some("ipv5"), None, true, ("any", "any")),
        ];
        for (ip, rec, private, (want4, want6)) in rows {
            let (families, e) = name_expectations(*ip, *rec, *private);
            assert_eq!(families, Family::ALL.to_vec());
            assert_eq!(
                (e.ipv4.as_str(), e.ipv6.as_str()),
                (*want4, *want6),
                "{ip:?} {rec:?} private={private}"
            );
        }
    }

    #[test]
    fn private_dns_names_follow_aws() {
        let r = "eu-west-1";
        assert_eq!(
            private_dns_name("logs", r).unwrap(),
            "logs.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            private_dns_name("ecr.api", r).unwrap(),
            "api.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            private_dns_name("ecr.dkr", r).unwrap(),
            "dualprobe.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            private_dns_name("ssmmessages", r).unwrap(),
            "ssmmessages.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            private_dns_name("secretsmanager", r).unwrap(),
            "secretsmanager.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            private_dns_name("sts", "cn-north-1").unwrap(),
            "sts.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(private_dns_name("bad/name", r), None);
        assert_eq!(
            split_service_name("com.amazonaws.us-east-1.ecr.dkr"),
            Some(("us-east-1", "ecr.dkr"))
        );
        assert_eq!(split_service_name("com.example.x"), None);
        assert_eq!(
            target_name("ecr.api", EndpointKind::Interface),
            "vpce-ecr-api"
        );
        assert_eq!(target_name("s3", EndpointKind::Gateway), "vpce-s3-gateway");
    }
}
