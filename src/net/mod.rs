//! The network layer under every check: the family-aware resolver, TLS client configurations,
//! the address policy (what may never be contacted), and the one family-pinned HTTP stack that
//! both the `http` check and the AWS connector use.

pub mod guard;
pub(crate) mod http;
pub mod resolver;
pub(crate) mod tls;
