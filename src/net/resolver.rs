//! The DNS resolver probes use: hickory wrapped so that every lookup asks one family's record
//! type (A for IPv4, AAAA for IPv6), the cache is off (every lookup is real), and failures come
//! back as small named errors that map onto fixed failure reasons.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

use crate::model::failure::{Failure, FailureReason};
use crate::model::family::Family;

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// NXDOMAIN: the name does not exist.
    #[error("{name}: no such name (NXDOMAIN)")]
    NxDomain {
        /// The name looked up.
        name: String,
    },
    /// NOERROR with no answer of the asked type.
    #[error("{name}: no {rtype} records (NODATA)")]
    NoData {
        /// The name looked up.
        name: String,
        /// The record type asked for.
        rtype: RecordType,
    },
    /// SERVFAIL from the server.
    #[error("{name}: server failure (SERVFAIL)")]
    ServFail {
        /// The name looked up.
        name: String,
    },
    /// No answer in time.
    #[error("{name}: no answer from the nameserver in time")]
    Timeout {
        /// The name looked up.
        name: String,
    },
    /// Any other failure (REFUSED, bad name, socket error...).
    #[error("{name}: {message}")]
    Other {
        /// The name looked up.
        name: String,
        /// What hickory said.
        message: String,
    },
}

impl LookupError {
    /// The fixed reason for metrics, with this error as detail.
    pub fn to_failure(&self) -> Failure {
        let reason = match self {
            LookupError::NxDomain { .. } => FailureReason::Nxdomain,
            LookupError::NoData { .. } => FailureReason::Nodata,
            LookupError::ServFail { .. } => FailureReason::Servfail,
            LookupError::Timeout { .. } => FailureReason::Timeout,
            LookupError::Other { .. } => FailureReason::DnsError,
        };
        Failure::new(reason, self.to_string())
    }
}

/// Why the resolver could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the DNS resolver: {0}")]
pub struct ResolverSetupError(String);

/// The answers of one lookup.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The addresses of the asked family, in the order the server gave them.
    pub addresses: Vec<IpAddr>,
}

/// A family-aware, cache-less DNS resolver.
#[derive(Clone)]
pub struct DnsResolver {
    inner: TokioResolver,
    /// Why no lookup can work (no nameserver configured), said in every lookup's error instead
    /// of hickory's `no connections available`, which reads like running out of sockets.
    unusable: Option<std::sync::Arc<str>>,
}

impl DnsResolver {
    /// Builds a resolver for `nameservers` (empty: the system's `/etc/resolv.conf`), giving each
    /// query `query_timeout` and no retry, so a lookup ends within the check's deadline.
    pub fn new(
        nameservers: &[SocketAddr],
        query_timeout: Duration,
    ) -> Result<DnsResolver, ResolverSetupError> {
        // Without a usable /etc/resolv.conf (a scratch container with none) the agent still
        // runs: every DNS check then says why it cannot work, and so does one warning here.
        let mut unreadable = None;
        let (config, mut opts) = if nameservers.is_empty() {
            hickory_resolver::system_conf::read_system_conf().unwrap_or_else(|e| {
                unreadable = Some(e.to_string());
                (
                    ResolverConfig::from_name_servers(Vec::new()),
                    ResolverOpts::default(),
                )
            })
        } else {
            let servers = nameservers
                .iter()
                .map(|sa| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = sa.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = sa.port();
                    NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
                })
                .collect();
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        opts.cache_size = 0;
        opts.timeout = query_timeout;
        // `attempts` counts retries: total time is about (attempts + 1) × timeout.
        opts.attempts = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        let unusable = config.name_servers().is_empty().then(|| {
            let why: std::sync::Arc<str> = match &unreadable {
                Some(e) if !e.contains("no nameservers found") => format!(
                    "no nameserver is configured: cannot read /etc/resolv.conf ({e}); set resolver.nameservers"
                )
                .into(),
                _ => "no nameserver is configured: /etc/resolv.conf lists none; set resolver.nameservers"
                    .into(),
            };
            // Once per process, not on every reload or VPC swap that rebuilds the resolver.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| tracing::warn!("DNS will not work: {why}"));
            why
        });
        let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = opts;
        let inner = builder
            .build()
            .map_err(|e| ResolverSetupError(e.to_string()))?;
        Ok(DnsResolver { inner, unusable })
    }

    /// Looks up `name`'s records of `family`'s type.
    pub async fn lookup(&self, name: &str, family: Family) -> Result<Answer, LookupError> {
        if let Some(why) = &self.unusable {
            return Err(LookupError::Other {
                name: name.to_string(),
                message: why.to_string(),
            });
        }
        let rtype = match family {
            Family::Ipv4 => RecordType::A,
            Family::Ipv6 => RecordType::AAAA,
        };
        // A dotted name is absolute: one query, no search-domain walk.
        let query = if name.contains('.') && !name.ends_with('.') {
            format!("{name}.")
        } else {
            name.to_string()
        };
        match self.inner.lookup(query.as_str(), rtype).await {
            Ok(lookup) => {
                let addresses = addresses_of(lookup.answers(), family);
                if addresses.is_empty() {
                    Err(LookupError::NoData {
                        name: name.to_string(),
                        rtype,
                    })
                } else {
                    Ok(Answer { addresses })
                }
            }
            Err(e) => Err(classify(name, rtype, e)),
        }
    }
}

/// The addresses of `family` among a response's answer records, in the server's order: A
/// records for IPv4, AAAA for IPv6; CNAMEs and any other type or family are skipped.
pub fn addresses_of(answers: &[Record], family: Family) -> Vec<IpAddr> {
    answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) if family == Family::Ipv4 => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) if family == Family::Ipv6 => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// NXDOMAIN and NODATA both arrive as `NoRecordsFound`; the response code tells them apart.
fn classify(name: &str, rtype: RecordType, err: NetError) -> LookupError {
    let name = name.to_string();
    match err {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => match nr.response_code {
            ResponseCode::NXDomain => LookupError::NxDomain { name },
            ResponseCode::ServFail => LookupError::ServFail { name },
            ResponseCode::NoError => LookupError::NoData { name, rtype },
            code => LookupError::Other {
                name,
                message: format!("response code {code}"),
            },
        },
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => {
            LookupError::ServFail { name }
        }
        NetError::Dns(DnsError::ResponseCode(ResponseCode::NXDomain)) => {
            LookupError::NxDomain { name }
        }
        NetError::Timeout => LookupError::Timeout { name },
        other => {
            let mut message = other.to_string();
            if message.contains("no connections available") {
                // Nameservers are configured, but none could be used: sockets or file
                // descriptors ran out, or every nameserver refused the connection.
                message.push_str(" (no socket to any nameserver: out of file descriptors?)");
            }
            if message.contains("timed out") {
                LookupError::Timeout { name }
            } else {
                LookupError::Other { name, message }
            }
        }
    }
}
