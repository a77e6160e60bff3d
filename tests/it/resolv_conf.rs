//! No usable `/etc/resolv.conf` (a scratch container without one, or one listing no
//! nameserver): the agent still runs, and every DNS check says exactly that instead of
//! hickory's `no connections available` (which reads like running out of sockets). Runs the
//! real binary in a private mount namespace (`unshare -m`, root) over a replaced `/etc`; no
//! packet is sent.

use std::process::Command;

use crate::agent_proc::BIN;
use crate::support::is_root;

#[test]
fn dns_checks_say_no_nameserver_is_configured() {
    if !is_root() || Command::new("unshare").arg("--version").output().is_err() {
        println!("SKIPPED: needs root and unshare");
        assert!(
            std::env::var_os("CI").is_none(),
            "SKIPPED is a failure under CI"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("resolv.conf");
    std::fs::write(&empty, "# no nameserver\n").unwrap();
    for (setup, want) in [
        (
            format!("mount --bind {} /etc/resolv.conf", empty.display()),
            "no nameserver is configured: /etc/resolv.conf lists none; set resolver.nameservers",
        ),
        (
            "mount -t tmpfs none /etc".to_string(),
            "no nameserver is configured: cannot read /etc/resolv.conf",
        ),
    ] {
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!(
                "{setup} && exec {BIN} probe example.test:443 --check dns --family ipv4 --json"
            ))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.contains(want),
            "{setup}\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert!(stdout.contains("\"reason\": \"dns_error\""), "{stdout}");
    }
}
