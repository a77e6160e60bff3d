//! `dualprobe healthcheck` (the container's health check) asks the agent's local health socket
//! first, so no network client can crowd it out, and falls back to TCP where the config listens:
//! an IPv6-only listener is checked over IPv6, not on 127.0.0.1 where nothing answers.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::agent_proc::BIN;

/// A free TCP port on `ip`.
fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `dualprobe run` on a config that listens on `listen`.
fn agent(dir: &Path, listen: &str) -> Child {
    let cfg = dir.join("agent.yml");
    std::fs::write(&cfg, format!("listen: \"{listen}\"\ntargets: []\n")).unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `dualprobe healthcheck` on a config that says the agent listens on `listen`, retried for up
/// to 10 s while the agent starts: the last run.
fn healthcheck(dir: &Path, listen: &str) -> Output {
    let cfg = dir.join("healthcheck.yml");
    std::fs::write(&cfg, format!("listen: \"{listen}\"\ntargets: []\n")).unwrap();
    let run = || {
        Command::new(BIN)
            .args(["healthcheck", "--config"])
            .arg(&cfg)
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    let started = Instant::now();
    let mut out = run();
    while !out.status.success() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        out = run();
    }
    out
}

#[test]
fn healthcheck_follows_an_ipv6_only_listen_address() {
    let port = free_port("::1");
    // The local health socket's name taken first, by something that closes every connection
    // unanswered: the agent cannot bind it, and the check must go over TCP.
    let addr = UnixAddr::from_abstract_name(dualprobe::serve::local::socket_name(port)).unwrap();
    let squatter = UnixListener::bind_addr(&addr).unwrap();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&asked);
    std::thread::spawn(move || {
        for s in squatter.incoming() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("[::1]:{port}");
    let mut agent = agent(dir.path(), &listen);
    let out = healthcheck(dir.path(), &listen);
    let v4 = std::net::TcpStream::connect(("127.0.0.1", port));
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        v4.is_err(),
        "the agent listened on IPv4 too: the test proves nothing"
    );
    assert!(
        asked.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the local socket was not asked first"
    );
}

/// With the agent on 127.0.0.1 and the health check told `[::1]` (same port), TCP finds nothing:
/// only the local health socket, named by the port alone, can answer.
#[test]
fn healthcheck_asks_the_local_health_socket_first() {
    let port = free_port("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let mut agent = agent(dir.path(), &format!("127.0.0.1:{port}"));
    let out = healthcheck(dir.path(), &format!("[::1]:{port}"));
    let v6 = std::net::TcpStream::connect(("::1", port));
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        v6.is_err(),
        "something listens on [::1]:{port}: the test proves nothing"
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
