//! What every check shares: the resolver, the address policy (the metadata guard for scheduled
//! checks, the `/probe` guard for ad-hoc ones), and clients built once per target and family and
//! reused across cycles.

use std::any::Any;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::model::failure::Failure;
use crate::model::family::Family;
use crate::model::target::{Target, TargetSource};
use crate::net::guard::AddressPolicy;
use crate::net::nat64::Nat64Table;
use crate::net::own_listener::OwnListener;
use crate::net::resolver::DnsResolver;

type ClientKey = (String, Family, &'static str);

/// Shared probe resources, rebuilt on every config load.
pub struct CheckEnv {
    /// The cache-less, family-aware resolver.
    pub resolver: DnsResolver,
    /// Refuses addresses before anything is sent to them (`None` only for the CLI's own probes).
    pub policy: Option<Arc<dyn AddressPolicy>>,
    /// The agent's own listen socket, which no check may connect to, and the origin id its HTTP
    /// requests carry (`None` for the CLI's probes, which serve nothing).
    pub own: Option<Arc<OwnListener>>,
    /// The NAT64 prefixes of the IPv6 path: which addresses are synthesized (the `via` of an
    /// IPv6 cycle, `nat64_unreachable`). Shared with the guard and across generations.
    pub nat64: Nat64Table,
    clients: Mutex<HashMap<ClientKey, Arc<dyn Any + Send + Sync>>>,
}

impl CheckEnv {
    /// An environment with no address policy.
    pub fn new(resolver: DnsResolver) -> CheckEnv {
        CheckEnv {
            resolver,
            policy: None,
            own: None,
            nat64: Nat64Table::default(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The same resolver and clients cache, with an address policy on top.
    pub fn with_policy(resolver: DnsResolver, policy: Arc<dyn AddressPolicy>) -> CheckEnv {
        CheckEnv {
            resolver,
            policy: Some(policy),
            own: None,
            nat64: Nat64Table::default(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The same, refusing connections to the agent's own listener too.
    pub fn with_own_listener(mut self, own: Option<Arc<OwnListener>>) -> CheckEnv {
        self.own = own;
        self
    }

    /// The same, classifying IPv6 addresses under `nat64`'s prefixes.
    pub fn with_nat64(mut self, nat64: Nat64Table) -> CheckEnv {
        self.nat64 = nat64;
        self
    }

    /// Refuses `addr` when it is the agent's own listener.
    pub fn check_socket(&self, addr: SocketAddr) -> Result<(), Failure> {
        match &self.own {
            Some(own) => own.check(addr),
            None => Ok(()),
        }
    }

    /// Applies the address policy to every address.
    pub fn check_addresses(&self, addrs: &[IpAddr]) -> Result<(), Failure> {
        if let Some(policy) = &self.policy {
            for a in addrs {
                policy.check(*a)?;
            }
        }
        Ok(())
    }

    /// A client a check keeps per (target, family), built by `build` on first use. Ad-hoc
    /// targets are never cached, so `/probe` cannot grow memory.
    pub fn client<T, E>(
        &self,
        target: &Target,
        family: Family,
        kind: &'static str,
        build: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
    {
        if target.source == TargetSource::Adhoc {
            return build().map(Arc::new);
        }
        let key = (target.name.clone(), family, kind);
        if let Some(c) = self
            .clients
            .lock()
            .expect("client cache lock")
            .get(&key)
            .and_then(|c| Arc::clone(c).downcast::<T>().ok())
        {
            return Ok(c);
        }
        let built = Arc::new(build()?);
        self.clients
            .lock()
            .expect("client cache lock")
            .insert(key, Arc::clone(&built) as Arc<dyn Any + Send + Sync>);
        Ok(built)
    }
}
