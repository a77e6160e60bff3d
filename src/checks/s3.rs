//! `s3`: a signed `ListBuckets` over the cycle's family, through the dual-stack endpoint (or the
//! configured one). AccessDenied passes with result `aws_denied`: AWS answered over this family.

use futures_util::future::BoxFuture;

use crate::model::outcome::CheckOutput;
use super::{Check, CheckContext};
use crate::aws::AwsService;
use super::aws_call;
use crate::aws::clients::ClientParts;
use crate::model::target::Target;

/// The `s3` check.
pub(super) struct S3;

impl Check for S3 {

    fn validate(&self, target: &Target) -> Result<(), String> {
        aws_call::require_service(target, AwsService::S3)
    }

    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            let family = cx.family;
            let (client, aws) = match aws_call::service_client(cx, "s3", ClientParts::s3).await {
                Ok(c) => c,
                Err(f) => return CheckOutput::fail(f),
            };
            cx.debug(format!("S3 ListBuckets at {} over {family}", aws.endpoint));
            let result = client.client.list_buckets().max_buckets(1).send().await;
            let out = aws_call::check_output(result, client.remote.take());
            cx.debug(format!("S3 answered from {:?}", out.observations.remote));
            out
        })
    }
}
