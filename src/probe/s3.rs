//! `s3`: a signed `ListBuckets` over the cycle's family, through the dual-stack endpoint (or the
//! configured one). AccessDenied passes with result `aws_denied`: AWS answered over this family.

use futures_util::future::BoxFuture;

use super::{CheckOutput, ProbeContext, Prober};
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
        clients::require_service(target, AwsService::S3)
    }

    fn probe<'a>(&'a self, cx: &'a mut ProbeContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            let family = cx.family;
            let (client, aws) = match clients::service_client(cx, "s3", ClientParts::s3).await {
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
