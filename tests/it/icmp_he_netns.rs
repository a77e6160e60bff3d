//! `icmp` and `happy_eyeballs` against real kernel behaviour, in a network namespace of their
//! own.
//!
//! Outside (the test as `cargo test` runs it): needs root, `ip netns` and `nft`; creates
//! `dp-he-<pid>` with only a loopback device carrying the documentation addresses 192.0.2.10
//! and 2001:db8::10, and re-runs this test binary inside (`ip netns exec`, only this test) once
//! per scenario, changing the namespace between runs:
//!
//! 1. `net.ipv4.ping_group_range = "0 2147483647"` → `icmp` passes on both families;
//! 2. `net.ipv4.ping_group_range = "1 0"` (the kernel default) → `icmp_not_permitted`;
//! 3. an nft rule drops IPv6 SYNs → `happy_eyeballs` reports IPv4 winning after about 250 ms
//!    (the connection attempt delay), IPv6 masked by fallback;
//! 4. the rule removed → IPv6 wins.
//!
//! The namespace is deleted whatever happens. Without root, `ip` or `nft` it prints
//! `SKIPPED: ...` and passes (fails when `CI` is set). Packets only go to addresses inside it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, Stdio};

use dualprobe::model::family::Family;

use crate::support::{Lab, is_root, labels, outcome, show};

const INNER: &str = "DP_HE_INNER";
const V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const HOST: &str = "he.test";
const PORT: u16 = 8443;

#[test]
fn icmp_and_happy_eyeballs_in_a_network_namespace() {
    match std::env::var(INNER) {
        Ok(scenario) => inner(&scenario),
        Err(_) => outer(),
    }
}

fn test_name() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    format!("{module}::icmp_and_happy_eyeballs_in_a_network_namespace")
}

fn skip(why: &str) {
    println!("SKIPPED: icmp_he_netns: {why}");
    assert!(
        std::env::var_os("CI").is_none(),
        "SKIPPED is a failure under CI: {why}"
    );
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes the namespace when dropped.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "delete", &self.0]) {
            eprintln!("could not delete namespace {}: {e}", self.0);
        }
    }
}

fn outer() {
    if !is_root() {
        return skip("not running as root (network namespaces need CAP_SYS_ADMIN)");
    }
    for tool in ["ip", "nft"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return skip(&format!("`{tool}` is not installed"));
        }
    }
    let name = format!("dp-he-{}", std::process::id());
    if let Err(e) = run("ip", &["netns", "add", &name]) {
        return skip(&format!("cannot create a network namespace: {e}"));
    }
    let ns = Namespace(name.clone());
    let n = name.as_str();
    let setup: [&[&str]; 3] = [
        &["-n", n, "link", "set", "lo", "up"],
        &["-n", n, "addr", "add", "192.0.2.10/32", "dev", "lo"],
        &[
            "-n",
            n,
            "-6",
            "addr",
            "add",
            "2001:db8::10/128",
            "dev",
            "lo",
            "nodad",
        ],
    ];
    for args in setup {
        run("ip", args).unwrap_or_else(|e| panic!("namespace setup: {e}"));
    }
    let exec = |args: &[&str]| {
        let mut all = vec!["netns", "exec", n];
        all.extend_from_slice(args);
        run("ip", &all).unwrap_or_else(|e| panic!("{e}"));
    };
    let nft_drop =
        format!("add rule inet dp out ip6 daddr {V6} tcp dport {PORT} tcp flags syn drop");
    let steps: [(&str, Vec<String>); 4] = [
        (
            "icmp-permitted",
            vec!["sysctl -w net.ipv4.ping_group_range=0 2147483647".into()],
        ),
        (
            "icmp-refused",
            vec!["sysctl -w net.ipv4.ping_group_range=1 0".into()],
        ),
        (
            "he-blackhole",
            vec![
                "nft add table inet dp".into(),
                "nft add chain inet dp out { type filter hook output priority 0 ; }".into(),
                format!("nft {nft_drop}"),
            ],
        ),
        ("he-healthy", vec!["nft delete table inet dp".into()]),
    ];
    let exe = std::env::current_exe().expect("current_exe");
    let mut failed = Vec::new();
    for (scenario, commands) in steps {
        for c in &commands {
            // sysctl's value has a space: split off the command, keep the value whole.
            let (cmd, rest) = c.split_once(' ').expect("a command with arguments");
            if cmd == "sysctl" {
                let value = rest.strip_prefix("-w ").expect("sysctl -w");
                exec(&["sysctl", "-w", value]);
            } else {
                let mut args = vec![cmd];
                args.extend(rest.split(' '));
                exec(&args);
            }
        }
        let status = Command::new("ip")
            .args(["netns", "exec", n, "env", &format!("{INNER}={scenario}")])
            .arg(&exe)
            .args([&test_name(), "--exact", "--nocapture", "--test-threads=1"])
            .stdin(Stdio::null())
            .status()
            .expect("ip netns exec");
        println!(
            "{} | {scenario}",
            if status.success() { "ok  " } else { "FAIL" }
        );
        if !status.success() {
            failed.push(scenario);
        }
    }
    drop(ns);
    assert!(failed.is_empty(), "failed in the namespace: {failed:?}");
}

fn inner(scenario: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let lab = Lab::new();
        lab.dns.update(|z| z.set(HOST, &[V4], &[V6]));
        match scenario {
            "icmp-permitted" | "icmp-refused" => icmp(&lab, scenario == "icmp-permitted").await,
            "he-blackhole" => happy_eyeballs(&lab, true).await,
            "he-healthy" => happy_eyeballs(&lab, false).await,
            other => panic!("unknown scenario {other}"),
        }
    });
}

async fn icmp(lab: &Lab, permitted: bool) {
    let target = lab.target(&format!("name: ping\nhost: {HOST}\nchecks: [dns, icmp]"));
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        let want = if permitted {
            "ok"
        } else {
            "icmp_not_permitted"
        };
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("icmp", want)],
            "{family}: {}",
            show(&report)
        );
        let ip = match family {
            Family::Ipv4 => IpAddr::V4(V4),
            Family::Ipv6 => IpAddr::V6(V6),
        };
        assert_eq!(outcome(&report, "icmp").observations.addresses, [ip]);
        println!("{family}: {}", show(&report));
    }
}

async fn happy_eyeballs(lab: &Lab, blackholed: bool) {
    let _v4 = std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(V4), PORT)).expect("bind v4");
    let _v6 = std::net::TcpListener::bind(SocketAddr::new(IpAddr::V6(V6), PORT)).expect("bind v6");
    let target = lab.target(&format!(
        "name: he\nhost: {HOST}\nport: {PORT}\ntimeout: 3s\nchecks: [dns, happy_eyeballs, tcp]"
    ));
    let report = lab.run(&target, Family::Ipv6).await;
    println!("{}", show(&report));
    let o = outcome(&report, "happy_eyeballs");
    assert!(o.passed(), "{}", show(&report));
    let ob = &o.observations;
    let winner = |f| ob.target_value("happy_eyeballs_winner", Some(f));
    let fallback = ob
        .target_value("happy_eyeballs_fallback_seconds", None)
        .expect("fallback seconds");
    if blackholed {
        assert_eq!(winner(Family::Ipv4), Some(1.0), "{}", show(&report));
        assert_eq!(winner(Family::Ipv6), Some(0.0));
        // IPv4 started one connection attempt delay (250 ms) after the silent IPv6 attempt.
        assert!(
            (0.24..0.40).contains(&fallback),
            "fallback {fallback}: {}",
            show(&report)
        );
        assert_eq!(ob.remote, Some(SocketAddr::new(IpAddr::V4(V4), PORT)));
        // The cycle's own `tcp` still sees IPv6 is down: the fallback masks it from clients only.
        assert_eq!(
            outcome(&report, "tcp").result_label(),
            "timeout",
            "{}",
            show(&report)
        );
    } else {
        assert_eq!(winner(Family::Ipv6), Some(1.0), "{}", show(&report));
        assert_eq!(winner(Family::Ipv4), Some(0.0));
        assert_eq!(fallback, 0.0);
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("happy_eyeballs", "ok"), ("tcp", "ok")]
        );
    }
}
