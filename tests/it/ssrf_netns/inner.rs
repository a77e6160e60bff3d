//! Inside the namespace: the `/probe` SSRF table against the real binary (see the parent
//! module for what it proves and how it gets here).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use dualprobe::model::family::Family;

use super::{ECS, IMDS, IMDS6, NAT64_IMDS6};
use crate::agent_proc::{AgentProc, get, sample};
use crate::support::{DUAL_HOST, DnsServer, standard_zone, tcp_listener_pair, with_free_port};

/// Refuses to run anywhere but in a namespace made of loopback only, holding the metadata
/// addresses itself: on a real host (say, an EC2 instance) nothing here may ever run.
fn in_private_namespace() -> Result<(), String> {
    let devices: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map_err(|e| format!("/sys/class/net: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    if devices != ["lo"] {
        return Err(format!(
            "network devices {devices:?}: not a loopback-only namespace"
        ));
    }
    for a in [IpAddr::V4(IMDS), IpAddr::V4(ECS), IpAddr::V6(IMDS6)] {
        std::net::TcpListener::bind(SocketAddr::new(a, 0))
            .map_err(|e| format!("{a} is not bound on lo here: {e}"))?;
    }
    Ok(())
}

/// Runs the table; panics, failing the inner run, when a row fails or the namespace is not a
/// private loopback-only one.
pub fn run() {
    // The harness has written `test NAME ... ` without a newline: end that line so every row
    // starts one of its own (the outer run counts lines starting `ok   |` and `FAIL |`).
    println!();
    if let Err(e) = in_private_namespace() {
        eprintln!("FAIL | refusing to run the SSRF table: {e}");
        println!("0 passed, 1 failed");
        panic!("refusing to run the SSRF table: {e}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (passed, failed) = rt.block_on(table());
    println!("{passed} passed, {failed} failed");
    assert_eq!(failed, 0, "{failed} of {} rows failed", passed + failed);
}

/// A listener that counts the connections it accepts.
pub(super) struct Counter {
    addr: SocketAddr,
    pub(super) count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Counter {
    pub(super) async fn bind(addr: SocketAddr) -> Counter {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok((s, _)) = l.accept().await {
                    c.fetch_add(1, Ordering::SeqCst);
                    drop(s);
                }
            }
        });
        Counter { addr, count, task }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a row must produce.
enum Want {
    /// 403 whose body gives the reason (`refused: ...`) and contains every string.
    Refused(Vec<String>),
    /// A redirect URL no parser accepts: the 302 is the final answer, nothing is followed.
    NotFollowed,
    /// Refused (403), or failed without being followed (200, every `probe_success` 0): a
    /// redirect from an IPv4-only probe to an IPv6 destination ends as leaving the family.
    Blocked,
    /// A control that must work: 200 with these samples equal to 1.
    Works(Vec<String>),
}

struct Row {
    name: String,
    query: String,
    want: Want,
}

/// A reply body on one line: for Prometheus text only the verdict and failure lines.
fn brief(body: &str) -> String {
    let lines: Vec<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with("probe_success") || l.contains("failure_info"))
        .collect();
    if lines.is_empty() {
        body.trim().replace('\n', " / ")
    } else {
        lines.join("; ")
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn refused(what: &[&str]) -> Want {
    Want::Refused(what.iter().map(|s| s.to_string()).collect())
}

/// The redirecting server: `/to/N` answers 302 to `locations[N]`, `/hop/N` to `/to/N` on
/// the dual-stack name (two hops), `/ok` 200. On 127.0.0.1 and [::1], one port.
fn redirect_server(locations: Arc<Vec<String>>) -> (u16, Vec<tokio::task::JoinHandle<()>>) {
    let (port, listeners) = with_free_port(|p| Ok((p, tcp_listener_pair(p)?)));
    let mut tasks = Vec::new();
    for l in listeners {
        let locations = locations.clone();
        let app = Router::new().fallback(move |uri: Uri| {
            let locations = locations.clone();
            async move {
                let path = uri.path();
                let redirect = |to: String| -> Response {
                    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
                };
                if path == "/ok" {
                    return (StatusCode::OK, "ok").into_response();
                }
                if path == "/hop-ok" {
                    return redirect(format!("http://{DUAL_HOST}:{port}/ok"));
                }
                let n = |p: &str| p.parse::<usize>().ok().filter(|n| *n < locations.len());
                if let Some(n) = path.strip_prefix("/to/").and_then(n) {
                    return redirect(locations[n].clone());
                }
                if let Some(n) = path.strip_prefix("/hop/").and_then(n) {
                    return redirect(format!("http://{DUAL_HOST}:{port}/to/{n}"));
                }
                StatusCode::NOT_FOUND.into_response()
            }
        });
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        }));
    }
    (port, tasks)
}

async fn table() -> (usize, usize) {
    // Names that resolve to forbidden addresses (`*.test` is allowed by probe.allow).
    let mapped: Ipv6Addr = "::ffff:169.254.169.254".parse().unwrap();
    let nat64: Ipv6Addr = "64:ff9b::a9fe:a9fe".parse().unwrap();
    let nat64_local: Ipv6Addr = "64:ff9b:1::a9fe:a9fe".parse().unwrap();
    let compat: Ipv6Addr = "::a9fe:a9fe".parse().unwrap();
    let translated: Ipv6Addr = "::ffff:0:a9fe:a9fe".parse().unwrap();
    let six_to_four: Ipv6Addr = "2002:a9fe:a9fe::1".parse().unwrap();
    let ll6: Ipv6Addr = "fe80::1".parse().unwrap();
    let mut zone = standard_zone();
    let names: Vec<(&str, Vec<Ipv4Addr>, Vec<Ipv6Addr>, &str)> = vec![
        ("imds.test", vec![IMDS], vec![], "169.254.169.254"),
        ("ecs.test", vec![ECS], vec![], "169.254.170.2"),
        (
            "linklocal.test",
            vec![Ipv4Addr::new(169, 254, 1, 1)],
            vec![],
            "link-local",
        ),
        ("imds6.test", vec![], vec![IMDS6], "fd00:ec2::254"),
        ("dualmeta.test", vec![IMDS], vec![IMDS6], "refused"),
        ("mapped.test", vec![], vec![mapped], "169.254.169.254"),
        ("nat64.test", vec![], vec![nat64], "169.254.169.254"),
        (
            "nat64local.test",
            vec![],
            vec![nat64_local],
            "169.254.169.254",
        ),
        ("compat.test", vec![], vec![compat], "169.254.169.254"),
        (
            "translated.test",
            vec![],
            vec![translated],
            "169.254.169.254",
        ),
        (
            "sixtofour.test",
            vec![],
            vec![six_to_four],
            "169.254.169.254",
        ),
        ("ll6.test", vec![], vec![ll6], "fe80::1"),
        // Under the configured prefix only: a learned prefix makes its forms forbidden too.
        (
            "nat64cfg.test",
            vec![],
            vec![NAT64_IMDS6],
            "(2001:db8:64::/96) for 169.254.169.254",
        ),
        ("zero.test", vec![Ipv4Addr::UNSPECIFIED], vec![], "0.0.0.0"),
        (
            "zero8.test",
            vec![Ipv4Addr::new(0, 1, 2, 3)],
            vec![],
            "0.1.2.3",
        ),
        ("unspec6.test", vec![], vec![Ipv6Addr::UNSPECIFIED], "::"),
        // The forbidden address second: every answer is checked, not just the first.
        (
            "mixed.test",
            vec![Ipv4Addr::LOCALHOST, IMDS],
            vec![],
            "169.254.169.254",
        ),
        (
            "mixed6.test",
            vec![],
            vec![Ipv6Addr::LOCALHOST, IMDS6],
            "fd00:ec2::254",
        ),
    ];
    for (n, a, aaaa, _) in &names {
        zone.set(n, a, aaaa);
    }
    // DNS rebinding: the first lookup (the dns check) is harmless, the next (the http
    // check's own connection) is the metadata service.
    zone.rebind(
        "rebind4.test",
        1,
        (&[Ipv4Addr::LOCALHOST], &[]),
        (&[IMDS], &[]),
    );
    zone.rebind(
        "rebind6.test",
        1,
        (&[], &[Ipv6Addr::LOCALHOST]),
        (&[], &[IMDS6]),
    );
    let dns = DnsServer::start(zone);

    // Every disguise of a forbidden address as a URL host, with what the refusal names.
    let hosts: Vec<(&str, &str)> = vec![
        ("169.254.169.254", "169.254.169.254"),
        ("169.254.170.2", "169.254.170.2"),
        ("169.254.1.1", "link-local"),
        ("2852039166", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0XA9FEA9FE", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("0251.254.169.254", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("169.16689662", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("169.254.169.254.", "169.254.169.254"),
        ("%31%36%39.254.169.254", "169.254.169.254"),
        ("[::ffff:169.254.169.254]", "169.254.169.254"),
        ("[::ffff:a9fe:a9fe]", "169.254.169.254"),
        ("[0:0:0:0:0:ffff:a9fe:a9fe]", "169.254.169.254"),
        ("[::ffff:169.254.170.2]", "169.254.170.2"),
        ("[::a9fe:a9fe]", "169.254.169.254"),
        ("[::ffff:0:a9fe:a9fe]", "169.254.169.254"),
        ("[64:ff9b::a9fe:a9fe]", "169.254.169.254"),
        ("[64:ff9b::169.254.169.254]", "169.254.169.254"),
        ("[64:ff9b:1::a9fe:a9fe]", "169.254.169.254"),
        (
            "[2001:db8:64::a9fe:a9fe]",
            "(2001:db8:64::/96) for 169.254.169.254",
        ),
        (
            "[2001:db8:64::169.254.170.2]",
            "(2001:db8:64::/96) for 169.254.170.2",
        ),
        ("[2002:a9fe:a9fe::]", "169.254.169.254"),
        ("[fd00:ec2::254]", "fd00:ec2::254"),
        ("[fd00:ec2:0:0:0:0:0:254]", "fd00:ec2::254"),
        ("[FD00:EC2::254]", "fd00:ec2::254"),
        ("[fd00:ec2::23]", "fd00:ec2::23"),
        ("[fe80::1]", "fe80::1"),
        ("[fe80::a9fe:a9fe]", "link-local"),
        ("[::ffff:0.0.0.0]", "0.0.0.0"),
        ("0.0.0.0", "0.0.0.0"),
        ("0", "0.0.0.0"),
        ("0x0", "0.0.0.0"),
        ("[::]", "::"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "broadcast"),
    ];

    // Redirect locations: each disguise, names, and URL tricks.
    let mut locations: Vec<(String, String)> = Vec::new();
    for (h, why) in &hosts {
        locations.push((format!("http://{h}/latest/meta-data/"), why.to_string()));
    }
    for (n, _, _, why) in &names {
        locations.push((format!("http://{n}/"), why.to_string()));
    }
    for (loc, why) in [
        ("https://169.254.169.254/", "169.254.169.254"),
        (
            "http://169.254.169.254:80/latest/api/token",
            "169.254.169.254",
        ),
        ("http://169.254.170.2/v2/credentials/abc", "169.254.170.2"),
        ("//169.254.169.254/", "169.254.169.254"),
        ("http://169.254.169.254\\@dual.test/", "169.254.169.254"),
        ("http://user:pw@169.254.169.254/", "169.254.169.254"),
        ("http://IMDS.TEST/", "169.254.169.254"),
        ("http://imds.test.:80/", "169.254.169.254"),
        ("https://imds6.test/", "fd00:ec2::254"),
        ("http://evil.example/", "not in probe.allow"),
    ] {
        locations.push((loc.to_string(), why.to_string()));
    }
    // Not a URL anyone parses (zone IDs): must not be followed.
    let unparseable = locations.len();
    locations.push(("http://[fe80::1%25lo]/".to_string(), String::new()));
    let location_urls = Arc::new(locations.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>());
    let (http_port, _server) = redirect_server(location_urls);

    // Counting listeners on every metadata address, on every port the table can reach, and
    // on loopback 80/443, where a connect to 0.0.0.0 or :: would land.
    let mut counters = Vec::new();
    for a in [
        IMDS.into(),
        ECS.into(),
        IMDS6.into(),
        IpAddr::V6(NAT64_IMDS6),
    ] {
        for p in [80, 443, http_port] {
            counters.push(Counter::bind(SocketAddr::new(a, p)).await);
        }
    }
    for a in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        for p in [80, 443] {
            counters.push(Counter::bind(SocketAddr::new(a, p)).await);
        }
    }

    // Scheduled checks: configured targets redirected into metadata, and literal ones.
    let scheduled = super::scheduled::Scheduled::new(&locations, http_port).await;
    let targets_yaml = scheduled.targets_yaml();

    // The real binary, with an allowlist that lets everything through.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dualprobe.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"timeout: 2s
resolver:
  nameservers: ["{ns}"]
  nat64_prefixes: ["2001:db8:64::/96"]
probe:
  allow: ["*.test", "127.0.0.0/8", "::1/128", "169.254.0.0/16", "fd00::/8", "fe80::/10", "0.0.0.0/0", "::/0"]
  max_concurrent: 64
  rate_per_second: 1000
  burst: 1000
  max_timeout: 3s
modules:
  web:
    checks: [tcp, http]
    port: 80
targets:
{targets_yaml}"#,
            ns = dns.addr(Family::Ipv4)
        ),
    )
    .unwrap();
    let agent = AgentProc::start(&cfg, "info");

    let mut rows: Vec<Row> = Vec::new();
    let row = |name: String, query: String, want: Want| Row { name, query, want };
    // Controls first: the agent really probes and follows redirects inside the namespace.
    rows.push(row(
        "control: allowed name, dns+tcp+http".into(),
        format!(
            "target={}&check=dns&check=tcp&check=http",
            enc(&format!("http://{DUAL_HOST}:{http_port}/ok"))
        ),
        Want::Works(vec![
            "probe_success{family=\"ipv4\"}".into(),
            "probe_success{family=\"ipv6\"}".into(),
        ]),
    ));
    rows.push(row(
        "control: allowed redirect is followed".into(),
        format!(
            "target={}&check=http",
            enc(&format!("http://{DUAL_HOST}:{http_port}/hop-ok"))
        ),
        Want::Works(vec![
            "probe_success{family=\"ipv4\"}".into(),
            "probe_success{family=\"ipv6\"}".into(),
        ]),
    ));
    // Literal targets.
    for (h, why) in &hosts {
        let w = || refused(&[why]);
        let bare_v6 = h.starts_with('[').then(|| h.trim_matches(['[', ']']));
        for check in ["tcp", "pmtu", "trace"] {
            let query = format!("target={}&check={check}", enc(h));
            rows.push(row(format!("literal {h} {check}"), query, w()));
        }
        rows.push(row(
            format!("literal {h}:80 tcp"),
            format!("target={}&check=tcp", enc(&format!("{h}:80"))),
            w(),
        ));
        rows.push(row(
            format!("literal http://{h}/ http"),
            format!(
                "target={}&check=http",
                enc(&format!("http://{h}/latest/meta-data/"))
            ),
            w(),
        ));
        rows.push(row(
            format!("literal https://{h}/ default checks"),
            format!("target={}", enc(&format!("https://{h}/"))),
            w(),
        ));
        rows.push(row(
            format!("literal {h} module=web"),
            format!("target={}&module=web", enc(h)),
            w(),
        ));
        for fam in ["ipv4", "ipv6"] {
            rows.push(row(
                format!("literal {h} http family={fam}"),
                format!("target={}&check=http&family={fam}", enc(h)),
                w(),
            ));
        }
        if let Some(b) = bare_v6 {
            rows.push(row(
                format!("literal bare {b} tcp"),
                format!("target={}&check=tcp", enc(b)),
                w(),
            ));
        }
    }
    for (h, why) in [
        ("[fe80::1%25lo]", "fe80::1"),
        ("fe80::1%lo", "fe80::1"),
        ("http://[fe80::1%25lo]:80/", "fe80::1"),
    ] {
        rows.push(row(
            format!("literal {h} tcp (zone ID)"),
            format!("target={}&check=tcp", enc(h)),
            refused(&[why]),
        ));
    }
    // Names resolving to forbidden addresses.
    for (n, _, _, why) in &names {
        let w = || refused(&[why]);
        rows.push(row(
            format!("name {n} dns"),
            format!("target={}&check=dns", enc(&format!("{n}:80"))),
            w(),
        ));
        rows.push(row(
            format!("name {n}:80 tcp"),
            format!("target={}&check=tcp", enc(&format!("{n}:80"))),
            w(),
        ));
        rows.push(row(
            format!("name {n}:443 tcp"),
            format!("target={}&check=tcp", enc(&format!("{n}:443"))),
            w(),
        ));
        rows.push(row(
            format!("name http://{n}/ http"),
            format!("target={}&check=http", enc(&format!("http://{n}/"))),
            w(),
        ));
        rows.push(row(
            format!("name {n}:{http_port} dns+tcp+http"),
            format!(
                "target={}&check=dns&check=tcp&check=http",
                enc(&format!("http://{n}:{http_port}/"))
            ),
            w(),
        ));
        rows.push(row(
            format!("name {n} module=web"),
            format!("target={}&module=web", enc(n)),
            w(),
        ));
    }
    // Redirects from an allowed host, one hop and two hops.
    for (i, (loc, why)) in locations.iter().enumerate() {
        let want = || {
            if i == unparseable {
                Want::NotFollowed
            } else {
                refused(&[why])
            }
        };
        for path in [format!("/to/{i}"), format!("/hop/{i}")] {
            rows.push(row(
                format!("redirect {path} -> {loc}"),
                format!(
                    "target={}&check=http",
                    enc(&format!("http://{DUAL_HOST}:{http_port}{path}"))
                ),
                want(),
            ));
        }
        // From an IPv4 literal only the IPv4 cycle runs: an IPv6 destination ends as leaving
        // the family (or NODATA) rather than as refused; either way it is not followed.
        rows.push(row(
            format!("redirect /to/{i} -> {loc} (from 127.0.0.1, tcp+http)"),
            format!(
                "target={}&check=tcp&check=http",
                enc(&format!("http://127.0.0.1:{http_port}/to/{i}"))
            ),
            if i == unparseable {
                Want::NotFollowed
            } else {
                Want::Blocked
            },
        ));
    }
    // DNS rebinding: the dns and tcp checks see 127.0.0.1 / ::1, the http check's own
    // lookup gets the metadata address, which the guard refuses before connecting.
    for (n, fam, why) in [
        ("rebind4.test", "ipv4", "169.254.169.254"),
        ("rebind6.test", "ipv6", "fd00:ec2::254"),
    ] {
        rows.push(row(
            format!("rebinding {n} over {fam}"),
            format!(
                "target={}&check=dns&check=tcp&check=http&family={fam}",
                enc(&format!("http://{n}:{http_port}/ok"))
            ),
            refused(&[why]),
        ));
    }

    let mut passed = 0;
    let mut failed = 0;
    for r in &rows {
        let reply = get(&agent.url(&format!("/probe?{}", r.query))).await;
        let verdict = match &r.want {
            Want::Refused(what) => {
                if reply.status != 403 {
                    Err(format!(
                        "HTTP {} (want 403): {}",
                        reply.status,
                        brief(&reply.body)
                    ))
                } else if !reply.body.contains("refused: ") {
                    Err(format!("403 without a reason: {}", brief(&reply.body)))
                } else if let Some(w) = what.iter().find(|w| !reply.body.contains(w.as_str())) {
                    Err(format!("reason lacks `{w}`: {}", brief(&reply.body)))
                } else {
                    Ok(brief(&reply.body).to_string())
                }
            }
            Want::NotFollowed => {
                if reply.status == 403 {
                    Ok(brief(&reply.body).to_string())
                } else if reply.status == 200
                    && reply
                        .body
                        .lines()
                        .any(|l| l.starts_with("probe_http_status_code") && l.ends_with(" 302"))
                {
                    Ok("not followed".to_string())
                } else {
                    Err(format!("HTTP {}: {}", reply.status, brief(&reply.body)))
                }
            }
            Want::Blocked => {
                let successes: Vec<&str> = reply
                    .body
                    .lines()
                    .filter(|l| l.starts_with("probe_success"))
                    .collect();
                if reply.status == 403 && reply.body.contains("refused: ") {
                    Ok(brief(&reply.body).to_string())
                } else if reply.status == 200
                    && !successes.is_empty()
                    && successes.iter().all(|l| l.ends_with(" 0"))
                {
                    Ok("failed, not followed".to_string())
                } else {
                    Err(format!("HTTP {}: {}", reply.status, brief(&reply.body)))
                }
            }
            Want::Works(series) => {
                match series.iter().find(|s| sample(&reply.body, s) != Some(1.0)) {
                    None if reply.status == 200 => Ok("works".to_string()),
                    _ => Err(format!("HTTP {}: {}", reply.status, brief(&reply.body))),
                }
            }
        };
        match verdict {
            Ok(why) => {
                passed += 1;
                println!("ok   | {} | {why}", r.name);
            }
            Err(e) => {
                failed += 1;
                println!("FAIL | {} | /probe?{} | {e}", r.name, r.query);
            }
        }
    }

    // The rebinding rows really rebound: the http check asked again and got the bad answer.
    for n in ["rebind4.test", "rebind6.test"] {
        let asked = dns.queries_for(n, hickory_proto::rr::RecordType::A)
            + dns.queries_for(n, hickory_proto::rr::RecordType::AAAA);
        if asked >= 2 {
            passed += 1;
            println!(
                "ok   | {n} was asked {asked} times (the second answer was the metadata address)"
            );
        } else {
            failed += 1;
            println!("FAIL | {n} was asked only {asked} times: the rebinding row proved nothing");
        }
    }

    let (p, f) = scheduled.verify(&agent).await;
    passed += p;
    failed += f;

    // Nothing reached any metadata listener...
    tokio::time::sleep(Duration::from_millis(200)).await;
    for c in &counters {
        let n = c.count.load(Ordering::SeqCst);
        if n == 0 {
            passed += 1;
            println!("ok   | listener {} saw 0 connections", c.addr);
        } else {
            failed += 1;
            println!("FAIL | listener {} saw {n} connections", c.addr);
        }
    }
    // ...and each listener would have counted one: connect to each directly.
    for c in &counters {
        let before = c.count.load(Ordering::SeqCst);
        let connected = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(c.addr),
        )
        .await;
        let mut counted = false;
        for _ in 0..100 {
            if c.count.load(Ordering::SeqCst) > before {
                counted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if matches!(connected, Ok(Ok(_))) && counted {
            passed += 1;
            println!("ok   | listener {} counts a direct connection", c.addr);
        } else {
            failed += 1;
            println!(
                "FAIL | listener {} did not count a direct connection ({connected:?})",
                c.addr
            );
        }
    }
    let logs = agent.logs();
    if logs.contains("ad-hoc probe refused") {
        passed += 1;
        println!("ok   | refusals are logged");
    } else {
        failed += 1;
        println!("FAIL | no refusal in the agent's log:\n{logs}");
    }
    (passed, failed)
}
