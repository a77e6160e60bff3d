//! NAT64 in the running agent (issue 13): the binary learns prefixes by RFC 7050 from the test
//! DNS server's `ipv4only.arpa`, shows them with the configured and well-known ones on
//! `/metrics`, forgets a discovered prefix when DNS64 goes away (at the next refresh), and
//! exports the IPv6 path of each target on `/metrics` and `/probe`. Loopback only.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::agent_proc::{AgentProc, get, must, sample, wait_for};
use crate::support::{DUAL_HOST, DnsServer, HttpServer, standard_zone};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_learns_shows_and_forgets_nat64_prefixes() {
    let mut zone = standard_zone();
    // What a DNS64 with the network-specific prefix 2001:db8:64::/96 answers (RFC 7050 §2.2).
    zone.set(
        "ipv4only.arpa",
        &[Ipv4Addr::new(192, 0, 0, 170), Ipv4Addr::new(192, 0, 0, 171)],
        &[
            "2001:db8:64::c000:aa".parse::<Ipv6Addr>().unwrap(),
            "2001:db8:64::c000:ab".parse().unwrap(),
        ],
    );
    let dns = DnsServer::start(zone);
    let web = HttpServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "interval: 1s\ntimeout: 900ms\nresolver:\n  nameservers: [\"{}\"]\n  nat64_prefixes: [\"2001:db8:6464::/96\"]\n  nat64_discovery: true\n  nat64_refresh: 1s\ntargets:\n  - name: web\n    host: {DUAL_HOST}\n    port: {}\n    checks: [dns, tcp, http]\n    http: {{path: /ok}}\n    expect: {{via: {{ipv6: native}}}}\n",
            dns.addr(dualprobe::model::family::Family::Ipv4),
            web.port()
        ),
    )
    .unwrap();
    let agent = AgentProc::start(&cfg, "info");
    agent.wait_ready().await;
    let metrics = get(&agent.url("/metrics")).await.body;
    for series in [
        r#"dualprobe_nat64_prefix{prefix="64:ff9b::/96",source="well_known"}"#,
        r#"dualprobe_nat64_prefix{prefix="2001:db8:6464::/96",source="config"}"#,
        r#"dualprobe_nat64_prefix{prefix="2001:db8:64::/96",source="discovered"}"#,
        r#"dualprobe_ipv6_path{target="web",via="native"}"#,
        r#"dualprobe_target_expected_via{target="web",via="native"}"#,
        r#"dualprobe_expectation_met{target="web",family="ipv6"}"#,
    ] {
        assert_eq!(must(&metrics, series), 1.0, "{series}");
    }
    assert_eq!(
        must(&metrics, r#"dualprobe_ipv6_path{target="web",via="nat64"}"#),
        0.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"dualprobe_ipv6_path{target="web",via="native",family="ipv4"}"#
        ),
        None
    );

    // `/probe` says the same, per family, in JSON and as a series.
    let json: serde_json::Value =
        serde_json::from_str(&get(&agent.url("/probe?target=web&format=json")).await.body).unwrap();
    let v6 = json["families"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["family"] == "ipv6")
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(v6["ipv6_path"]["via"], "native", "{json:#}");
    assert_eq!(v6["ipv6_path"]["address"], "::1", "{json:#}");
    let probe = get(&agent.url("/probe?target=web&family=ipv6")).await.body;
    assert_eq!(
        must(&probe, r#"dualprobe_ipv6_path{via="native"}"#),
        1.0,
        "{probe}"
    );

    // DNS64 switched off: the next refresh forgets the discovered prefix, keeps the others.
    dns.update(|z| z.withdraw_aaaa("ipv4only.arpa"));
    wait_for(
        "the discovered prefix to go",
        Duration::from_secs(10),
        async || {
            let m = get(&agent.url("/metrics")).await.body;
            sample(
                &m,
                r#"dualprobe_nat64_prefix{prefix="2001:db8:64::/96",source="discovered"}"#,
            )
            .is_none()
                && sample(
                    &m,
                    r#"dualprobe_nat64_prefix{prefix="2001:db8:6464::/96",source="config"}"#,
                ) == Some(1.0)
        },
    )
    .await;
    let logs = agent.logs();
    assert!(
        logs.contains("NAT64 prefixes discovered (RFC 7050)"),
        "{logs}"
    );
    assert!(logs.contains("2001:db8:64::/96"), "{logs}");
    assert!(
        logs.contains("ipv4only.arpa has no AAAA: no DNS64"),
        "{logs}"
    );
}
