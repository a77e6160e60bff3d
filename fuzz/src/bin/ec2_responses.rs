//! `DescribeVpcEndpoints` / `DescribeVpcs` answers: the bytes are the HTTP body an EC2 endpoint
//! returns, fed through the SDK's own client (its XML deserializer, reached only through the
//! public API: a canned HTTP client answers every request) and then our code: the conversion
//! into targets (`from_endpoints`), the VPC's CIDRs (`vpc_cidrs`) and, for error answers, the
//! classification of the failure. The first byte picks the HTTP status (200, 400, 403, 500, 503).

use std::sync::{Arc, Mutex};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;

/// Answers every request with the current input.
#[derive(Debug, Clone, Default)]
struct Canned(Arc<Mutex<(u16, Vec<u8>)>>);

impl HttpConnector for Canned {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        let (status, body) = self.0.lock().expect("canned").clone();
        let status = StatusCode::try_from(status).expect("status");
        HttpConnectorFuture::ready(Ok(Response::new(status, SdkBody::from(body))))
    }
}

impl HttpClient for Canned {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

fn main() {
    let canned = Canned::default();
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("AKIDFUZZ", "secret", None, None, "fuzz"))
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
        .http_client(canned.clone())
        .build();
    let client = aws_sdk_ec2::Client::from_conf(config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // The closure must be unwind safe; a panic ends the process, so no state outlives one.
    let shared = std::panic::AssertUnwindSafe((canned, client, rt));
    afl::fuzz!(|data: &[u8]| {
        let (canned, client, rt) = &*shared;
        let Some((&first, body)) = data.split_first() else {
            return;
        };
        let status = [200, 200, 200, 400, 403, 500, 503][usize::from(first) % 7];
        *canned.0.lock().expect("canned") = (status, body.to_vec());
        rt.block_on(async {
            match client.describe_vpc_endpoints().send().await {
                Ok(out) => {
                    let endpoints = out.vpc_endpoints.unwrap_or_default();
                    for d in dualprobe::fuzzing::from_endpoints(&endpoints) {
                        assert!(!d.families.is_empty(), "{} has no family", d.name);
                    }
                }
                Err(e) => {
                    let _ = dualprobe::fuzzing::classify_sdk_error(&e);
                }
            }
            match client.describe_vpcs().send().await {
                Ok(out) => {
                    let _ = dualprobe::fuzzing::vpc_cidrs(&out.vpcs.unwrap_or_default());
                }
                Err(e) => {
                    let _ = dualprobe::fuzzing::classify_sdk_error(&e);
                }
            }
        });
    });
}
