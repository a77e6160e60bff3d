//! The `icmp` check on the loopback addresses, through unprivileged ICMP datagram sockets:
//! whether it may open one is the kernel's call (the sysctl `net.ipv4.ping_group_range` of the
//! test's network namespace), so the expectation follows the sysctl: a pass on both families
//! when the test's group is in the range, `icmp_not_permitted` naming the sysctl when it is
//! not. The netns test (`icmp_he_netns`) sets the sysctl both ways.

use dualprobe::model::family::Family;

use crate::support::{DUAL_HOST, Lab, detail, labels, loopback, show};

/// Whether this process's effective group is inside this namespace's `ping_group_range`.
pub fn ping_permitted() -> bool {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
    let mut r = range
        .split_whitespace()
        .filter_map(|v| v.parse::<u64>().ok());
    let (Some(lo), Some(hi)) = (r.next(), r.next()) else {
        return false;
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let gid = status
        .lines()
        .find_map(|l| l.strip_prefix("Gid:"))
        .and_then(|g| g.split_whitespace().nth(1)?.parse::<u64>().ok());
    gid.is_some_and(|g| lo <= g && g <= hi)
}

#[tokio::test]
async fn icmp_echo_follows_ping_group_range_on_both_families() {
    let lab = Lab::new();
    let target = lab.target(&format!(
        r#"
        name: ping
        host: {DUAL_HOST}
        checks: [dns, icmp]
        "#
    ));
    let permitted = ping_permitted();
    for family in Family::ALL {
        let report = lab.run(&target, family).await;
        if permitted {
            assert_eq!(
                labels(&report),
                [("dns", "ok"), ("icmp", "ok")],
                "{family}: {}",
                show(&report)
            );
            assert_eq!(report.checks[1].observations.addresses, [loopback(family)]);
        } else {
            assert_eq!(
                labels(&report),
                [("dns", "ok"), ("icmp", "icmp_not_permitted")],
                "{family}: {}",
                show(&report)
            );
            let d = detail(&report, "icmp");
            assert!(d.contains("net.ipv4.ping_group_range"), "{d}");
        }
    }
}

#[tokio::test]
async fn icmp_to_a_forbidden_address_sends_nothing() {
    use std::sync::Arc;

    use dualprobe::checks::{CheckEnv, run_cycle};
    use dualprobe::net::guard::MetadataGuard;

    let lab = Lab::new();
    lab.dns.update(|z| {
        z.set(
            "imds.test",
            &["169.254.169.254".parse().unwrap()],
            &["fd00:ec2::254".parse().unwrap()],
        )
    });
    let target = lab.target(
        r#"
        name: imds
        host: imds.test
        checks: [icmp]
        "#,
    );
    let env = CheckEnv::with_policy(lab.env.resolver.clone(), Arc::new(MetadataGuard::default()));
    for family in Family::ALL {
        let report = run_cycle(&target, family, &env, true).await;
        assert_eq!(
            labels(&report),
            [("icmp", "forbidden")],
            "{family}: {}",
            show(&report)
        );
    }
}
