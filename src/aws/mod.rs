//! Signed AWS calls per address family: the settings of a target's `aws:` block, the
//! family-pinned HTTP client every SDK call goes through ([`http`]), the S3 and EC2 clients
//! built from it ([`clients`]), the mapping of SDK errors onto fixed failure reasons
//! ([`errors`]) and the ECS task metadata reader ([`task_metadata`]).

pub mod clients;
pub(crate) mod connector;
pub(crate) mod errors;
pub mod task_metadata;

pub use crate::model::aws::{AwsService, AwsSettings, Ec2Operation};

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
