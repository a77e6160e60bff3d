//! Targets from `ec2:DescribeVpcEndpoints`: every available endpoint of the VPC, each of its
//! DNS entries (the regional `vpce-….SERVICE.R.vpce.amazonaws.com`, the zonal
//! `vpce-…-AZ.SERVICE.R.vpce.amazonaws.com`, and the private DNS name such as
//! `logs.R.amazonaws.com`) becoming one target; gateway endpoints (no DNS entries) become the
//! regional service name over IPv4. The VPC's CIDRs (from `DescribeVpcs`) are attached so
//! `private_dns` accepts the VPC's own IPv6 addresses. Called again every `refresh`.

use std::sync::Arc;

use aws_sdk_ec2::types::{Filter, IpAddressType, Vpc, VpcEndpoint, VpcEndpointType};
use aws_sdk_s3::config::SharedCredentialsProvider;

use super::{
    Discovered, DiscoveryError, EndpointKind, VpcEndpointsDiscovery, name_expectations,
    private_dns_name, split_service_name, target_name,
};
use crate::aws::clients::{ClientParts, default_credentials};
use crate::aws::connector::{AwsHttpClient, AwsHttpOptions};
use crate::aws::errors;
use crate::aws::{AwsService, AwsSettings, Ec2Operation};
use crate::model::failure::{Failure, FailureReason};
use crate::model::family::Family;
use crate::model::target::Expectations;
use crate::net::resolver::DnsResolver;

/// An EC2 client for discovery: both families (IPv6 first), connections kept between calls.
pub struct VpcEndpointsClient {
    client: aws_sdk_ec2::Client,
    vpc_id: String,
}

impl VpcEndpointsClient {
    /// Builds the client; `credentials` replaces the standard chain (tests, embedders).
    pub async fn new(
        settings: &VpcEndpointsDiscovery,
        resolver: &DnsResolver,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Result<VpcEndpointsClient, DiscoveryError> {
        let api = |failure: Failure| DiscoveryError::Api {
            operation: "ec2 client setup",
            vpc_id: settings.vpc_id.clone(),
            failure,
        };
        let tls = crate::net::tls::client_config(settings.ca_file.as_deref(), false)
            .map_err(|e| api(Failure::new(FailureReason::Other, e)))?;
        let timeout = std::time::Duration::from_secs(20);
        let http = AwsHttpClient::new(AwsHttpOptions {
            family: None,
            resolver: resolver.clone(),
            policy: None,
            tls: Arc::new(tls),
            timeout,
            connect_port: None,
            pool: true,
        })
        .map_err(api)?;
        let credentials = match credentials {
            Some(c) => c,
            None => default_credentials(&settings.region, resolver)
                .await
                .map_err(api)?,
        };
        let endpoint = crate::aws::resolve_endpoint(
            AwsService::Ec2,
            &settings.region,
            settings.dual_stack,
            settings.endpoint_url.as_deref(),
        )
        .map_err(|e| api(Failure::new(FailureReason::Other, e.to_string())))?;
        let parts = ClientParts {
            http,
            credentials,
            settings: AwsSettings {
                service: AwsService::Ec2,
                region: settings.region.clone(),
                dual_stack: settings.dual_stack,
                endpoint_url: settings.endpoint_url.clone(),
                ec2_operation: Ec2Operation::default(),
                endpoint,
                credentials: None,
            },
            timeout,
        };
        Ok(VpcEndpointsClient {
            client: parts.ec2().client,
            vpc_id: settings.vpc_id.clone(),
        })
    }

    /// One round: the VPC's endpoints and CIDRs, turned into names to probe.
    pub async fn discover(&self) -> Result<Vec<Discovered>, DiscoveryError> {
        // The error names the call that failed: the IAM action a denial is about.
        let api = |operation: &'static str, failure: Failure| DiscoveryError::Api {
            operation,
            vpc_id: self.vpc_id.clone(),
            failure,
        };
        let mut endpoints = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .describe_vpc_endpoints()
                .filters(
                    Filter::builder()
                        .name("vpc-id")
                        .values(&self.vpc_id)
                        .build(),
                )
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| api("ec2:DescribeVpcEndpoints", errors::classify(&e)))?;
            endpoints.extend(out.vpc_endpoints.unwrap_or_default());
            token = out.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        let vpcs = self
            .client
            .describe_vpcs()
            .vpc_ids(&self.vpc_id)
            .send()
            .await
            .map_err(|e| api("ec2:DescribeVpcs", errors::classify(&e)))?;
        let cidrs = vpc_cidrs(&vpcs.vpcs.unwrap_or_default());
        let mut found = from_endpoints(&endpoints);
        for d in &mut found {
            d.cidrs = cidrs.clone();
        }
        Ok(found)
    }
}

/// The IPv4 and IPv6 CIDRs of `DescribeVpcs` items (unparsable blocks skipped).
pub fn vpc_cidrs(vpcs: &[Vpc]) -> Vec<ipnet::IpNet> {
    let mut cidrs = Vec::new();
    for vpc in vpcs {
        for a in vpc.cidr_block_association_set() {
            cidrs.extend(a.cidr_block().and_then(|c| c.parse::<ipnet::IpNet>().ok()));
        }
        for a in vpc.ipv6_cidr_block_association_set() {
            cidrs.extend(
                a.ipv6_cidr_block()
                    .and_then(|c| c.parse::<ipnet::IpNet>().ok()),
            );
        }
    }
    cidrs
}

/// Turns `DescribeVpcEndpoints` items into names to probe (see the module doc). Endpoints not
/// `available` are skipped; names are made unique by appending the endpoint ID.
pub fn from_endpoints(endpoints: &[VpcEndpoint]) -> Vec<Discovered> {
    let mut out: Vec<Discovered> = Vec::new();
    for ep in endpoints {
        // The API answers `available` (lower case, as in the API reference), which the SDK's
        // enum (`Available`) does not match; compare the text.
        if ep
            .state
            .as_ref()
            .is_some_and(|s| !s.as_str().eq_ignore_ascii_case("available"))
        {
            continue;
        }
        let id = ep.vpc_endpoint_id.clone().unwrap_or_default();
        let Some(service_name) = ep.service_name.clone() else {
            continue;
        };
        let Some((region, service)) = split_service_name(&service_name) else {
            continue;
        };
        let kind = match ep.vpc_endpoint_type {
            Some(VpcEndpointType::Interface) => EndpointKind::Interface,
            Some(VpcEndpointType::Gateway) => EndpointKind::Gateway,
            _ => continue,
        };
        let ip_type = ep.ip_address_type.as_ref().map(IpAddressType::as_str);
        let record_type = ep
            .dns_options
            .as_ref()
            .and_then(|o| o.dns_record_ip_type.as_ref())
            .map(|t| t.as_str());
        let mut push = |name: String, host: String, private_name: bool| {
            let (families, expect) = match kind {
                // A gateway endpoint is a route, not a name: the regional name over IPv4.
                EndpointKind::Gateway => (vec![Family::Ipv4], Expectations::default()),
                EndpointKind::Interface => name_expectations(ip_type, record_type, private_name),
            };
            let name = if out.iter().any(|d| d.name == name) {
                format!("{name}-{id}")
            } else {
                name
            };
            out.push(Discovered {
                name,
                origin: id.clone(),
                service_name: service_name.clone(),
                kind,
                host,
                families,
                expect,
                check_private: kind == EndpointKind::Interface,
                condition: None,
                cidrs: Vec::new(),
            });
        };
        let base = target_name(service, kind);
        if kind == EndpointKind::Gateway {
            if let Some(host) = private_dns_name(service, region) {
                push(base, host, true);
            }
            continue;
        }
        let entries: Vec<String> = ep
            .dns_entries
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.dns_name.clone())
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        // The regional name's first label, e.g. `vpce-0abc-1def`; zonal names extend it.
        let regional_label = entries
            .iter()
            .filter(|n| n.ends_with(".vpce.amazonaws.com") || n.ends_with(".vpce.amazonaws.com.cn"))
            .filter_map(|n| n.split('.').next())
            .min_by_key(|l| l.len())
            .map(str::to_string);
        for name in entries {
            let host = match name.strip_prefix("*.") {
                Some(rest) => format!("dualprobe.{rest}"),
                None => name.clone(),
            };
            let first = name.split('.').next().unwrap_or_default();
            let is_vpce =
                name.ends_with(".vpce.amazonaws.com") || name.ends_with(".vpce.amazonaws.com.cn");
            let target = if !is_vpce {
                base.clone()
            } else {
                match regional_label
                    .as_deref()
                    .and_then(|r| first.strip_prefix(r))
                {
                    Some("") | None => format!("{base}-regional"),
                    Some(az) => format!("{base}{az}"),
                }
            };
            push(target, host, !is_vpce);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{DnsEntry, State};

    fn dns(name: &str) -> DnsEntry {
        DnsEntry::builder()
            .dns_name(name)
            .hosted_zone_id("Z7HUB22UULQXV")
            .build()
    }

    #[test]
    fn real_shapes_become_regional_zonal_and_private_names() {
        let logs = VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-0123456789abcdef0")
            .vpc_endpoint_type(VpcEndpointType::Interface)
            .service_name("com.amazonaws.us-east-1.logs")
            .state(State::from("available"))
            .ip_address_type(IpAddressType::Dualstack)
            .dns_entries(dns(
                "vpce-0123456789abcdef0-abcdefgh.logs.us-east-1.vpce.amazonaws.com",
            ))
            .dns_entries(dns(
                "vpce-0123456789abcdef0-abcdefgh-us-east-1a.logs.us-east-1.vpce.amazonaws.com",
            ))
            .dns_entries(dns("logs.us-east-1.amazonaws.com"))
            .build();
        let dkr = VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-0fedcba9876543210")
            .vpc_endpoint_type(VpcEndpointType::Interface)
            .service_name("com.amazonaws.us-east-1.ecr.dkr")
            .state(State::Available)
            .dns_entries(dns("*.dkr.ecr.us-east-1.amazonaws.com"))
            .build();
        let s3 = VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-0aaaabbbbccccdddd")
            .vpc_endpoint_type(VpcEndpointType::Gateway)
            .service_name("com.amazonaws.us-east-1.s3")
            .state(State::Available)
            .build();
        let pending = VpcEndpoint::builder()
            .vpc_endpoint_type(VpcEndpointType::Interface)
            .service_name("com.amazonaws.us-east-1.sts")
            .state(State::from("pending"))
            .build();
        let found = from_endpoints(&[logs, dkr, s3, pending]);
        let got: Vec<(&str, &str)> = found
            .iter()
            .map(|d| (d.name.as_str(), d.host.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "vpce-logs-regional",
                    "vpce-0123456789abcdef0-abcdefgh.logs.us-east-1.vpce.amazonaws.com"
                ),
                (
                    "vpce-logs-us-east-1a",
                    "vpce-0123456789abcdef0-abcdefgh-us-east-1a.logs.us-east-1.vpce.amazonaws.com"
                ),
                ("vpce-logs", "logs.us-east-1.amazonaws.com"),
                ("vpce-ecr-dkr", "dualprobe.dkr.ecr.us-east-1.amazonaws.com"),
                ("vpce-s3-gateway", "s3.us-east-1.amazonaws.com"),
            ]
        );
        assert_eq!(found[0].families, vec![Family::Ipv4, Family::Ipv6]);
        assert_eq!(found[4].families, vec![Family::Ipv4]);
        use crate::model::target::Expect::{Nodata, Reachable};
        // logs: dualstack, records by default dualstack; ecr.dkr: IPv4 only, so no AAAA.
        assert_eq!(
            (found[0].expect.ipv4, found[0].expect.ipv6),
            (Reachable, Reachable)
        );
        assert_eq!(
            (found[3].expect.ipv4, found[3].expect.ipv6),
            (Reachable, Nodata)
        );
        assert!(!found[4].check_private);
    }
}
