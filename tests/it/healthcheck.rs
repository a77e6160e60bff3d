//! `dualprobe healthcheck` (the container's health check) connects where the config listens:
//! an IPv6-only listener is checked over IPv6, not on 127.0.0.1 where nothing answers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_proc::BIN;

#[test]
fn healthcheck_follows_an_ipv6_only_listen_address() {
    let port = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(&cfg, format!("listen: \"[::1]:{port}\"\ntargets: []\n")).unwrap();
    let mut agent = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let health = || {
        Command::new(BIN)
            .args(["healthcheck", "--config"])
            .arg(&cfg)
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    let started = Instant::now();
    let mut out = health();
    while !out.status.success() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        out = health();
    }
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
}
