//! The real `dualprobe` binary as a child process, for the `/probe` and status page tests: start
//! it on a config file with `--listen 127.0.0.1:0 --log-format json`, learn its address from the
//! `listen` field of its first log line, keep every stderr line (to prove what is and is not
//! logged), and kill it when dropped. Plus small helpers for the Prometheus text format.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_dualprobe");

/// A running agent; killed on drop.
pub struct AgentProc {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl AgentProc {
    /// Starts `dualprobe run --config FILE` with `DUALPROBE_LOG=log_filter`.
    pub fn start(config: &Path, log_filter: &str) -> AgentProc {
        AgentProc::start_wrapped(config, log_filter, &[])
    }

    /// [`AgentProc::start`] through `wrapper`, a command that ends by exec'ing its arguments in
    /// the same process (`prlimit --nofile=N:N --`, a shell that joins a cgroup first), so
    /// [`AgentProc::pid`] is the agent's.
    pub fn start_wrapped(config: &Path, log_filter: &str, wrapper: &[String]) -> AgentProc {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = cmd
            .args(["run", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .env("DUALPROBE_LOG", log_filter)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dualprobe");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(l) = v.get("listen").and_then(|l| l.as_str())
                {
                    let _ = tx.send(l.to_string());
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let logs = lines.lock().expect("log lock").join("\n");
                panic!("dualprobe did not log its listen address:\n{logs}");
            }
        };
        AgentProc {
            child,
            base: format!("http://{addr}"),
            addr,
            stderr: lines,
        }
    }

    /// Everything the agent wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().expect("log lock").join("\n")
    }

    /// `base` + `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// Waits until `/-/ready` answers 200 (the first cycle of every configured target finished).
    pub async fn wait_ready(&self) {
        let url = self.url("/-/ready");
        wait_for(
            "/-/ready",
            Duration::from_secs(20),
            async || matches!(client().get(&url).send().await, Ok(r) if r.status() == 200),
        )
        .await;
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP client that never uses a proxy.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A finished request: status, content type and body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: String,
    /// The body as text.
    pub body: String,
    /// How long the request took.
    pub elapsed: Duration,
    /// `WWW-Authenticate`, if any.
    pub www_authenticate: Option<String>,
}

/// GETs `url` with extra headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let start = Instant::now();
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type").unwrap_or_default();
    let www_authenticate = header("www-authenticate");
    let body = r
        .text()
        .await
        .unwrap_or_else(|e| panic!("body of {url}: {e}"));
    Reply {
        status,
        content_type,
        body,
        elapsed: start.elapsed(),
        www_authenticate,
    }
}

/// GETs `url`.
pub async fn get(url: &str) -> Reply {
    get_with(url, &[]).await
}

/// Polls `check` every 100 ms until it holds, or panics after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// The value of the sample written exactly as `series` (name plus its labels as rendered, e.g.
/// `probe_success` or `probe_success{family="ipv4"}`) in a Prometheus text body.
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Like [`sample`], but panics with the whole body when the series is missing.
pub fn must(body: &str, series: &str) -> f64 {
    sample(body, series).unwrap_or_else(|| panic!("no sample `{series}` in:\n{body}"))
}

/// A port the kernel just handed out on 127.0.0.1 (released again; for servers that bind it
/// themselves, such as Prometheus).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
