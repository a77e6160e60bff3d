//! The HTTP client every AWS SDK call of dualprobe goes through: reqwest with a resolver that
//! answers only one family's records (A for ipv4, AAAA for ipv6) from the probe resolver, the
//! target's rustls configuration (Mozilla roots built in, plus an optional extra CA), HTTP/1.1,
//! no proxy, and no connection reuse for probes, so every call opens a new connection over the
//! family it is labelled with.
//!
//! Why not `aws-smithy-http-client`'s `build_with_resolver`: its trust store is the platform's
//! native roots plus PEM certificates, and the release image is `scratch` (no CA bundle, roots
//! come from webpki-roots, which holds trust anchors rather than PEM certificates); it also
//! cannot turn connection pooling off. The SDK only needs an `HttpClient`, so this one wraps the
//! same family-pinned reqwest stack the `http` check uses (`crate::net::http`).

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use reqwest::header::{HOST, HeaderMap, HeaderName, HeaderValue};

use crate::model::failure::{Failure, FailureReason};
use crate::model::family::Family;
use crate::net::guard::AddressPolicy;
use crate::net::http::{self, CarriedFailure, ClientOptions, Protocols};
use crate::net::resolver::DnsResolver;

/// How to build an [`AwsHttpClient`].
#[derive(Clone)]
pub struct AwsHttpOptions {
    /// The family every connection is pinned to; `None` resolves both (IPv6 first), for the
    /// credential providers and discovery, which are not per-family measurements.
    pub family: Option<Family>,
    /// The probe resolver (cache off).
    pub resolver: DnsResolver,
    /// Refuses addresses before anything is sent to them (the `/probe` guard).
    pub policy: Option<Arc<dyn AddressPolicy>>,
    /// The rustls configuration (roots and extra CA); ALPN is set here to HTTP/1.1.
    pub tls: Arc<rustls::ClientConfig>,
    /// Deadline of one request, connect included.
    pub timeout: Duration,
    /// Connect to this port instead of the endpoint URL's (the request, its `Host` header and
    /// its signature keep the endpoint's authority): a target's explicit `port:`.
    pub connect_port: Option<u16>,
    /// Keep idle connections for reuse (off for probes: every call is a new connection).
    pub pool: bool,
}

/// The peer of the last response, shared between a client and whoever probes with it.
#[derive(Debug, Clone, Default)]
pub struct RemoteSlot(Arc<Mutex<Option<SocketAddr>>>);

impl RemoteSlot {
    /// Takes the address of the peer that answered the last request, if any.
    pub fn take(&self) -> Option<SocketAddr> {
        self.0.lock().map(|mut g| g.take()).unwrap_or(None)
    }

    fn set(&self, addr: Option<SocketAddr>) {
        if let Ok(mut g) = self.0.lock() {
            *g = addr;
        }
    }
}

/// An SDK `HttpClient` over reqwest, pinned to one family (or none).
#[derive(Debug, Clone)]
pub struct AwsHttpClient {
    connector: Connector,
}

#[derive(Clone)]
struct Connector {
    client: reqwest::Client,
    family: Option<Family>,
    connect_port: Option<u16>,
    remote: RemoteSlot,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("family", &self.family)
            .field("connect_port", &self.connect_port)
            .finish()
    }
}

impl AwsHttpClient {
    /// Builds the client.
    pub fn new(opts: AwsHttpOptions) -> Result<AwsHttpClient, Failure> {
        let client = http::build_client(ClientOptions {
            family: opts.family,
            resolver: opts.resolver,
            policy: opts.policy,
            tls: opts.tls,
            protocols: Protocols::Http1Only,
            timeout: opts.timeout,
            pool: opts.pool,
            redirect: reqwest::redirect::Policy::none(),
            alias: None,
            alias_exempt: false,
            origin: None,
        })
        .map_err(|f| {
            Failure::new(
                f.reason,
                format!("building the AWS HTTP client: {}", f.detail),
            )
        })?;
        Ok(AwsHttpClient {
            connector: Connector {
                client,
                family: opts.family,
                connect_port: opts.connect_port,
                remote: RemoteSlot::default(),
            },
        })
    }

    /// Where the peer address of each response is recorded.
    pub fn remote_slot(&self) -> RemoteSlot {
        self.connector.remote.clone()
    }

    /// The client as the SDK takes it.
    pub fn shared(self) -> SharedHttpClient {
        SharedHttpClient::new(self)
    }
}

impl HttpClient for AwsHttpClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.connector.clone())
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        Some(ConnectorMetadata::new("dualprobe-reqwest", None))
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let this = self.clone();
        HttpConnectorFuture::new(async move { this.send(request).await })
    }
}

fn user_error(e: impl StdError + Send + Sync + 'static) -> ConnectorError {
    ConnectorError::user(Box::new(e))
}

impl Connector {
    async fn send(self, request: HttpRequest) -> Result<HttpResponse, ConnectorError> {
        let method =
            reqwest::Method::from_bytes(request.method().as_bytes()).map_err(user_error)?;
        let mut url = reqwest::Url::parse(request.uri()).map_err(user_error)?;
        let mut headers = HeaderMap::new();
        for (k, v) in request.headers() {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(user_error)?;
            let value = HeaderValue::from_str(v).map_err(user_error)?;
            headers.append(name, value);
        }
        if let Some(port) = self.connect_port
            && url.port_or_known_default() != Some(port)
        {
            // Keep the authority the request was signed for; only the socket goes elsewhere.
            if !headers.contains_key(HOST) {
                let mut authority = url.host_str().unwrap_or_default().to_string();
                if let Some(p) = url.port() {
                    authority.push_str(&format!(":{p}"));
                }
                headers.insert(HOST, HeaderValue::from_str(&authority).map_err(user_error)?);
            }
            url.set_port(Some(port))
                .map_err(|()| ConnectorError::user("cannot set the connect port".into()))?;
        }
        let body = request.into_body();
        let body = match body.bytes() {
            Some(b) => reqwest::Body::from(b.to_vec()),
            None => reqwest::Body::wrap(body),
        };
        self.remote.set(None);
        let resp = self
            .client
            .request(method, url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(connector_error)?;
        let remote = resp.remote_addr();
        self.remote.set(remote);
        if let (Some(family), Some(r)) = (self.family, remote)
            && Family::of(r.ip()) != family
        {
            return Err(ConnectorError::other(
                Box::new(CarriedFailure(Failure::new(
                    FailureReason::Other,
                    format!("answered from {r}, not over {family}"),
                ))),
                None,
            ));
        }
        let status = StatusCode::try_from(resp.status().as_u16())
            .map_err(|e| ConnectorError::other(Box::new(e), None))?;
        let resp_headers = resp.headers().clone();
        let mut out = HttpResponse::new(status, SdkBody::from_body_1_x(reqwest::Body::from(resp)));
        for (k, v) in resp_headers.iter() {
            if let Ok(v) = v.to_str() {
                out.headers_mut()
                    .append(k.as_str().to_string(), v.to_string());
            }
        }
        Ok(out)
    }
}

fn connector_error(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(Box::new(e))
    } else if e.is_connect() {
        ConnectorError::io(Box::new(e))
    } else {
        ConnectorError::other(Box::new(e), None)
    }
}
