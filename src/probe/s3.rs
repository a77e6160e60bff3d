//! `s3`: a signed `ListBuckets` over the cycle's family, through the dual-stack endpoint (or the
//! configured one). AccessDenied passes with result `aws_denied`: AWS answered over this family.

use futures_util::future::BoxFuture;

use super::{CheckOutput, Failure, FailureReason, ProbeContext, Prober};
use crate::aws::AwsService;
use crate::aws::clients::{self, ClientParts};
use crate::target::Target;

/// The `s3` prober.
pub struct S3;

impl Prober for S3 {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn validate(&self, target: &Target) -> Result<(), String> {
        match &target.aws {
            Some(a) if a.service == AwsService::S3 => Ok(()),
            Some(a) => Err(format!(
                "needs `aws: {{ service: s3 }}`, not `{}`",
                a.service
            )),
            None => Err("needs an `aws: { service: s3, region: ... }` block".into()),
        }
    }

    fn probe<'a>(&'a self, cx: &'a mut ProbeContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            let target = cx.target;
            let family = cx.family;
            let Some(aws) = &target.aws else {
                return CheckOutput::fail(Failure::new(FailureReason::Other, "no `aws:` block"));
            };
            let credentials = match clients::credentials_for(aws, &cx.env.resolver).await {
                Ok(c) => c,
                Err(f) => return CheckOutput::fail(f),
            };
            let env = cx.env;
            let client = match env.client(target, family, "s3", || {
                ClientParts::for_target(
                    target,
                    aws,
                    family,
                    &env.resolver,
                    env.policy.clone(),
                    credentials,
                )
                .map(ClientParts::s3)
            }) {
                Ok(c) => c,
                Err(f) => return CheckOutput::fail(f),
            };
            cx.debug(format!("S3 ListBuckets at {} over {family}", aws.endpoint));
            let result = client.client.list_buckets().max_buckets(1).send().await;
            let out = clients::check_output(result, client.remote.take());
            cx.debug(format!("S3 answered from {:?}", out.observations.remote));
            out
        })
    }
}
