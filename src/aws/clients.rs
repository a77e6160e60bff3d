//! S3 and EC2 SDK clients, one per (target, family), built once and reused: the family-pinned
//! HTTP client, the target's timeout as the operation deadline, SDK retries off (one attempt per
//! probe), and credentials from the standard chain (shared per region, fetched through an HTTP
//! client of its own) unless the target carries explicit ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Region, SharedCredentialsProvider, StalledStreamProtectionConfig,
};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use super::AwsSettings;
use super::connector::{AwsHttpClient, AwsHttpOptions, RemoteSlot};
use crate::model::failure::{Failure, FailureReason};
use crate::model::family::Family;
use crate::model::target::Target;
use crate::net::guard::AddressPolicy;
use crate::net::resolver::DnsResolver;

/// An SDK client of one (target, family) and where it records the peer of each response.
pub struct ServiceClient<C> {
    /// The SDK client.
    pub client: C,
    /// The peer that answered the last call.
    pub remote: RemoteSlot,
}

/// What a per-family client is built from.
pub struct ClientParts {
    /// The pinned HTTP client.
    pub http: AwsHttpClient,
    /// Credentials for signing.
    pub credentials: SharedCredentialsProvider,
    /// Region, dual-stack and endpoint.
    pub settings: AwsSettings,
    /// Deadline of one call.
    pub timeout: Duration,
}

impl ClientParts {
    /// The parts for `target` over `family`: the target's TLS roots, its `port:` as connect port
    /// when it differs from the endpoint's, no connection reuse.
    pub fn for_target(
        target: &Target,
        aws: &AwsSettings,
        family: Family,
        resolver: &DnsResolver,
        policy: Option<Arc<dyn AddressPolicy>>,
        credentials: SharedCredentialsProvider,
    ) -> Result<ClientParts, Failure> {
        let endpoint_port = super::endpoint_host_port(&aws.endpoint).map(|(_, p)| p);
        let http = AwsHttpClient::new(AwsHttpOptions {
            family: Some(family),
            resolver: resolver.clone(),
            policy,
            tls: Arc::clone(&target.tls.client_config),
            timeout: target.timeout,
            connect_port: (endpoint_port != Some(target.port)).then_some(target.port),
            pool: false,
        })?;
        Ok(ClientParts {
            http,
            credentials,
            settings: aws.clone(),
            timeout: target.timeout,
        })
    }

    fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .operation_timeout(self.timeout)
            .operation_attempt_timeout(self.timeout)
            .connect_timeout(self.timeout)
            .read_timeout(self.timeout)
            .build()
    }

    /// An S3 client.
    pub fn s3(self) -> ServiceClient<aws_sdk_s3::Client> {
        let remote = self.http.remote_slot();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.settings.region.clone()))
            .credentials_provider(self.credentials.clone())
            .retry_config(RetryConfig::disabled())
            .timeout_config(self.timeouts())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .use_dual_stack(self.settings.dual_stack)
            .http_client(self.http.shared());
        let mut conf = conf;
        conf.set_endpoint_url(self.settings.endpoint_url.clone());
        ServiceClient {
            client: aws_sdk_s3::Client::from_conf(conf.build()),
            remote,
        }
    }

    /// An EC2 client.
    pub fn ec2(self) -> ServiceClient<aws_sdk_ec2::Client> {
        let remote = self.http.remote_slot();
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(
                self.settings.region.clone(),
            ))
            .credentials_provider(self.credentials.clone())
            .retry_config(RetryConfig::disabled())
            .timeout_config(self.timeouts())
            .stalled_stream_protection(
                aws_sdk_ec2::config::StalledStreamProtectionConfig::disabled(),
            )
            .use_dual_stack(self.settings.dual_stack)
            .http_client(self.http.shared());
        let mut conf = conf;
        conf.set_endpoint_url(self.settings.endpoint_url.clone());
        ServiceClient {
            client: aws_sdk_ec2::Client::from_conf(conf.build()),
            remote,
        }
    }
}

type ChainCache = Mutex<HashMap<String, SharedCredentialsProvider>>;

fn chains() -> &'static ChainCache {
    static CHAINS: OnceLock<ChainCache> = OnceLock::new();
    CHAINS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The standard credential chain (environment, profile, web identity, ECS container
/// credentials, instance metadata), built once per region for the whole process. Its own HTTP
/// client resolves both families through `resolver` and trusts the Mozilla roots; the ECS and
/// instance metadata endpoints are IP literals and need no DNS.
pub async fn default_credentials(
    region: &str,
    resolver: &DnsResolver,
) -> Result<SharedCredentialsProvider, Failure> {
    if let Some(p) = chains().lock().ok().and_then(|m| m.get(region).cloned()) {
        return Ok(p);
    }
    let tls = crate::net::tls::client_config(None, false)
        .map_err(|e| Failure::new(FailureReason::Other, e))?;
    let http = AwsHttpClient::new(AwsHttpOptions {
        family: None,
        resolver: resolver.clone(),
        policy: None,
        tls: Arc::new(tls),
        timeout: Duration::from_secs(5),
        connect_port: None,
        pool: true,
    })?;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .http_client(http.shared())
        .load()
        .await;
    let provider = sdk.credentials_provider().ok_or_else(|| {
        Failure::new(
            FailureReason::AwsAuth,
            "no credential provider is configured",
        )
    })?;
    if let Ok(mut m) = chains().lock() {
        m.entry(region.to_string())
            .or_insert_with(|| provider.clone());
    }
    Ok(provider)
}

/// The credentials a target signs with: its own, else the standard chain of its region.
pub async fn credentials_for(
    aws: &AwsSettings,
    resolver: &DnsResolver,
) -> Result<SharedCredentialsProvider, Failure> {
    match &aws.credentials {
        Some(c) => Ok(c.clone()),
        None => default_credentials(&aws.region, resolver).await,
    }
}
