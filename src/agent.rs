//! The running agent: the current config generation (targets, check environments, scheduler
//! tasks), VPC-endpoint refreshes, and reloads that swap generations only when the new config is
//! good. Serving HTTP is the serving layer's job and signals are `main`'s.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::checks::CheckEnv;
use crate::config::{Config, ConfigError, ConfigSource};
use crate::discovery::health::DiscoveryHealth;
use crate::discovery::{
    CloudFormationDiscovery, DiscoveryError, discover_cloudformation_found,
    discover_vpc_endpoints_found,
};
use crate::model::target::{Target, TargetSource};
use crate::net::guard::{AdhocPolicy, MetadataGuard};
use crate::net::nat64::{Discovery, Nat64Table};
use crate::net::own_listener::OwnListener;
use crate::net::resolver::DnsResolver;
use crate::report::emf::EmfSink;
use crate::report::metrics::{BuildLabels, Metrics};
use crate::report::results::{ReportSink, Results};
use crate::scheduler::{self, Phases, Readiness, SchedulerDeps};

/// One loaded config and what runs from it.
pub struct Generation {
    /// The validated config.
    pub config: Arc<Config>,
    /// Every target probed: configured, then discovered (CloudFormation, VPC endpoints);
    /// configured names win.
    pub targets: Vec<Arc<Target>>,
    /// Probe resources built from it.
    pub env: Arc<CheckEnv>,
    /// Probe resources for ad-hoc `/probe` targets: the same resolver under [`AdhocPolicy`].
    pub adhoc_env: Arc<CheckEnv>,
    /// The NAT64 prefixes this generation knows: its config's, and what discovery learned
    /// (shared with every generation of the agent).
    pub nat64: Nat64Table,
    /// What ad-hoc targets may reach.
    pub adhoc_policy: Arc<AdhocPolicy>,
    /// Stops this generation's scheduler tasks.
    cancel: CancellationToken,
    /// Endpoints `discovery.cloudformation` found for this generation (`None`: not configured).
    cfn_endpoints: Option<usize>,
    /// What the last `DescribeVpcEndpoints` found, shadowed names included: a refresh compares
    /// against this, not against `targets`, or a name an earlier source took would count as a
    /// change on every refresh.
    vpc_discovered: Vec<Arc<Target>>,
}

impl Generation {
    /// Builds a generation: `vpc_targets` are the last `ec2:DescribeVpcEndpoints` results.
    fn build(
        config: Arc<Config>,
        vpc_targets: Vec<Arc<Target>>,
        own: Option<Arc<OwnListener>>,
        nat64: &Nat64Table,
        cancel: CancellationToken,
    ) -> Result<Generation, ReloadError> {
        let resolver = DnsResolver::new(&config.nameservers, config.timeout)?;
        let nat64 = nat64.with_configured(&config.nat64.prefixes);
        let guard = MetadataGuard {
            nat64: nat64.clone(),
        };
        let vpc_discovered = vpc_targets.clone();
        let mut targets = config.targets.clone();
        let cfn = discover_cloudformation_found(&config.discovery, &config.discovery_defaults())?;
        let cfn_endpoints = cfn.as_ref().map(|f| f.endpoints);
        for t in cfn
            .map(|f| f.targets)
            .unwrap_or_default()
            .into_iter()
            .chain(vpc_targets)
        {
            if targets.iter().any(|x| x.name == t.name) {
                tracing::debug!(target = %t.name, "discovered target shadowed by an earlier one");
            } else {
                targets.push(t);
            }
        }
        let adhoc_policy = Arc::new(AdhocPolicy {
            allow: config.probe_endpoint.allow.clone(),
            guard: guard.clone(),
        });
        Ok(Generation {
            // Scheduled checks are guarded too: a configured target's server must not be able
            // to redirect them into the metadata services.
            env: Arc::new(
                CheckEnv::with_policy(resolver.clone(), Arc::new(guard))
                    .with_own_listener(own.clone())
                    .with_nat64(nat64.clone()),
            ),
            adhoc_env: Arc::new(
                CheckEnv::with_policy(resolver, adhoc_policy.clone())
                    .with_own_listener(own)
                    .with_nat64(nat64.clone()),
            ),
            nat64,
            adhoc_policy,
            config,
            targets,
            cancel,
            cfn_endpoints,
            vpc_discovered,
        })
    }

    /// A target by name (configured or discovered).
    pub fn target(&self, name: &str) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.name == name)
    }

    fn vpc_targets(&self) -> Vec<Arc<Target>> {
        self.vpc_discovered.clone()
    }
}

/// Why a reload was refused; the old generation keeps running.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config did not validate.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The resolver could not be built from it.
    #[error("{0}")]
    Resolver(#[from] crate::net::resolver::ResolverSetupError),
    /// `discovery.cloudformation` could not be read.
    #[error("{0}")]
    Discovery(#[from] DiscoveryError),
    /// The reading task failed.
    #[error("the reload task failed: {0}")]
    Task(String),
    /// A concurrent request's reload, which started after this request, ended so.
    #[error("{0}")]
    Shared(String),
}

/// Options the binary passes in.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Labels for `dualprobe_build_info` beyond the version (ECS task metadata).
    pub build_labels: BuildLabels,
    /// Extra report sinks (test recorders).
    pub sinks: Vec<Arc<dyn ReportSink>>,
    /// The EMF writer (`--emf`): cycle reports, the heartbeat and discovery attempts.
    pub emf: Option<Arc<EmfSink>>,
    /// The bound listen socket's address: checks may not connect back into it, and `/probe`
    /// refuses requests this agent's own checks send (see `net::own_listener`).
    pub listen: Option<std::net::SocketAddr>,
}

/// Shared agent state: what HTTP handlers and the reload path see.
pub struct Agent {
    /// Where config is (re)read from.
    pub source: ConfigSource,
    /// The metrics registry `/metrics` renders.
    pub registry: Registry,
    /// Metric handles.
    pub metrics: Metrics,
    /// Latest results.
    pub results: Arc<Results>,
    /// First-cycle readiness.
    pub readiness: Arc<Readiness>,
    /// Each (target, family)'s next run, so a generation that keeps a pair keeps its phase.
    phases: Arc<Phases>,
    /// Tracks every spawned task, for shutdown.
    pub tracker: TaskTracker,
    /// Fires on shutdown.
    pub shutdown: CancellationToken,
    /// The last attempt of each discovery source (status page, `dualprobe_discovery_*`).
    pub discovery: DiscoveryHealth,
    emf: Option<Arc<EmfSink>>,
    /// This agent's listener and origin id (from `RunOptions::listen`).
    pub own_listener: Option<Arc<OwnListener>>,
    /// Holds what NAT64 discovery learned, for every generation (each adds its config's).
    nat64: Nat64Table,
    current: RwLock<Arc<Generation>>,
    /// Serializes reloads and VPC swaps; holds when the last reload started and how it ended, so
    /// requests that queued behind a reload which started after them share its result.
    reload_lock: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl Agent {
    /// Builds the agent from a first, already validated config and starts its scheduler.
    pub fn start(
        source: ConfigSource,
        config: Config,
        options: RunOptions,
        shutdown: CancellationToken,
    ) -> Result<Arc<Agent>, ReloadError> {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let mut build = options.build_labels.clone();
        build.version = env!("CARGO_PKG_VERSION").to_string();
        metrics.set_build_info(build);
        let mut sinks = options.sinks.clone();
        if let Some(emf) = &options.emf {
            registry.register(
                "dualprobe_emf_dropped",
                "EMF batches dropped because stdout did not drain",
                emf.dropped(),
            );
            sinks.push(Arc::clone(emf) as Arc<dyn ReportSink>);
        }
        let results = Arc::new(Results::new(metrics.clone(), sinks));
        let own_listener = options.listen.map(|l| Arc::new(OwnListener::new(l)));
        let nat64 = Nat64Table::default();
        let generation = Arc::new(Generation::build(
            Arc::new(config),
            Vec::new(),
            own_listener.clone(),
            &nat64,
            shutdown.child_token(),
        )?);
        let agent = Arc::new(Agent {
            source,
            registry,
            metrics,
            results,
            readiness: Arc::new(Readiness::new()),
            phases: Arc::default(),
            tracker: TaskTracker::new(),
            shutdown,
            discovery: DiscoveryHealth::default(),
            emf: options.emf.clone(),
            own_listener,
            nat64,
            current: RwLock::new(Arc::clone(&generation)),
            reload_lock: tokio::sync::Mutex::new(None),
        });
        agent
            .metrics
            .checks
            .set_duration_buckets(generation.config.metrics.duration_buckets.as_deref());
        agent.metrics.set_targets(&[], &generation.targets);
        agent.metrics.reload_result(true);
        agent.readiness.expect(&generation.targets);
        if let Some(emf) = &agent.emf {
            let cancel = agent.shutdown.clone();
            emf.spawn_heartbeat(crate::report::emf::HEARTBEAT_PERIOD, &agent.tracker, cancel);
        }
        let cfn = generation.config.discovery.cloudformation.as_ref();
        agent.record_cloudformation(cfn, Ok(generation.cfn_endpoints));
        agent.spawn_generation(&generation, false);
        tracing::info!(
            origin = %generation.config.origin,
            targets = generation.targets.len(),
            "config loaded"
        );
        Ok(agent)
    }

    fn spawn_generation(self: &Arc<Self>, g: &Generation, vpc_refresh_waits: bool) {
        let deps = SchedulerDeps {
            env: Arc::clone(&g.env),
            results: Arc::clone(&self.results) as Arc<dyn scheduler::CycleRecorder>,
            concurrency: Arc::new(Semaphore::new(g.config.concurrency)),
            starts_per_second: g.config.starts_per_second,
            phases: Arc::clone(&self.phases),
            readiness: Arc::clone(&self.readiness),
            run: scheduler::real_cycle(),
        };
        if g.config.nat64.discovery {
            self.spawn_nat64_discovery(g, deps);
        } else {
            // Discovery off (or turned off by this reload): nothing learned stands.
            if self.nat64.set_discovered(Vec::new()) {
                tracing::info!("NAT64 discovery is off; discovered prefixes forgotten");
            }
            self.metrics.set_nat64_prefixes(&g.nat64.known());
            scheduler::spawn(&g.targets, deps, &self.tracker, g.cancel.clone());
        }
        self.spawn_vpc_refresh(g, vpc_refresh_waits);
    }

    /// RFC 7050 discovery every `resolver.nat64_refresh` while `g` lives. Its scheduler starts
    /// after the first round (at most one timeout), so no first cycle calls a synthesized
    /// address native for want of its prefix.
    fn spawn_nat64_discovery(self: &Arc<Self>, g: &Generation, deps: SchedulerDeps) {
        let agent = Arc::clone(self);
        let (targets, table) = (g.targets.clone(), g.nat64.clone());
        let resolver = g.env.resolver.clone();
        let (cancel, refresh, first_wait) =
            (g.cancel.clone(), g.config.nat64.refresh, g.config.timeout);
        let tracker = self.tracker.clone();
        self.tracker.spawn(async move {
            let mut deps = Some(deps);
            loop {
                let round = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    r = tokio::time::timeout(first_wait, crate::net::nat64::discover(&resolver)) => r,
                };
                let round = round.unwrap_or_else(|_| {
                    Discovery::Failed(crate::net::resolver::LookupError::Timeout {
                        name: crate::net::nat64::DISCOVERY_NAME.to_string(),
                    })
                });
                agent.apply_nat64(&table, round);
                if let Some(deps) = deps.take() {
                    scheduler::spawn(&targets, deps, &tracker, cancel.clone());
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(refresh) => {}
                }
            }
        });
    }

    /// What one discovery round means for the shared table, the metric and the log: a failed
    /// round keeps what was known.
    fn apply_nat64(&self, table: &Nat64Table, round: Discovery) {
        match round {
            Discovery::Found { prefixes, ignored } => {
                if !ignored.is_empty() {
                    tracing::warn!(
                        ?ignored,
                        "ipv4only.arpa answered addresses that reveal no RFC 6052 NAT64 prefix"
                    );
                }
                let shown: Vec<String> = prefixes.iter().map(ToString::to_string).collect();
                if self.nat64.set_discovered(prefixes) {
                    tracing::info!(prefixes = ?shown, "NAT64 prefixes discovered (RFC 7050)");
                }
            }
            Discovery::NoDns64 => {
                if self.nat64.set_discovered(Vec::new()) {
                    tracing::info!(
                        "ipv4only.arpa has no AAAA: no DNS64, discovered prefixes forgotten"
                    );
                }
            }
            Discovery::Failed(e) => {
                tracing::warn!(error = %e, "NAT64 discovery failed; keeping the prefixes known before");
            }
        }
        self.metrics.set_nat64_prefixes(&table.known());
    }

    /// Re-discovers VPC endpoints every `refresh` while this generation lives; a changed set
    /// swaps in a new generation (same config), a failure keeps the current set.
    fn spawn_vpc_refresh(self: &Arc<Self>, g: &Generation, wait_first: bool) {
        let Some(v) = g.config.discovery.vpc_endpoints.clone() else {
            return;
        };
        let agent = Arc::clone(self);
        let config = Arc::clone(&g.config);
        let defaults = config.discovery_defaults();
        let resolver = g.env.resolver.clone();
        let cancel = g.cancel.clone();
        let current: Vec<(String, String)> = g
            .vpc_targets()
            .iter()
            .map(|t| (t.name.clone(), t.host.to_string()))
            .collect();
        self.tracker.spawn(async move {
            if wait_first {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(v.refresh) => {}
                }
            }
            loop {
                let found = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    r = discover_vpc_endpoints_found(&config.discovery, &defaults, &resolver, None) => r,
                };
                // A round that finished as its generation was replaced must not record: the
                // new generation may no longer configure the source (its series were removed).
                if cancel.is_cancelled() {
                    return;
                }
                let outcome = match &found {
                    Ok(f) => Ok(f.as_ref().map_or(0, |f| f.endpoints)),
                    Err(e) => Err(e.to_string()),
                };
                agent.record_discovery(TargetSource::VpcEndpoints, &v.vpc_id, outcome);
                match found.map(Option::unwrap_or_default) {
                    Ok(crate::discovery::Found { targets, .. }) => {
                        let mut seen: Vec<(String, String)> = targets
                            .iter()
                            .map(|t| (t.name.clone(), t.host.to_string()))
                            .collect();
                        seen.sort();
                        let mut now = current.clone();
                        now.sort();
                        if seen != now {
                            tracing::info!(
                                vpc_id = %v.vpc_id,
                                endpoints = targets.len(),
                                "VPC endpoints changed"
                            );
                            if agent.swap_discovered(&config, targets).await {
                                return; // the new generation runs its own refresh
                            }
                            // The swap failed: this generation keeps running, and so does
                            // its refresh, which tries again at the next round.
                        }
                    }
                    Err(e) => tracing::warn!(
                        vpc_id = %v.vpc_id,
                        error = %e,
                        "VPC endpoint discovery failed; keeping the previous endpoints"
                    ),
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(v.refresh) => {}
                }
            }
        });
    }

    /// Swaps in a generation of the same config with a new VPC endpoint set. True when the
    /// current generation was replaced (by this swap, or by a reload that got there first), so
    /// its refresh loop may end; false when the swap failed and the old set keeps running.
    async fn swap_discovered(
        self: &Arc<Self>,
        config: &Arc<Config>,
        vpc: Vec<Arc<Target>>,
    ) -> bool {
        let _serial = self.reload_lock.lock().await;
        let old = self.current();
        if !Arc::ptr_eq(&old.config, config) {
            return true; // a reload got there first
        }
        // Building reads the CloudFormation template: off the runtime. The same `Arc<Config>`:
        // what hangs off the config (the `/probe` gate) survives a swap.
        let (config_copy, cancel) = (Arc::clone(config), self.shutdown.child_token());
        let (own, nat64) = (self.own_listener.clone(), self.nat64.clone());
        let built = tokio::task::spawn_blocking(move || {
            Generation::build(config_copy, vpc, own, &nat64, cancel)
        })
        .await
        .unwrap_or_else(|e| Err(ReloadError::Task(e.to_string())));
        match built {
            Ok(new) => {
                let cfn = config.discovery.cloudformation.as_ref();
                self.record_cloudformation(cfn, Ok(new.cfn_endpoints));
                self.install(old, new, true);
                true
            }
            Err(e) => {
                if let ReloadError::Discovery(d) = &e {
                    self.record_cloudformation(config.discovery.cloudformation.as_ref(), Err(d));
                }
                tracing::warn!(error = %e, "cannot apply discovered VPC endpoints; keeping the previous ones");
                false
            }
        }
    }

    /// Records a `discovery.cloudformation` attempt (a generation build): the endpoints it
    /// found, or its error. Nothing when the section is absent.
    fn record_cloudformation(
        &self,
        cfn: Option<&CloudFormationDiscovery>,
        outcome: Result<Option<usize>, &DiscoveryError>,
    ) {
        let (Some(c), outcome) = (cfn, outcome) else {
            return;
        };
        let outcome = match outcome {
            Ok(Some(n)) => Ok(n),
            Ok(None) => return,
            Err(e) => Err(e.to_string()),
        };
        let subject = c.template.display().to_string();
        self.record_discovery(TargetSource::Cloudformation, &subject, outcome);
    }

    /// Records one discovery attempt: status page, `dualprobe_discovery_*`, the EMF line, and a
    /// WARN when it found no endpoints (failures are logged where they happen).
    fn record_discovery(
        &self,
        source: TargetSource,
        subject: &str,
        outcome: Result<usize, String>,
    ) {
        let status = self.discovery.record(source, subject, outcome);
        self.metrics.set_discovery(&status);
        if let Some(emf) = &self.emf {
            emf.discovery(&status);
        }
        if status.succeeded() && status.endpoints == Some(0) {
            tracing::warn!(
                source = source.as_str(),
                subject,
                "discovery found no endpoints; nothing discovered is probed"
            );
        }
    }

    /// Stops `old`, starts `new`, and moves metrics and results over.
    fn install(self: &Arc<Self>, old: Arc<Generation>, new: Generation, vpc_refresh_waits: bool) {
        let new = Arc::new(new);
        old.cancel.cancel();
        for gone in self.discovery.retain_configured(&new.config.discovery) {
            self.metrics.forget_discovery(gone);
        }
        self.metrics
            .checks
            .set_duration_buckets(new.config.metrics.duration_buckets.as_deref());
        self.metrics.set_targets(&old.targets, &new.targets);
        self.results.retain(&new.targets);
        self.spawn_generation(&new, vpc_refresh_waits);
        *self.current.write().expect("generation lock") = new;
    }

    /// The current generation.
    pub fn current(&self) -> Arc<Generation> {
        Arc::clone(&self.current.read().expect("generation lock"))
    }

    /// Re-reads the config. A bad one is logged and refused (the old one keeps running and
    /// `dualprobe_config_last_reload_successful` drops to 0); a good one replaces it.
    pub async fn reload(self: &Arc<Self>) -> Result<(), ReloadError> {
        // In a task of its own: an HTTP client that hangs up drops its handler, and with it
        // this future; a reload half done (config read, never installed) must not be lost so.
        let agent = Arc::clone(self);
        tokio::spawn(async move { agent.reload_serialized().await })
            .await
            .unwrap_or_else(|e| Err(ReloadError::Task(e.to_string())))
    }

    async fn reload_serialized(self: &Arc<Self>) -> Result<(), ReloadError> {
        let requested = std::time::Instant::now();
        let mut last = self.reload_lock.lock().await;
        if let Some((started, result)) = &*last
            && *started >= requested
        {
            // Coalesced: a reload that started after this request has just read the config.
            return result.clone().map_err(ReloadError::Shared);
        }
        let started = std::time::Instant::now();
        let result = self.reload_now().await;
        *last = Some((
            started,
            result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        ));
        result
    }

    async fn reload_now(self: &Arc<Self>) -> Result<(), ReloadError> {
        let old = self.current();
        // Reading files (config, template, CA bundles, token) blocks: off the runtime, so
        // `/-/healthy`, `/metrics` and the checks keep running while a reload reads.
        let source = self.source.clone();
        let old_vpc = old.vpc_targets();
        let cancel = self.shutdown.child_token();
        let (own, nat64) = (self.own_listener.clone(), self.nat64.clone());
        let (loaded, cfn) = tokio::task::spawn_blocking(move || {
            // The template a failed build read, for discovery health.
            let mut cfn: Option<CloudFormationDiscovery> = None;
            let loaded = source.load().map_err(ReloadError::from).and_then(|c| {
                cfn.clone_from(&c.discovery.cloudformation);
                // Keep the last VPC endpoints while the new generation re-discovers them.
                let vpc = if c.discovery.vpc_endpoints.is_some() {
                    old_vpc
                } else {
                    Vec::new()
                };
                Generation::build(Arc::new(c), vpc, own, &nat64, cancel)
            });
            (loaded, cfn)
        })
        .await
        .unwrap_or_else(|e| (Err(ReloadError::Task(e.to_string())), None));
        match &loaded {
            Ok(new) => self.record_cloudformation(cfn.as_ref(), Ok(new.cfn_endpoints)),
            Err(ReloadError::Discovery(d)) => self.record_cloudformation(cfn.as_ref(), Err(d)),
            Err(_) => {}
        }
        let new = match loaded {
            Ok(v) => v,
            Err(e) => {
                self.metrics.reload_result(false);
                tracing::error!(error = %e, "config reload refused; the previous config keeps running");
                return Err(e);
            }
        };
        if new.config.listen != old.config.listen {
            tracing::warn!(
                old = %old.config.listen,
                new = %new.config.listen,
                "`listen` changed; it takes effect on restart"
            );
        }
        let (origin, count) = (new.config.origin.clone(), new.targets.len());
        self.install(old, new, false);
        self.metrics.reload_result(true);
        tracing::info!(origin = %origin, targets = count, "config reloaded");
        Ok(())
    }
}

impl Agent {
    /// Stops every task the agent spawned (after `shutdown` fired), waiting at most `grace`.
    pub async fn stop(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop within {grace:?}");
        }
        // The last cycles' EMF lines are still queued for the writer thread: write them.
        if let Some(emf) = self.emf.clone() {
            let flushed =
                tokio::task::spawn_blocking(move || emf.flush(Duration::from_millis(500))).await;
            if !matches!(flushed, Ok(true)) {
                tracing::warn!("EMF lines still queued at exit were not all written");
            }
        }
    }
}
