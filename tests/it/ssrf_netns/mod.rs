//! The `/probe` SSRF table, run inside a network namespace of its own.
//!
//! Outside (the test as `cargo test` runs it): needs root and `ip netns`; creates
//! `dp-ssrf-<pid>` with only a loopback device, binds the metadata addresses 169.254.169.254,
//! 169.254.170.2 and fd00:ec2::254 on it, re-runs this test binary inside (`ip netns exec`, only
//! this test), deletes the namespace whatever happens, and fails unless the inner run passed.
//! Without root or `ip netns` it prints `SKIPPED: ...` and passes (fails when `CI` is set).
//!
//! Inside (`DP_SSRF_INNER=1`, [`inner`]): listeners on every metadata address (ports 80, 443 and
//! the test HTTP server's) count connections; the test DNS server resolves names to every
//! forbidden address; a redirecting HTTP server sends probes to each disguise; the real dualprobe
//! binary runs with an allowlist that allows everything (`*.test`, `0.0.0.0/0`, `::/0`,
//! `169.254.0.0/16`, `fd00::/8`), so only the metadata guard stands in the way. Every row must be
//! refused with 403 and a reason, and afterwards every listener's count must be 0 (then a direct
//! connect from the test proves each listener did count). Packets only ever go to addresses
//! inside the namespace. Prints one line per row and `N passed, M failed`.

mod inner;
mod scheduled;

use crate::support::is_root;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

const INNER: &str = "DP_SSRF_INNER";
const IMDS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
const ECS: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);
const IMDS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
/// The agent runs with `resolver.nat64_prefixes: [2001:db8:64::/96]`: this is IMDS under it.
const NAT64_IMDS6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xa9fe, 0xa9fe);
const NAT64_IMDS: &str = "2001:db8:64::a9fe:a9fe/128";

#[test]
fn ssrf_table_in_a_network_namespace() {
    if std::env::var_os(INNER).is_some() {
        inner::run()
    } else {
        outer()
    }
}

/// This test's name as the harness filters it: the module path without the crate name.
fn test_name() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    format!("{module}::ssrf_table_in_a_network_namespace")
}

// ---- outside the namespace ---------------------------------------------------------------------

fn skip(why: &str) {
    println!("SKIPPED: ssrf_netns: {why}");
    println!(
        "SKIPPED: the /probe SSRF table did not run; it needs root and `ip netns` (iproute2)."
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "SKIPPED is a failure under CI: {why}"
    );
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes the namespace when dropped (panics and early returns included).
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        match ip(&["netns", "delete", &self.0]) {
            Ok(()) => eprintln!("namespace {} deleted", self.0),
            Err(e) => eprintln!("could not delete namespace {}: {e}", self.0),
        }
    }
}

fn outer() {
    if !is_root() {
        return skip("not running as root (network namespaces need CAP_SYS_ADMIN)");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return skip("`ip` (iproute2) is not installed");
    }
    let name = format!("dp-ssrf-{}", std::process::id());
    if let Err(e) = ip(&["netns", "add", &name]) {
        return skip(&format!("cannot create a network namespace: {e}"));
    }
    let ns = Namespace(name.clone());
    let setup = [
        vec!["-n", &name, "link", "set", "lo", "up"],
        vec![
            "-n",
            &name,
            "addr",
            "add",
            "169.254.169.254/32",
            "dev",
            "lo",
        ],
        vec!["-n", &name, "addr", "add", "169.254.170.2/32", "dev", "lo"],
        vec![
            "-n",
            &name,
            "-6",
            "addr",
            "add",
            "fd00:ec2::254/128",
            "dev",
            "lo",
            "nodad",
        ],
        // Where a translator with the configured NAT64 prefix would send IMDS: counted too.
        vec![
            "-n", &name, "-6", "addr", "add", NAT64_IMDS, "dev", "lo", "nodad",
        ],
    ];
    for args in &setup {
        if let Err(e) = ip(args) {
            println!("FAIL | namespace setup: {e}");
            drop(ns);
            println!("0 passed, 1 failed");
            panic!("namespace setup: {e}");
        }
    }
    let mut passed = 0usize;
    let mut failed = 0usize;
    let started = std::time::Instant::now();
    // The inner run's lines pass through; its count line is replaced by the final one below,
    // which also counts a failed inner process or a namespace left behind.
    let status = std::env::current_exe()
        .map_err(|e| format!("current_exe: {e}"))
        .and_then(|exe| {
            // The same test binary, running only this test, its output not captured so the
            // rows reach the pipe.
            let mut child = Command::new("ip")
                .args(["netns", "exec", &name, "env", &format!("{INNER}=1")])
                .arg(&exe)
                .args([&test_name(), "--exact", "--nocapture", "--test-threads=1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("ip netns exec: {e}"))?;
            let out = child.stdout.take().expect("piped stdout");
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.starts_with("ok   |") {
                    passed += 1;
                } else if line.starts_with("FAIL |") {
                    failed += 1;
                } else if line.ends_with(" failed") && line.contains(" passed, ") {
                    continue;
                }
                println!("{line}");
            }
            child
                .wait()
                .map_err(|e| format!("waiting for the inner run: {e}"))
        });
    match &status {
        Ok(s) if s.success() => {}
        Ok(s) if failed == 0 => {
            failed += 1;
            println!("FAIL | the run inside the namespace ended with {s} and no failed row");
        }
        Ok(_) => {}
        Err(e) => {
            failed += 1;
            println!("FAIL | {e}");
        }
    }
    drop(ns);
    let gone = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| !String::from_utf8_lossy(&o.stdout).contains(&name))
        .unwrap_or(false);
    if !gone {
        failed += 1;
        println!("FAIL | namespace {name} still exists after the run");
    }
    // A filter that matched nothing would run zero rows and exit 0.
    if passed == 0 && failed == 0 {
        failed += 1;
        println!("FAIL | the run inside the namespace reported no row");
    }
    eprintln!("ssrf_netns: {:.1}s", started.elapsed().as_secs_f64());
    println!("{passed} passed, {failed} failed");
    assert_eq!(failed, 0, "{passed} passed, {failed} failed");
}

// ---- inside the namespace ----------------------------------------------------------------------
