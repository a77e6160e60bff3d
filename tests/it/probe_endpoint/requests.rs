//! How `/probe` is asked and answers: JSON and debug output, malformed requests as 400 with the
//! reason, the bearer token (401 without it, never in logs or `/metrics`), and no profiling or
//! debug endpoints.

use std::time::Duration;

use super::World;
use crate::agent_proc::{get, get_with, must};
use crate::support::{A_ONLY_HOST, DUAL_HOST};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_debug_output() {
    let w = World::new();
    let agent = w.agent();
    let http = w.http.port();
    let q = format!("/probe?target=http://{DUAL_HOST}:{http}/ok&check=dns&check=tcp&check=http");
    let by_param = get(&agent.url(&format!("{q}&format=json"))).await;
    let by_accept = get_with(&agent.url(&q), &[("Accept", "application/json")]).await;
    for (how, r) in [("format=json", &by_param), ("Accept", &by_accept)] {
        assert_eq!(r.status, 200, "{how}: {}", r.body);
        assert!(
            r.content_type.starts_with("application/json"),
            "{how}: {}",
            r.content_type
        );
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        assert_eq!(
            v["target"],
            format!("http://{DUAL_HOST}:{http}/ok"),
            "{how}: {v:#}"
        );
        let fams = v["families"].as_array().expect("families");
        assert_eq!(fams.len(), 2, "{how}: {v:#}");
        for (f, fam) in fams.iter().zip(["ipv4", "ipv6"]) {
            let lo = if fam == "ipv4" { "127.0.0.1" } else { "::1" };
            assert_eq!(f["family"], fam, "{how}: {v:#}");
            assert_eq!(f["expectation_met"], true, "{how}: {v:#}");
            let checks = f["checks"].as_array().expect("checks");
            let names: Vec<&str> = checks
                .iter()
                .map(|c| c["check"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["dns", "tcp", "http"], "{how}: {v:#}");
            for c in checks {
                assert_eq!(c["success"], true, "{how}: {c:#}");
                assert_eq!(c["reason"], "ok", "{how}: {c:#}");
                assert!(c["duration"].as_f64().unwrap() > 0.0, "{how}: {c:#}");
            }
            assert_eq!(checks[0]["dns_answers"], 1, "{how}: {v:#}");
            assert_eq!(
                checks[0]["addresses"],
                serde_json::json!([lo]),
                "{how}: {v:#}"
            );
            assert_eq!(
                checks[1]["addresses"],
                serde_json::json!([lo]),
                "tried: {v:#}"
            );
            assert_eq!(checks[2]["http_status"], 200, "{how}: {v:#}");
            assert!(
                f.get("debug").is_none(),
                "no debug lines unless asked: {v:#}"
            );
        }
    }
    // A failure in JSON: the reason and its detail.
    let r = get(&agent.url(&format!(
        "/probe?target={A_ONLY_HOST}:{http}&check=dns&check=tcp&family=ipv6&format=json"
    )))
    .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    let c = &v["families"][0]["checks"];
    assert_eq!(c[0]["success"], false, "{v:#}");
    assert_eq!(c[0]["reason"], "nodata", "{v:#}");
    assert!(c[0]["detail"].as_str().unwrap().contains("NODATA"), "{v:#}");
    assert_eq!(c[0]["dns_answers"], 0, "{v:#}");
    assert_eq!(c[1]["reason"], "skipped", "{v:#}");
    assert_eq!(v["families"][0]["expectation_met"], false, "{v:#}");

    // debug=true: the probe's own log lines, then the metrics.
    let r = get(&agent.url(&format!("{q}&debug=true"))).await;
    assert_eq!(r.status, 200);
    let (logs, metrics) = r
        .body
        .split_once("Metrics that would have been returned:")
        .unwrap_or_else(|| panic!("no metrics section:\n{}", r.body));
    assert!(logs.starts_with("Logs for the probe:"), "{}", r.body);
    for line in [
        format!("[ipv4] {DUAL_HOST}: 1 answers: [127.0.0.1]"),
        format!("[ipv6] {DUAL_HOST}: 1 answers: [::1]"),
        format!("[ipv4] connected to 127.0.0.1:{http}"),
        format!("[ipv6] connected to [::1]:{http}"),
        format!("[ipv4] GET http://{DUAL_HOST}:{http}/ok over ipv4"),
        "[ipv6] http passed in".to_string(),
    ] {
        assert!(logs.contains(&line), "missing `{line}` in:\n{}", r.body);
    }
    assert_eq!(must(metrics, "probe_success{family=\"ipv6\"}"), 1.0);
    // JSON with debug=true carries the lines per family.
    let r = get(&agent.url(&format!("{q}&debug=true&format=json"))).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    let lines = v["families"][1]["debug"].as_array().expect("debug lines");
    assert!(
        lines
            .iter()
            .any(|l| l.as_str().unwrap().contains("connected to [::1]")),
        "{v:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_400_with_the_reason() {
    let w = World::new();
    let agent = w.agent();
    let http = w.http.port();
    let cases = [
        ("/probe", "the `target` parameter is required"),
        ("/probe?check=tcp", "the `target` parameter is required"),
        (
            "/probe?target=&check=tcp",
            "the `target` parameter is required",
        ),
        (
            &format!("/probe?target={DUAL_HOST}:{http}&family=ipv5") as &str,
            "family `ipv5` is not ipv4, ipv6 or both",
        ),
        (
            &format!("/probe?target={DUAL_HOST}:99999&check=tcp"),
            "`99999` is not a port",
        ),
        (
            &format!("/probe?target={DUAL_HOST}:0&check=tcp"),
            "`0` is not a port",
        ),
        (
            &format!("/probe?target={DUAL_HOST}:http&check=tcp"),
            "`http` is not a port",
        ),
        (
            &format!("/probe?target={DUAL_HOST}&module=nope"),
            "unknown module `nope`",
        ),
        (
            &format!("/probe?target={DUAL_HOST}:{http}&check=ping"),
            "unknown check `ping`",
        ),
        (
            "/probe?target=ftp://dual.test/",
            "only http:// and https://",
        ),
        (
            "/probe?target=user@dual.test&check=tcp",
            "user info is not allowed",
        ),
        (
            "/probe?target=127.0.0.1&check=dns",
            "an IP literal needs no dns check",
        ),
        (
            "/probe?target=127.0.0.1:80&check=tcp&family=ipv6",
            "127.0.0.1 is an ipv4 address",
        ),
        ("/probe?target=web&family=ipv6&module=https_ca", ""),
        (
            &format!("/probe?target={DUAL_HOST}&check=s3"),
            "check `s3` cannot run on an ad-hoc target: needs an `aws:",
        ),
        (
            &format!("/probe?target={DUAL_HOST}&check=dns&check=ec2"),
            "check `ec2` cannot run on an ad-hoc target",
        ),
        (
            "/probe?target=169.254.169.254%3F.dual.test&check=tcp",
            "is not a host name (`?` is not allowed in one)",
        ),
    ];
    for (q, reason) in cases {
        let r = get(&agent.url(q)).await;
        if reason.is_empty() {
            // A configured target's name wins over module= and is probed: not malformed.
            assert_eq!(r.status, 200, "{q}: {}", r.body);
            continue;
        }
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(
            r.body.contains(reason),
            "{q}: expected `{reason}` in `{}`",
            r.body
        );
        assert!(
            r.content_type.starts_with("text/plain"),
            "{q}: {}",
            r.content_type
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_required_and_never_logged() {
    let w = World::new();
    let token = format!("dp-secret-{:016x}", rand_u64());
    let wrong = format!("dp-wrong-{:016x}", rand_u64());
    std::fs::write(w.dir.path().join("token.txt"), format!("{token}\n")).unwrap();
    // Every dualprobe log line at trace level: nothing may carry the token.
    let agent = w.agent_with("  token_file: token.txt", "dualprobe=trace,info");
    agent.wait_ready().await;
    let http = w.http.port();
    let q = agent.url(&format!(
        "/probe?target={DUAL_HOST}:{http}&check=tcp&family=ipv4"
    ));
    let bearer = format!("Bearer {token}");
    let cases: Vec<(Vec<(&str, String)>, u16)> = vec![
        (vec![], 401),
        (vec![("Authorization", format!("Bearer {wrong}"))], 401),
        (vec![("Authorization", format!("Bearer {token}x"))], 401),
        (
            vec![(
                "Authorization",
                format!("Bearer {}", &token[..token.len() - 1]),
            )],
            401,
        ),
        (vec![("Authorization", "Bearer ".to_string())], 401),
        (vec![("Authorization", format!("Basic {token}"))], 401),
        (vec![("Authorization", token.clone())], 401),
        (vec![("Authorization", bearer.clone())], 200),
        // The scheme is case-insensitive (RFC 9110 §11.1).
        (vec![("Authorization", format!("bearer {token}"))], 200),
    ];
    for (headers, want) in &cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = get_with(&q, &h).await;
        assert_eq!(r.status, *want, "{headers:?}: {}", r.body);
        if *want == 401 {
            assert_eq!(r.www_authenticate.as_deref(), Some("Bearer"), "{headers:?}");
            assert!(!r.body.contains(&token), "the 401 body echoes the token");
        } else {
            assert_eq!(must(&r.body, "probe_success"), 1.0, "{}", r.body);
        }
    }
    // Probes that log (a refusal) and that fail, with the token and the wrong one.
    for t in [&token, &wrong] {
        let h = [("Authorization", format!("Bearer {t}"))];
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        get_with(
            &agent.url("/probe?target=forbidden.example:80&check=tcp"),
            &h,
        )
        .await;
        get_with(
            &agent.url(&format!("/probe?target={A_ONLY_HOST}:{http}&check=dns")),
            &h,
        )
        .await;
        get_with(
            &agent.url(&format!("/probe?target=[::1]:{http}&check=tcp&debug=true")),
            &h,
        )
        .await;
    }
    // Other endpoints stay open (Prometheus scrapes /metrics without the probe token).
    let metrics = get(&agent.url("/metrics")).await;
    assert_eq!(metrics.status, 200);
    let page = get(&agent.url("/")).await;
    assert_eq!(page.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = agent.logs();
    // The logs are really captured: the refusal is in them.
    assert!(logs.contains("ad-hoc probe refused"), "{logs}");
    for secret in [&token, &wrong] {
        assert!(
            !logs.contains(secret.as_str()),
            "a token is in the logs:\n{logs}"
        );
        assert!(
            !metrics.body.contains(secret.as_str()),
            "a token is in /metrics"
        );
        assert!(
            !page.body.contains(secret.as_str()),
            "a token is on the status page"
        );
    }
    // Ad-hoc probes do not become /metrics series either.
    assert!(
        !metrics.body.contains("target=\"dual.test:"),
        "{}",
        metrics.body
    );
}

/// A random number from the standard library's randomly keyed hasher.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_profiling_or_debug_endpoints_are_served() {
    let w = World::new();
    let agent = w.agent();
    for path in [
        "/debug/pprof/",
        "/debug/pprof/profile?seconds=1",
        "/debug/pprof/heap",
        "/debug/vars",
        "/-/debug",
        "/pprof",
        "/probe/debug",
    ] {
        let r = get(&agent.url(path)).await;
        assert_eq!(r.status, 404, "{path} is served: {}", r.body);
    }
    // /probe's own debug output is per request and needs a target like any probe.
    let r = get(&agent.url("/probe?debug=true")).await;
    assert_eq!(r.status, 400, "{}", r.body);
}
