//! What `/probe` reports: both families in one probe with a `family` label, one family with
//! blackbox_exporter's names, configured targets with their checks and expectations, failed
//! probes as 200 with `probe_success 0`, deadlines from the scrape-timeout header and `timeout=`,
//! modules, and the allowlist matching IPv4-mapped literals as IPv4.

use dualprobe::model::family::Family;

use super::{HIDDEN_HOST, World, text};
use crate::agent_proc::{get, get_with, must, sample};
use crate::support::{A_ONLY_HOST, DUAL_HOST, SILENT_HOST, closed_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_families_in_one_probe_carry_a_family_label() {
    let w = World::new();
    let agent = w.agent();
    let before = (
        w.https.hits(Family::Ipv4, "/ok"),
        w.https.hits(Family::Ipv6, "/ok"),
    );
    let r = get(&agent.url(&format!("/probe?target={DUAL_HOST}&module=https_ca"))).await;
    let m = text(&r, "module https_ca, both families");
    for (fam, proto) in [("ipv4", 4.0), ("ipv6", 6.0)] {
        let l = format!("{{family=\"{fam}\"}}");
        assert_eq!(must(&m, &format!("probe_success{l}")), 1.0, "{m}");
        assert_eq!(must(&m, &format!("probe_ip_protocol{l}")), proto, "{m}");
        assert_eq!(
            must(&m, &format!("probe_http_status_code{l}")),
            200.0,
            "{m}"
        );
        assert_eq!(
            must(&m, &format!("probe_ssl_earliest_cert_expiry{l}")),
            w.pki.server.not_after as f64,
            "{m}"
        );
        assert!(
            must(&m, &format!("probe_dns_lookup_time_seconds{l}")) > 0.0,
            "{m}"
        );
        assert!(must(&m, &format!("probe_duration_seconds{l}")) > 0.0, "{m}");
        for check in ["dns", "tcp", "tls", "http"] {
            let s = format!("dualprobe_check_success{{check=\"{check}\",family=\"{fam}\"}}");
            assert_eq!(must(&m, &s), 1.0, "{m}");
        }
    }
    // With both families, no blackbox series goes without the label (they would collide).
    assert_eq!(sample(&m, "probe_success"), None, "{m}");
    assert_eq!(m.matches("# TYPE probe_success gauge").count(), 1, "{m}");
    // Each family really reached the server over its own loopback address.
    assert_eq!(w.https.hits(Family::Ipv4, "/ok"), before.0 + 1);
    assert_eq!(w.https.hits(Family::Ipv6, "/ok"), before.1 + 1);

    // The default with no family parameter is both as well, for an ad-hoc target.
    let r = get(&agent.url(&format!(
        "/probe?target={DUAL_HOST}:{}&check=dns&check=tcp",
        w.http.port()
    )))
    .await;
    let m = text(&r, "ad hoc, default family");
    assert_eq!(must(&m, "probe_ip_protocol{family=\"ipv4\"}"), 4.0);
    assert_eq!(must(&m, "probe_ip_protocol{family=\"ipv6\"}"), 6.0);
    assert_eq!(must(&m, "dualprobe_dns_answers{family=\"ipv6\"}"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_family_answers_with_blackbox_names_and_only_uses_that_family() {
    let w = World::new();
    let agent = w.agent();
    for (fam, other, proto) in [
        (Family::Ipv4, Family::Ipv6, 4.0),
        (Family::Ipv6, Family::Ipv4, 6.0),
    ] {
        let before = (w.https.hits(fam, "/ok"), w.https.hits(other, "/ok"));
        let r = get(&agent.url(&format!(
            "/probe?target={DUAL_HOST}&module=https_ca&family={fam}"
        )))
        .await;
        let m = text(&r, &format!("https_ca over {fam}"));
        assert_eq!(must(&m, "probe_success"), 1.0, "{m}");
        assert_eq!(must(&m, "probe_ip_protocol"), proto, "{m}");
        assert_eq!(must(&m, "probe_http_status_code"), 200.0, "{m}");
        assert_eq!(
            must(&m, "probe_ssl_earliest_cert_expiry"),
            w.pki.server.not_after as f64
        );
        let dns_time = must(&m, "probe_dns_lookup_time_seconds");
        assert!(dns_time > 0.0 && dns_time < 1.0, "{m}");
        let total = must(&m, "probe_duration_seconds");
        assert!(total >= dns_time && total < 3.0, "{m}");
        assert_eq!(
            must(
                &m,
                &format!("dualprobe_check_success{{check=\"tls\",family=\"{fam}\"}}")
            ),
            1.0
        );
        assert!(!m.contains(&format!("family=\"{other}\"")), "{m}");
        assert!(!m.contains("probe_success{"), "{m}");
        assert_eq!(
            w.https.hits(fam, "/ok"),
            before.0 + 1,
            "{fam} reached the server"
        );
        assert_eq!(w.https.hits(other, "/ok"), before.1, "{other} was not used");
    }
    // `4`/`6` are accepted spellings of the family too.
    let r = get(&agent.url(&format!(
        "/probe?target={DUAL_HOST}:{}&check=tcp&family=6",
        w.http.port()
    )))
    .await;
    assert_eq!(must(&text(&r, "family=6"), "probe_ip_protocol"), 6.0);

    // A module that probes one family only is a single-family probe: blackbox names, no label.
    let r = get(&agent.url(&format!("/probe?target={DUAL_HOST}&module=v6_http"))).await;
    let m = text(&r, "module v6_http");
    assert_eq!(must(&m, "probe_success"), 1.0, "{m}");
    assert_eq!(must(&m, "probe_ip_protocol"), 6.0, "{m}");
    assert!(!m.contains("family=\"ipv4\""), "{m}");

    // So is an IP literal (it has one family): `[::1]` with the module's checks.
    let r = get(&agent.url("/probe?target=[::1]&module=v6_http")).await;
    let m = text(&r, "module v6_http on [::1]");
    assert_eq!(must(&m, "probe_success"), 1.0, "{m}");
    assert_eq!(
        sample(&m, "probe_dns_lookup_time_seconds"),
        None,
        "a literal needs no DNS: {m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_targets_run_their_own_checks_and_expectations() {
    let w = World::new();
    let agent = w.agent();
    let m = text(&get(&agent.url("/probe?target=web")).await, "web");
    for fam in ["ipv4", "ipv6"] {
        assert_eq!(
            must(&m, &format!("probe_success{{family=\"{fam}\"}}")),
            1.0,
            "{m}"
        );
        assert_eq!(
            must(
                &m,
                &format!("dualprobe_check_success{{check=\"http\",family=\"{fam}\"}}")
            ),
            1.0
        );
        assert_eq!(
            must(
                &m,
                &format!("dualprobe_expectation_met{{family=\"{fam}\"}}")
            ),
            1.0
        );
    }
    // Its own checks: no tls check was configured, so there is none.
    assert!(!m.contains("check=\"tls\""), "{m}");

    let m = text(
        &get(&agent.url("/probe?target=broken&family=ipv6")).await,
        "broken",
    );
    assert_eq!(must(&m, "probe_success"), 0.0, "{m}");
    assert_eq!(must(&m, "probe_http_status_code"), 500.0, "{m}");
    assert_eq!(
        must(
            &m,
            "dualprobe_check_failure_info{check=\"http\",family=\"ipv6\",reason=\"http_status\"}"
        ),
        1.0
    );

    // `expect: {ipv6: unreachable}`: IPv6 fails (no AAAA), which is what the team expects, so the
    // blackbox verdict is success while the check itself failed.
    let m = text(&get(&agent.url("/probe?target=hidden4")).await, "hidden4");
    assert_eq!(must(&m, "probe_success{family=\"ipv4\"}"), 1.0, "{m}");
    assert_eq!(must(&m, "probe_success{family=\"ipv6\"}"), 1.0, "{m}");
    assert_eq!(
        must(&m, "dualprobe_expectation_met{family=\"ipv6\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(
        must(&m, "dualprobe_check_success{check=\"dns\",family=\"ipv6\"}"),
        0.0,
        "{m}"
    );
    assert_eq!(
        must(
            &m,
            "dualprobe_check_failure_info{check=\"dns\",family=\"ipv6\",reason=\"nodata\"}"
        ),
        1.0
    );

    // Configured targets are always allowed; the same host asked ad hoc is not in probe.allow.
    let r = get(&agent.url(&format!(
        "/probe?target={HIDDEN_HOST}:{}&check=tcp",
        w.http.port()
    )))
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("not in probe.allow"), "{}", r.body);

    // One family of a configured target: blackbox names.
    let r = get(&agent.url("/probe?target=web&family=ipv4")).await;
    assert_eq!(must(&text(&r, "web ipv4"), "probe_ip_protocol"), 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_probes_are_http_200_with_probe_success_0() {
    let w = World::new();
    let agent = w.agent();
    let http = w.http.port();

    let r = get(&agent.url(&format!(
        "/probe?target=http://{DUAL_HOST}:{http}/fail&check=http"
    )))
    .await;
    let m = text(&r, "/fail");
    for fam in ["ipv4", "ipv6"] {
        assert_eq!(
            must(&m, &format!("probe_success{{family=\"{fam}\"}}")),
            0.0,
            "{m}"
        );
        assert_eq!(
            must(&m, &format!("probe_http_status_code{{family=\"{fam}\"}}")),
            500.0
        );
    }

    // A-only name: IPv4 passes, IPv6 has no AAAA.
    let r = get(&agent.url(&format!(
        "/probe?target={A_ONLY_HOST}:{http}&check=dns&check=tcp"
    )))
    .await;
    let m = text(&r, "aonly");
    assert_eq!(must(&m, "probe_success{family=\"ipv4\"}"), 1.0, "{m}");
    assert_eq!(must(&m, "probe_success{family=\"ipv6\"}"), 0.0, "{m}");
    assert_eq!(
        must(
            &m,
            "dualprobe_check_failure_info{check=\"dns\",family=\"ipv6\",reason=\"nodata\"}"
        ),
        1.0
    );
    assert_eq!(
        must(
            &m,
            "dualprobe_check_failure_info{check=\"tcp\",family=\"ipv6\",reason=\"skipped\"}"
        ),
        1.0
    );

    // Refused port.
    let closed = closed_port();
    let r = get(&agent.url(&format!(
        "/probe?target=127.0.0.1:{closed}&check=tcp&family=ipv4"
    )))
    .await;
    let m = text(&r, "closed port");
    assert_eq!(must(&m, "probe_success"), 0.0, "{m}");
    assert_eq!(
        must(
            &m,
            "dualprobe_check_failure_info{check=\"tcp\",family=\"ipv4\",reason=\"refused\"}"
        ),
        1.0,
        "{m}"
    );

    // Ad-hoc HTTPS trusts only the public roots: the test CA's certificate fails verification.
    let https = w.https.port();
    let r = get(&agent.url(&format!(
        "/probe?target=https://{DUAL_HOST}:{https}/ok&family=ipv4"
    )))
    .await;
    let m = text(&r, "ad-hoc https with the test CA");
    assert_eq!(must(&m, "probe_success"), 0.0, "{m}");
    assert_eq!(
        must(&m, "dualprobe_check_success{check=\"tls\",family=\"ipv4\"}"),
        0.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_follow_the_scrape_timeout_header_and_the_timeout_parameter() {
    let w = World::new();
    let agent = w.agent();
    let never = w.never.port();
    let silent = agent.url(&format!(
        "/probe?target={SILENT_HOST}:80&check=dns&family=ipv4"
    ));
    let hang4 = agent.url(&format!("/probe?target=127.0.0.1:{never}&module=hang"));
    let hang6 = agent.url(&format!("/probe?target=[::1]:{never}&module=hang"));
    let header = "X-Prometheus-Scrape-Timeout-Seconds";
    // (request, headers, earliest, latest): the answer must come after the deadline (so it was
    // the deadline that ended it) and well before header + 1 s (so Prometheus gets it).
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, f64, f64);
    let cases: Vec<Case> = vec![
        // Silent DNS: 2 s - 0.5 s offset = 1.5 s (the resolver itself would wait 5 s).
        (silent.clone(), vec![(header, "2")], 1.4, 3.0),
        // A listener that never accepts, with a module whose own timeout is 8 s.
        (hang4.clone(), vec![(header, "2.5")], 1.9, 3.5),
        (hang6.clone(), vec![(header, "2.5")], 1.9, 3.5),
        // `timeout=` alone, and the smaller of both.
        (format!("{silent}&timeout=1s"), vec![], 0.9, 2.0),
        (
            format!("{hang4}&timeout=0.8"),
            vec![(header, "10")],
            0.7,
            1.8,
        ),
        // The header minus the offset wins over a larger parameter.
        (
            format!("{hang6}&timeout=5"),
            vec![(header, "1.7")],
            1.1,
            2.7,
        ),
        // Nothing asked: probe.max_timeout (3 s) caps the module's 8 s.
        (hang4.clone(), vec![], 2.9, 4.5),
        // A huge request is capped too.
        (format!("{silent}&timeout=1h"), vec![], 2.9, 4.5),
    ];
    let runs = cases
        .iter()
        .map(|(url, headers, _, _)| get_with(url, headers));
    let replies = futures_util::future::join_all(runs).await;
    for ((url, headers, earliest, latest), r) in cases.iter().zip(&replies) {
        let t = r.elapsed.as_secs_f64();
        assert_eq!(r.status, 200, "{url} {headers:?}: {}", r.body);
        assert!(
            t >= *earliest && t < *latest,
            "{url} {headers:?} took {t:.2}s, expected {earliest}..{latest}s\n{}",
            r.body
        );
        assert!(
            r.body.contains("reason=\"timeout\""),
            "{url} {headers:?}: not a timeout:\n{}",
            r.body
        );
    }

    // Numbers that are no duration.
    for (q, h) in [
        ("timeout=soon", None),
        ("timeout=-1", None),
        ("timeout=0", None),
        ("timeout=NaN", None),
        ("", Some("abc")),
        ("", Some("0")),
    ] {
        let url = format!("{silent}&{q}");
        let headers: Vec<(&str, &str)> = h.map(|v| (header, v)).into_iter().collect();
        let r = get_with(&url, &headers).await;
        assert_eq!(r.status, 400, "{q} {h:?}: {}", r.body);
        assert!(
            r.body.contains("second") || r.body.contains("duration"),
            "{q} {h:?}: {}",
            r.body
        );
    }
    // Far too large numbers are capped, not a crash.
    let fast = agent.url(&format!(
        "/probe?target=127.0.0.1:{}&check=tcp",
        w.http.port()
    ));
    for q in ["timeout=1e300", "timeout=18446744073709551616"] {
        let r = get(&format!("{fast}&{q}")).await;
        assert_eq!(must(&text(&r, q), "probe_success"), 1.0, "{q}: {}", r.body);
    }
    let r = get_with(&fast, &[(header, "1e300")]).await;
    assert_eq!(must(&text(&r, "huge header"), "probe_success"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_targets_take_port_and_path_from_the_request() {
    let w = World::new();
    let agent = w.agent();
    let http = w.http.port();
    // The module's https port is replaced by the one in the target; the path too.
    let r = get(&agent.url(&format!(
        "/probe?target={DUAL_HOST}:{http}&module=v6_http&family=ipv6"
    )))
    .await;
    assert_eq!(
        must(&text(&r, "v6_http explicit port"), "probe_http_status_code"),
        200.0
    );
    let before = w.http.hits(Family::Ipv6, "/fail");
    let r = get(&agent.url(&format!(
        "/probe?target=http://{DUAL_HOST}:{http}/fail&module=v6_http"
    )))
    .await;
    let m = text(&r, "v6_http with a path");
    assert_eq!(must(&m, "probe_http_status_code"), 500.0, "{m}");
    assert_eq!(must(&m, "probe_success"), 0.0, "{m}");
    assert_eq!(w.http.hits(Family::Ipv6, "/fail"), before + 1);
    // A module over a family it does not probe is malformed.
    let r = get(&agent.url(&format!(
        "/probe?target={DUAL_HOST}&module=v6_http&family=ipv4"
    )))
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Modules do not bypass the allowlist.
    let r = get(&agent.url(&format!(
        "/probe?target={HIDDEN_HOST}:{http}&module=v6_http"
    )))
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_matches_ipv4_mapped_literals_as_their_ipv4_address() {
    let w = World::new();
    let http = w.http.port();
    // `/redirect-mapped` answers 302 to http://[::ffff:127.0.0.1]:PORT/ok: IPv6 syntax, but
    // reqwest's dual-stack socket reaches 127.0.0.1 over IPv4.
    let hop =
        format!("/probe?target=http://{DUAL_HOST}:{http}/redirect-mapped&check=http&family=ipv4");

    // 127.0.0.0/8 allowed: the mapped form of 127.0.0.1 is allowed too, and followed.
    let agent = w.agent();
    let m = text(
        &get(&agent.url(&hop)).await,
        "mapped hop, 127.0.0.0/8 allowed",
    );
    assert_eq!(must(&m, "probe_success"), 1.0, "{m}");
    assert_eq!(must(&m, "probe_http_status_code"), 200.0, "{m}");
    drop(agent);

    // Only IPv6 allowed (`::/0`): the mapped literal is IPv4 on the wire, so it is not allowed,
    // neither on a redirect hop nor asked directly.
    let agent = w.agent_allowing(&format!(r#"["{DUAL_HOST}", "::/0"]"#));
    // The configured targets' first cycle (which hits /ok too) is over; the next is 10 s away.
    agent.wait_ready().await;
    let before = w.http.hits(Family::Ipv4, "/ok");
    let r = get(&agent.url(&hop)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("::ffff:127.0.0.1 is not in probe.allow"),
        "{}",
        r.body
    );
    assert_eq!(
        w.http.hits(Family::Ipv4, "/ok"),
        before,
        "the redirect was followed"
    );
    let r = get(&agent.url(&format!(
        "/probe?target=[::ffff:127.0.0.1]:{http}&check=tcp"
    )))
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // Real IPv6 is still allowed by `::/0`.
    let r = get(&agent.url(&format!("/probe?target=[::1]:{http}&check=tcp"))).await;
    assert_eq!(must(&text(&r, "[::1] with ::/0"), "probe_success"), 1.0);
}
