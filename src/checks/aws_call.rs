//! What the `s3` and `ec2` checks share: the SDK client of the cycle's target and family (built
//! on first use, then reused), the `aws:` block they require, and how a call's result becomes a
//! check output.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use super::CheckContext;
use crate::aws::clients::{ClientParts, ServiceClient, credentials_for};
use crate::aws::{AwsService, AwsSettings, errors};
use crate::model::failure::{Failure, FailureReason};
use crate::model::outcome::{CheckOutput, Observations};
use crate::model::target::Target;

/// Turns a call's result into a check output: a pass, an `aws_denied` pass (AWS answered, so
/// the path works), or a failure with its fixed reason. The peer that answered goes into the
/// observations either way.
pub fn check_output<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    remote: Option<SocketAddr>,
) -> CheckOutput
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let obs = Observations {
        remote,
        ..Observations::default()
    };
    match result {
        Ok(_) => CheckOutput::pass(obs),
        Err(e) => {
            let failure = errors::classify(&e);
            if failure.reason == FailureReason::AwsDenied {
                CheckOutput::pass(Observations {
                    note: Some(failure),
                    ..obs
                })
            } else {
                CheckOutput::fail(failure).with(obs)
            }
        }
    }
}

/// `Check::validate` of an AWS check: the target needs an `aws:` block for `service`.
pub fn require_service(target: &Target, service: AwsService) -> Result<(), String> {
    match &target.aws {
        Some(a) if a.service == service => Ok(()),
        Some(a) => Err(format!(
            "needs `aws: {{ service: {service} }}`, not `{}`",
            a.service
        )),
        None => Err(format!(
            "needs an `aws: {{ service: {service}, region: ... }}` block"
        )),
    }
}

/// The SDK client of the cycle's target and family (built on first use, then reused) and the
/// target's `aws:` settings: what every AWS check does before its one call.
pub async fn service_client<'t, C>(
    cx: &CheckContext<'t>,
    kind: &'static str,
    make: fn(ClientParts) -> ServiceClient<C>,
) -> Result<(Arc<ServiceClient<C>>, &'t AwsSettings), Failure>
where
    C: Send + Sync + 'static,
{
    let target: &'t Target = cx.target;
    let family = cx.family;
    let Some(aws) = &target.aws else {
        return Err(Failure::new(FailureReason::Other, "no `aws:` block"));
    };
    let credentials = credentials_for(aws, &cx.env.resolver).await?;
    let env = cx.env;
    let client = env.client(target, family, kind, || {
        ClientParts::for_target(
            target,
            aws,
            family,
            &env.resolver,
            env.policy.clone(),
            credentials,
        )
        .map(make)
    })?;
    Ok((client, aws))
}
