//! `ec2`: a signed, read-only EC2 call (`DescribeRegions` by default, see
//! [`Ec2Operation`]) over the cycle's family. UnauthorizedOperation passes with result
//! `aws_denied`: AWS answered over this family.

use futures_util::future::BoxFuture;

use super::{CheckOutput, ProbeContext, Prober};
use crate::aws::clients::{self, ClientParts};
use crate::aws::{AwsService, Ec2Operation};
use crate::target::Target;

/// The `ec2` prober.
pub struct Ec2;

impl Prober for Ec2 {
    fn name(&self) -> &'static str {
        "ec2"
    }

    fn validate(&self, target: &Target) -> Result<(), String> {
        clients::require_service(target, AwsService::Ec2)
    }

    fn probe<'a>(&'a self, cx: &'a mut ProbeContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            let family = cx.family;
            let (client, aws) = match clients::service_client(cx, "ec2", ClientParts::ec2).await {
                Ok(c) => c,
                Err(f) => return CheckOutput::fail(f),
            };
            let op = aws.ec2_operation;
            cx.debug(format!(
                "EC2 {} at {} over {family}",
                op.as_str(),
                aws.endpoint
            ));
            let ec2 = &client.client;
            let out = match op {
                Ec2Operation::DescribeRegions => {
                    clients::check_output(ec2.describe_regions().send().await, client.remote.take())
                }
                Ec2Operation::DescribeAvailabilityZones => clients::check_output(
                    ec2.describe_availability_zones().send().await,
                    client.remote.take(),
                ),
                Ec2Operation::DescribeInstances => clients::check_output(
                    ec2.describe_instances().max_results(5).send().await,
                    client.remote.take(),
                ),
                Ec2Operation::DescribeVpcs => clients::check_output(
                    ec2.describe_vpcs().max_results(5).send().await,
                    client.remote.take(),
                ),
            };
            cx.debug(format!("EC2 answered from {:?}", out.observations.remote));
            out
        })
    }
}
