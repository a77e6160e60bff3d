//! The running agent: the current config generation (targets, probe environment, scheduler
//! tasks), reloads that swap generations only when the new config is good, and [`run`], which
//! serves HTTP on a given listener until a shutdown token fires.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ConfigError, ConfigSource};
use crate::env::ProbeEnv;
use crate::guard::AdhocPolicy;
use crate::probe_api::ProbeGate;
use crate::metrics::{BuildLabels, Metrics};
use crate::resolver::DnsResolver;
use crate::results::{ReportSink, Results};
use crate::scheduler::{self, Readiness, SchedulerDeps};

/// One loaded config and what runs from it.
pub struct Generation {
    /// The validated config.
    pub config: Arc<Config>,
    /// Probe resources built from it.
    pub env: Arc<ProbeEnv>,
    /// Probe resources for ad-hoc `/probe` targets: the same resolver under [`AdhocPolicy`].
    pub adhoc_env: Arc<ProbeEnv>,
    /// What ad-hoc targets may reach.
    pub adhoc_policy: Arc<AdhocPolicy>,
    /// Rate limit and concurrency cap of `/probe`.
    pub probe_gate: ProbeGate,
    /// Stops this generation's scheduler tasks.
    cancel: CancellationToken,
}

impl Generation {
    fn build(config: Config, cancel: CancellationToken) -> Result<Generation, ReloadError> {
        let resolver = DnsResolver::new(&config.nameservers, config.timeout)?;
        let adhoc_policy = Arc::new(AdhocPolicy {
            allow: config.probe.allow.clone(),
        });
        Ok(Generation {
            env: Arc::new(ProbeEnv::new(resolver.clone())),
            adhoc_env: Arc::new(ProbeEnv::with_policy(resolver, adhoc_policy.clone())),
            adhoc_policy,
            probe_gate: ProbeGate::new(&config.probe),
            config: Arc::new(config),
            cancel,
        })
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
    Resolver(#[from] crate::resolver::ResolverSetupError),
}

/// Options the binary passes in.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Labels for `dualprobe_build_info` beyond the version (ECS task metadata).
    pub build_labels: BuildLabels,
    /// Extra report sinks (e.g. the EMF writer).
    pub sinks: Vec<Arc<dyn ReportSink>>,
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
    /// Tracks every spawned task, for shutdown.
    pub tracker: TaskTracker,
    /// Fires on shutdown.
    pub shutdown: CancellationToken,
    current: RwLock<Arc<Generation>>,
    reload_lock: tokio::sync::Mutex<()>,
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
        let results = Arc::new(Results::new(metrics.clone(), options.sinks.clone()));
        let generation = Arc::new(Generation::build(config, shutdown.child_token())?);
        let agent = Arc::new(Agent {
            source,
            registry,
            metrics,
            results,
            readiness: Arc::new(Readiness::new()),
            tracker: TaskTracker::new(),
            shutdown,
            current: RwLock::new(Arc::clone(&generation)),
            reload_lock: tokio::sync::Mutex::new(()),
        });
        agent.metrics.set_targets(&[], &generation.config.targets);
        agent.metrics.reload_result(true);
        agent.readiness.expect(&generation.config.targets);
        agent.spawn_generation(&generation);
        tracing::info!(
            origin = %generation.config.origin,
            targets = generation.config.targets.len(),
            "config loaded"
        );
        Ok(agent)
    }

    fn spawn_generation(&self, g: &Generation) {
        let deps = SchedulerDeps {
            env: Arc::clone(&g.env),
            results: Arc::clone(&self.results),
            concurrency: Arc::new(Semaphore::new(g.config.concurrency)),
            readiness: Arc::clone(&self.readiness),
            run: scheduler::real_cycle(),
        };
        scheduler::spawn(&g.config.targets, deps, &self.tracker, g.cancel.clone());
    }

    /// The current generation.
    pub fn current(&self) -> Arc<Generation> {
        Arc::clone(&self.current.read().expect("generation lock"))
    }

    /// Re-reads the config. A bad one is logged and refused (the old one keeps running and
    /// `dualprobe_config_last_reload_successful` drops to 0); a good one replaces it.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let _serial = self.reload_lock.lock().await;
        let loaded = self
            .source
            .load()
            .map_err(ReloadError::from)
            .and_then(|c| Generation::build(c, self.shutdown.child_token()));
        let new = match loaded {
            Ok(v) => v,
            Err(e) => {
                self.metrics.reload_result(false);
                tracing::error!(error = %e, "config reload refused; the previous config keeps running");
                return Err(e);
            }
        };
        let old = self.current();
        if new.config.listen != old.config.listen {
            tracing::warn!(
                old = %old.config.listen,
                new = %new.config.listen,
                "`listen` changed; it takes effect on restart"
            );
        }
        let new = Arc::new(new);
        old.cancel.cancel();
        self.metrics.set_targets(&old.config.targets, &new.config.targets);
        self.results.retain(&new.config.targets);
        self.spawn_generation(&new);
        *self.current.write().expect("generation lock") = Arc::clone(&new);
        self.metrics.reload_result(true);
        tracing::info!(
            origin = %new.config.origin,
            targets = new.config.targets.len(),
            "config reloaded"
        );
        Ok(())
    }
}

/// Serves the agent on `listener` until `shutdown` fires, then stops every task (waiting at most
/// `grace` for them).
pub async fn run(
    listener: TcpListener,
    agent: Arc<Agent>,
    grace: Duration,
) -> std::io::Result<()> {
    let shutdown = agent.shutdown.clone();
    #[cfg(unix)]
    {
        // SIGHUP reloads, like Prometheus.
        let agent = Arc::clone(&agent);
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let cancel = shutdown.clone();
        agent.clone().tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    s = hup.recv() => {
                        if s.is_none() { break; }
                        tracing::info!("SIGHUP: reloading config");
                        let _ = agent.reload().await;
                    }
                }
            }
        });
    }
    let app = crate::server::router(Arc::clone(&agent));
    let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let result = serve.await;
    agent.tracker.close();
    if tokio::time::timeout(grace, agent.tracker.wait()).await.is_err() {
        tracing::warn!("some tasks did not stop within {grace:?}");
    }
    result
}
