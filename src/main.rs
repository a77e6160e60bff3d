//! The `dualprobe` binary: command line, logging, signals. Everything else is in the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use dualprobe::agent::{Agent, RunOptions};
use dualprobe::checks::CheckEnv;
use dualprobe::checks::run_cycle;
use dualprobe::config::{ConfigSource, parse_nameserver};
use dualprobe::model::family::Family;
use dualprobe::net::nat64::Nat64Table;
use dualprobe::net::resolver::DnsResolver;
use dualprobe::serve::adhoc::{self, AdhocRequest};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::Targets;

/// Per-address-family reachability prober for dual-stack ECS/Fargate tasks.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler and serve /metrics (the default).
    Run(RunArgs),
    /// Validate a config file: exit 0, or print every problem with file, line and field.
    CheckConfig {
        /// The YAML file.
        file: PathBuf,
    },
    /// Probe a host once, per family, and print a table (or JSON).
    Probe(ProbeArgs),
    /// Trace the hops to a host per family (tracepath-style, no raw sockets) and print a table.
    Trace(TraceArgs),
    /// Exit 0 when the local agent answers its health endpoint (container HealthCheck).
    Healthcheck {
        /// The URL to ask (default: where the config listens; loopback for a wildcard address).
        #[arg(long)]
        url: Option<String>,
    },
    /// List the PrivateLink endpoint targets a CloudFormation template declares.
    Targets {
        /// The template (YAML or JSON).
        #[arg(long = "from-template")]
        from_template: PathBuf,
        /// The region `${AWS::Region}` stands for.
        #[arg(long)]
        region: String,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Config file (else DUALPROBE_CONFIG, DUALPROBE_CONFIG_FILE, or the embedded default).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Listen address, overriding the config's `listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Also write CloudWatch EMF lines to stdout, one per check per cycle (logs go to stderr).
    #[arg(long)]
    emf: bool,
    /// CloudWatch namespace of the EMF metrics.
    #[arg(long, default_value = "dualprobe")]
    emf_namespace: String,
}

#[derive(Clone, Copy, Default, ValueEnum)]
enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum FamilyArg {
    Ipv4,
    Ipv6,
    Both,
}

#[derive(Args)]
struct ProbeArgs {
    /// HOST[:PORT], [IPV6]:PORT, or http(s)://HOST[:PORT]/PATH; or the name of a configured target.
    target: String,
    /// Checks to run (repeatable or comma-separated): dns, tcp, tls, http, ...
    #[arg(long = "check")]
    checks: Vec<String>,
    /// Which families.
    #[arg(long, value_enum, default_value_t = FamilyArg::Both)]
    family: FamilyArg,
    /// Nameserver IP:PORT to use instead of the system's (repeatable).
    #[arg(long = "nameserver")]
    nameservers: Vec<String>,
    /// Per-check timeout.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    timeout: Duration,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProtoArg {
    Udp,
    Tcp,
}

#[derive(Args)]
struct TraceArgs {
    /// HOST[:PORT] or [IPV6]:PORT (default port 443).
    host: String,
    /// Which families.
    #[arg(long, value_enum, default_value_t = FamilyArg::Both)]
    family: FamilyArg,
    /// UDP datagrams or TCP SYNs, to the host's port.
    #[arg(long, value_enum, default_value_t = ProtoArg::Udp)]
    proto: ProtoArg,
    /// The highest hop limit.
    #[arg(long, default_value_t = 30)]
    max_hops: u8,
    /// How long each wave of hops waits for answers.
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    wait: Duration,
}

/// `--timeout`: a duration such as 5s, at most 7d.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() || d > dualprobe::config::MAX_DURATION {
        return Err(format!("`{s}` must be more than 0 and at most 7d"));
    }
    Ok(d)
}

/// The log filter from `DUALPROBE_LOG`, else `RUST_LOG`, else `info`: `LEVEL` and
/// `TARGET=LEVEL` directives, comma-separated. A filter that does not parse is reported (once
/// logging is up) and `info` is used.
fn log_filter() -> (Targets, Option<String>) {
    let info = Targets::new().with_default(tracing::Level::INFO);
    for var in ["DUALPROBE_LOG", "RUST_LOG"] {
        if let Ok(value) = std::env::var(var) {
            return match value.parse::<Targets>() {
                Ok(filter) => (filter, None),
                Err(e) => (
                    info,
                    Some(format!(
                        "{var}={value:?} is not a log filter ({e}); logging at info"
                    )),
                ),
            };
        }
    }
    (info, None)
}

/// `text` with every control character (newline, carriage return, ESC, ...) written as its
/// escape (`\n`, `\u{1b}`).
fn escape_controls(text: &str) -> String {
    if !text.contains(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::field::MakeExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, problem) = log_filter();
    // Colour only for a person at a terminal: awslogs would store the escape codes.
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        // Field values are written with every control character escaped, so a newline or an
        // escape sequence inside a value (a `/probe` target, a server's error text) can never
        // forge a log line or drive a terminal. JSON logs escape by construction.
        LogFormat::Text => registry
            .with(
                layer.fmt_fields(
                    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                        let text = escape_controls(&format!("{value:?}"));
                        if field.name() == "message" {
                            write!(w, "{text}")
                        } else {
                            write!(w, "{field}={text}")
                        }
                    })
                    .delimited(" "),
                ),
            )
            .init(),
        // Our events carry a `target` field (the probe target); tracing's own `target` (the module
        // path) would repeat the key in the same JSON object.
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_target(false))
            .init(),
    }
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // One worker by default: probing is I/O-bound, and with more workers most CPU goes to
    // waking threads (measured in docs/benchmarks.md). DUALPROBE_WORKER_THREADS overrides it.
    let workers = match std::env::var("DUALPROBE_WORKER_THREADS") {
        Err(_) => 1,
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => n,
            _ => {
                tracing::warn!(
                    "DUALPROBE_WORKER_THREADS={v:?} is not a number from 1 to 64; using 1 worker"
                );
                1
            }
        },
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn main() -> ExitCode {
    // One crypto provider for every rustls user (reqwest looks up the process default).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(file),
        Some(Command::Probe(args)) => {
            init_logging(cli.run.log_format);
            exit(runtime().and_then(|rt| rt.block_on(probe_command(args, cli.run.config))))
        }
        Some(Command::Trace(args)) => {
            init_logging(cli.run.log_format);
            exit(runtime().and_then(|rt| rt.block_on(trace_command(args))))
        }
        Some(Command::Healthcheck { url }) => exit(healthcheck(url, cli.run.config)),
        Some(Command::Targets {
            from_template,
            region,
        }) => list_template_targets(from_template, region),
        Some(Command::Run(args)) => {
            let args = RunArgs {
                config: args.config.or(cli.run.config),
                ..args
            };
            init_logging(args.log_format);
            exit(runtime().and_then(|rt| rt.block_on(run(args))))
        }
        None => {
            init_logging(cli.run.log_format);
            exit(runtime().and_then(|rt| rt.block_on(run(cli.run))))
        }
    }
}

fn exit(r: Result<bool>) -> ExitCode {
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("dualprobe: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn list_template_targets(template: PathBuf, region: String) -> ExitCode {
    match dualprobe::discovery::cloudformation::discover_template_file(&template, &region) {
        Ok(found) => {
            print!("{}", dualprobe::discovery::render_discovered(&found));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn check_config(file: PathBuf) -> ExitCode {
    match ConfigSource::File(file.clone()).load() {
        Ok(c) => {
            println!("{}: ok ({} targets)", file.display(), c.targets.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: RunArgs) -> Result<bool> {
    // Registered before anything is loaded or logged: until then SIGHUP's default action would
    // kill the process, and a test (or an operator) reacts to "config loaded" by sending one.
    let signals = Signals::register();
    let source = ConfigSource::discover(args.config.clone());
    let config = source.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let listen = args.listen.unwrap_or(config.listen);
    let listener = bind_dual_stack(listen).with_context(|| format!("listening on {listen}"))?;
    tracing::info!(listen = %listener.local_addr()?, version = env!("CARGO_PKG_VERSION"), "dualprobe starting");
    let shutdown = CancellationToken::new();
    let mut options = RunOptions {
        listen: Some(listener.local_addr()?),
        ..RunOptions::default()
    };
    // ECS task metadata: labels on build_info (not on every series), addresses in the log.
    match dualprobe::aws::task_metadata::from_env().await {
        Ok(Some(m)) => {
            tracing::info!(
                cluster = %m.cluster,
                task_family = %m.family,
                availability_zone = m.availability_zone.as_deref().unwrap_or(""),
                ipv4 = ?m.ipv4,
                ipv6 = ?m.ipv6,
                subnets = ?m.subnet_cidrs,
                "running in an ECS task"
            );
            options.build_labels = dualprobe::report::metrics::BuildLabels::from_task_metadata(&m);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot read ECS task metadata; build_info carries no task labels")
        }
    }
    if args.emf {
        let task = dualprobe::report::emf::EmfTask::from_build_labels(&options.build_labels);
        options.emf = Some(Arc::new(dualprobe::report::emf::EmfSink::stdout(
            &args.emf_namespace,
            task,
        )));
    }
    let agent = Agent::start(source, config, options, shutdown.clone())?;
    tokio::spawn(handle_signals(
        signals,
        Arc::clone(&agent),
        shutdown.clone(),
    ));
    let served = dualprobe::serve::serve(listener, Arc::clone(&agent), shutdown).await;
    agent.stop(Duration::from_millis(800)).await;
    served?;
    tracing::info!("dualprobe stopped");
    Ok(true)
}

/// `[::]:PORT` accepts IPv4 too (not v6-only), so one socket serves both families.
fn bind_dual_stack(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    // The kernel's accept queue, capped by net.core.somaxconn (4096 since Linux 5.4). When it is
    // full a new SYN is dropped and the client retries only after 1 s, then 3 s: under a flood
    // of reconnecting clients a short queue, not the server, would make a scrape miss its
    // deadline. A queued connection costs the kernel a socket, not us a file descriptor.
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// The signals the agent handles, each registered apart: SIGHUP failing must not leave SIGTERM
/// handled by nobody.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn register() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for {name}");
                    None
                }
            };
            Signals {
                term: listen(SignalKind::terminate(), "SIGTERM"),
                int: listen(SignalKind::interrupt(), "SIGINT"),
                hup: listen(SignalKind::hangup(), "SIGHUP"),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }
}

/// The process's signals, handled here only: SIGHUP reloads the config (like Prometheus),
/// SIGTERM and SIGINT stop the agent gracefully.
async fn handle_signals(signals: Signals, agent: Arc<Agent>, shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        let Signals {
            mut term,
            mut int,
            mut hup,
        } = signals;
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        loop {
            tokio::select! {
                _ = next(&mut term) => {
                    tracing::info!("SIGTERM: shutting down");
                    break;
                }
                _ = next(&mut int) => {
                    tracing::info!("SIGINT: shutting down");
                    break;
                }
                _ = next(&mut hup) => {
                    tracing::info!("SIGHUP: reloading config");
                    // Not awaited here: a reload must not delay a SIGTERM behind it.
                    let agent = Arc::clone(&agent);
                    tokio::spawn(async move {
                        let _ = agent.reload().await;
                    });
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (signals, agent);
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}

async fn probe_command(args: ProbeArgs, config: Option<PathBuf>) -> Result<bool> {
    let families = match args.family {
        FamilyArg::Ipv4 => vec![Family::Ipv4],
        FamilyArg::Ipv6 => vec![Family::Ipv6],
        FamilyArg::Both => Family::ALL.to_vec(),
    };
    let config = match config {
        Some(p) => Some(
            ConfigSource::File(p)
                .load()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        None => None,
    };
    let mut nameservers = Vec::new();
    for ns in &args.nameservers {
        nameservers
            .push(parse_nameserver(ns).with_context(|| {
                format!("`{ns}` is not a nameserver address like 127.0.0.1:53")
            })?);
    }
    if nameservers.is_empty()
        && let Some(c) = &config
    {
        nameservers = c.nameservers.clone();
    }
    let configured = config
        .as_ref()
        .and_then(|c| c.target(&args.target).cloned());
    let target = match configured {
        Some(t) if args.checks.is_empty() => {
            let mut t = (*t).clone();
            t.families.retain(|f| families.contains(f));
            Arc::new(t)
        }
        _ => adhoc::build(&AdhocRequest {
            target: args.target.clone(),
            checks: args.checks.clone(),
            families,
            timeout: args.timeout,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let resolver = DnsResolver::new(&nameservers, target.timeout)?;
    // The config's NAT64 prefixes, and one discovery round when it asks for discovery, so the
    // table says whether each IPv6 address was native or synthesized.
    let nat64 = Nat64Table::new(config.as_ref().map_or(&[][..], |c| &c.nat64.prefixes));
    if config.as_ref().is_some_and(|c| c.nat64.discovery) && target.families.contains(&Family::Ipv6)
    {
        match dualprobe::net::nat64::discover(&resolver).await {
            dualprobe::net::nat64::Discovery::Found { prefixes, .. } => {
                nat64.set_discovered(prefixes);
            }
            dualprobe::net::nat64::Discovery::NoDns64 => {}
            dualprobe::net::nat64::Discovery::Failed(e) => {
                eprintln!("NAT64 discovery failed: {e}");
            }
        }
    }
    let env = CheckEnv::new(resolver).with_nat64(nat64);
    let mut reports = Vec::new();
    for &f in &target.families {
        reports.push(run_cycle(&target, f, &env, false).await);
    }
    let all_met = reports.iter().all(|r| r.expectation_met.unwrap_or(true));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!(
            "{}",
            dualprobe::report::cli_table::render(&target.name, &reports)
        );
    }
    Ok(all_met)
}

/// `dualprobe trace`: the hop table per family; true when every family reached the host.
async fn trace_command(args: TraceArgs) -> Result<bool> {
    use dualprobe::checks::trace::{Limits, Proto, trace_families};
    let families = match args.family {
        FamilyArg::Ipv4 => vec![Family::Ipv4],
        FamilyArg::Ipv6 => vec![Family::Ipv6],
        FamilyArg::Both => Family::ALL.to_vec(),
    };
    let target = adhoc::build(&AdhocRequest {
        target: args.host.clone(),
        checks: vec!["trace".into()],
        families,
        timeout: args.wait,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let env = CheckEnv::new(DnsResolver::new(&[], args.wait)?);
    let proto = match args.proto {
        ProtoArg::Udp => Proto::Udp,
        ProtoArg::Tcp => Proto::Tcp,
    };
    let limits = Limits {
        max_hops: args.max_hops.max(1),
        wait: args.wait,
        ..Limits::default()
    };
    let (table, all_reached) = trace_families(&target, &env, proto, limits).await;
    print!("{table}");
    Ok(all_reached)
}

/// Where the health check connects for a `listen` address: loopback for a wildcard (`[::]` is
/// dual-stack, so 127.0.0.1 reaches it; `0.0.0.0` is IPv4), the address itself otherwise, so an
/// IPv6-only or address-bound listener is checked where it listens.
fn health_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        ip if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], listen.port())),
        _ => listen,
    }
}

/// `dualprobe healthcheck`: the local health socket of the configured port first (no network
/// client can crowd it out), then TCP where the config listens, both within 2.5 s, inside the
/// image's 3 s `HEALTHCHECK` timeout (ECS's default is 5 s). `--url` asks that URL only.
fn healthcheck(url: Option<String>, config: Option<PathBuf>) -> Result<bool> {
    let deadline = std::time::Instant::now() + Duration::from_millis(2500);
    let (url, port) = match url {
        Some(u) => (u, None),
        None => {
            let listen = ConfigSource::discover(config)
                .load()
                .map(|c| c.listen)
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 9469)));
            let url = format!("http://{}/-/healthy", health_address(listen));
            (url, Some(listen.port()))
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut said = Vec::new();
        if let Some(port) = port {
            // Absent (an older agent, another OS), it fails at once and TCP has the whole time.
            let local = dualprobe::serve::local::get_status(
                port,
                "/-/healthy",
                Duration::from_millis(1500),
            );
            match local.await {
                Ok(200) => return Ok(true),
                Ok(status) => said.push(format!(
                    "@{}: HTTP {status}",
                    dualprobe::serve::local::socket_name(port)
                )),
                Err(e) => said.push(e.to_string()),
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(left.max(Duration::from_millis(500)))
            .build()?;
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => return Ok(true),
            Ok(r) => said.push(format!("{url}: HTTP {}", r.status())),
            Err(e) => said.push(format!("{url}: {e}")),
        }
        // A passing check is silent; a failing one says every way it tried and why.
        for line in said {
            eprintln!("{line}");
        }
        Ok(false)
    })
}
