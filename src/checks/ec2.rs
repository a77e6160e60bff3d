//! `ec2`: a signed, read-only EC2 call (`DescribeRegions` by default, see
//! [`Ec2Operation`]) over the cycle's family. UnauthorizedOperation passes with result
//! `aws_denied`: AWS answered over this family.

use futures_util::future::BoxFuture;

use crate::model::outcome::CheckOutput;
use super::{Check, CheckContext};
use super::aws_call;
use crate::aws::clients::ClientParts;
use crate::aws::{AwsService, Ec2Operation};
use crate::model::target::Target;

/// The `ec2` check.
pub(super) struct Ec2;

impl Check for Ec2 {

    fn validate(&self, target: &Target) -> Result<(), String> {
        aws_call::require_service(target, AwsService::Ec2)
    }

    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            let family = cx.family;
            let (client, aws) = match aws_call::service_client(cx, "ec2", ClientParts::ec2).await {
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
                    aws_call::check_output(ec2.describe_regions().send().await, client.remote.take())
                }
                Ec2Operation::DescribeAvailabilityZones => aws_call::check_output(
                    ec2.describe_availability_zones().send().await,
                    client.remote.take(),
                ),
                Ec2Operation::DescribeInstances => aws_call::check_output(
                    ec2.describe_instances().max_results(5).send().await,
                    client.remote.take(),
                ),
                Ec2Operation::DescribeVpcs => aws_call::check_output(
                    ec2.describe_vpcs().max_results(5).send().await,
                    client.remote.take(),
                ),
            };
            cx.debug(format!("EC2 answered from {:?}", out.observations.remote));
            out
        })
    }
}
