//! The network layer under every check: the family-aware resolver, the socket error queue, the NAT64 prefixes of the
//! IPv6 path, TLS client configurations,
//! the address policy (what may never be contacted), the agent's own listener (what no check
//! may loop back into), and the one family-pinned HTTP stack that
//! both the `http` check and the AWS connector use.

pub mod errqueue;
pub mod guard;
pub(crate) mod http;
pub mod nat64;
pub mod own_listener;
pub mod resolver;
pub(crate) mod tls;
