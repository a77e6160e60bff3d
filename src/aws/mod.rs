//! Signed AWS calls per address family: the settings of a target's `aws:` block, the
//! family-pinned HTTP client every SDK call goes through ([`http`]), the S3 and EC2 clients
//! built from it ([`clients`]), the mapping of SDK errors onto fixed failure reasons
//! ([`errors`]) and the ECS task metadata reader ([`task_metadata`]).

pub mod clients;
pub mod errors;
pub mod http;
pub mod task_metadata;

use std::fmt;

use aws_sdk_s3::config::SharedCredentialsProvider;
use serde::Serialize;

/// The AWS service a target's `aws:` block calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AwsService {
    /// Amazon S3 (`ListBuckets`).
    S3,
    /// Amazon EC2 (`DescribeRegions` by default).
    Ec2,
}

impl AwsService {
    /// The config name and the matching check name.
    pub fn as_str(self) -> &'static str {
        match self {
            AwsService::S3 => "s3",
            AwsService::Ec2 => "ec2",
        }
    }

    /// Parses `s3` / `ec2`.
    pub fn parse(s: &str) -> Option<AwsService> {
        match s {
            "s3" => Some(AwsService::S3),
            "ec2" => Some(AwsService::Ec2),
            _ => None,
        }
    }
}

impl fmt::Display for AwsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The read-only EC2 call the `ec2` check makes. Each needs only `ec2:Describe*` and sends
/// nothing that changes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Ec2Operation {
    /// `DescribeRegions`: answers from any account, the default.
    #[default]
    DescribeRegions,
    /// `DescribeAvailabilityZones` for the target's region.
    DescribeAvailabilityZones,
    /// `DescribeInstances` with at most 5 results (what the seed app calls).
    DescribeInstances,
    /// `DescribeVpcs` with at most 5 results.
    DescribeVpcs,
}

impl Ec2Operation {
    /// Every operation, for error messages.
    pub const ALL: [Ec2Operation; 4] = [
        Ec2Operation::DescribeRegions,
        Ec2Operation::DescribeAvailabilityZones,
        Ec2Operation::DescribeInstances,
        Ec2Operation::DescribeVpcs,
    ];

    /// The API name, as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Ec2Operation::DescribeRegions => "DescribeRegions",
            Ec2Operation::DescribeAvailabilityZones => "DescribeAvailabilityZones",
            Ec2Operation::DescribeInstances => "DescribeInstances",
            Ec2Operation::DescribeVpcs => "DescribeVpcs",
        }
    }

    /// Parses an API name.
    pub fn parse(s: &str) -> Option<Ec2Operation> {
        Ec2Operation::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// A target's `aws:` block, validated.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// The service called.
    pub service: AwsService,
    /// The signing and endpoint region.
    pub region: String,
    /// Use the dual-stack endpoint (`s3.dualstack.R.amazonaws.com`, `ec2.R.api.aws`).
    pub dual_stack: bool,
    /// An endpoint override (only without `dual_stack`; the SDKs reject both together).
    pub endpoint_url: Option<String>,
    /// The EC2 operation (ignored for S3).
    pub ec2_operation: Ec2Operation,
    /// The endpoint the SDK resolved at load time: the host `dns`/`tcp`/`tls` probe.
    pub endpoint: String,
    /// Credentials to use instead of the standard chain (set by tests and embedders; config
    /// never reads secrets).
    pub credentials: Option<SharedCredentialsProvider>,
}

/// Why an endpoint could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EndpointError(pub String);

/// Resolves the endpoint URL the SDK will call for `service` in `region`, with the same rules
/// the client uses at request time (so `dns`/`tcp`/`tls` probe the same host).
pub fn resolve_endpoint(
    service: AwsService,
    region: &str,
    dual_stack: bool,
    endpoint_url: Option<&str>,
) -> Result<String, EndpointError> {
    use futures_util::FutureExt;
    let resolved = match service {
        AwsService::S3 => {
            use aws_sdk_s3::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
            let params = Params::builder()
                .region(region)
                .use_dual_stack(dual_stack)
                .use_fips(false)
                .set_endpoint(endpoint_url.map(str::to_string))
                .build()
                .map_err(|e| EndpointError(e.to_string()))?;
            DefaultResolver::new()
                .resolve_endpoint(&params)
                .now_or_never()
        }
        AwsService::Ec2 => {
            use aws_sdk_ec2::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
            let params = Params::builder()
                .region(region)
                .use_dual_stack(dual_stack)
                .use_fips(false)
                .set_endpoint(endpoint_url.map(str::to_string))
                .build()
                .map_err(|e| EndpointError(e.to_string()))?;
            DefaultResolver::new()
                .resolve_endpoint(&params)
                .now_or_never()
        }
    };
    match resolved {
        Some(Ok(ep)) => Ok(ep.url().to_string()),
        Some(Err(e)) => Err(EndpointError(e.to_string())),
        None => Err(EndpointError(
            "the endpoint resolver did not answer at once".into(),
        )),
    }
}

/// Splits an endpoint URL into host and port (443 for https, 80 for http when absent).
pub fn endpoint_host_port(url: &str) -> Option<(String, u16)> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = parsed.port_or_known_default()?;
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_endpoints_are_the_documented_names() {
        let s3 = resolve_endpoint(AwsService::S3, "us-east-1", true, None).unwrap();
        assert_eq!(s3, "https://s3.dualstack.us-east-1.amazonaws.com");
        let ec2 = resolve_endpoint(AwsService::Ec2, "us-east-1", true, None).unwrap();
        assert_eq!(ec2, "https://ec2.us-east-1.api.aws");
        assert_eq!(
            endpoint_host_port(&ec2),
            Some(("ec2.us-east-1.api.aws".to_string(), 443))
        );
        let plain = resolve_endpoint(AwsService::Ec2, "eu-west-1", false, None).unwrap();
        assert_eq!(plain, "https://ec2.eu-west-1.amazonaws.com");
    }

    #[test]
    fn dual_stack_with_override_is_rejected() {
        let e = resolve_endpoint(AwsService::S3, "us-east-1", true, Some("https://x.test"));
        assert!(e.is_err(), "{e:?}");
        let ok = resolve_endpoint(
            AwsService::S3,
            "us-east-1",
            false,
            Some("https://x.test:8443"),
        );
        assert_eq!(ok.unwrap(), "https://x.test:8443");
    }

    #[test]
    fn ec2_operations_round_trip() {
        for op in Ec2Operation::ALL {
            assert_eq!(Ec2Operation::parse(op.as_str()), Some(op));
        }
        assert_eq!(Ec2Operation::parse("TerminateInstances"), None);
    }
}
