//! What a target's `aws:` block says: the service, the EC2 operation, the region and endpoint.
//! Data only; the SDK clients that act on it live in the AWS layer.

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

/// Why AWS documents `name` as dual-stack (so it must have AAAA records), or `None`: the
/// `*.api.aws` endpoints (EC2, and the other services' dual-stack endpoints) and the S3
/// `*.dualstack.*.amazonaws.com` names.
pub fn documented_dual_stack(name: &str) -> Option<&'static str> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if n.ends_with(".api.aws") {
        Some("AWS documents *.api.aws endpoints as dual-stack")
    } else if (n.ends_with(".amazonaws.com") || n.ends_with(".amazonaws.com.cn"))
        && n.split('.').any(|l| l == "dualstack")
    {
        Some("AWS documents *.dualstack.* endpoints as dual-stack")
    } else {
        None
    }
}
