//! The agent never probes itself (issue 16, item 6): a configured target whose server redirects
//! to the agent's own `/probe` once fanned one request out into dozens. Refused twice over: a
//! redirect hop to the agent's own listen address is refused before connecting, and a request
//! that still arrives (a name resolving to the task) carries the agent's origin id and `/probe`
//! refuses it. And ad-hoc probes have their own in-flight lane: eight slow ones once made
//! `/probe?target=<configured>` answer 429 to everyone.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::agent_proc::{AgentProc, get};
use crate::support::{DnsServer, Zone};

/// An HTTP server on 127.0.0.1 that answers `/` with a 302 to `location` once set (200 before),
/// counting requests, and `/slow` after 30 s.
struct Redirector {
    port: u16,
    location: Arc<Mutex<Option<String>>>,
    hits: Arc<Mutex<usize>>,
}

impl Redirector {
    async fn start() -> Redirector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let location: Arc<Mutex<Option<String>>> = Arc::default();
        let hits: Arc<Mutex<usize>> = Arc::default();
        let (loc, count) = (Arc::clone(&location), Arc::clone(&hits));
        let app = Router::new()
            .route(
                "/",
                axum::routing::get(move || {
                    let (loc, count) = (Arc::clone(&loc), Arc::clone(&count));
                    async move {
                        *count.lock().unwrap() += 1;
                        match loc.lock().unwrap().clone() {
                            Some(l) => (StatusCode::FOUND, [(header::LOCATION, l)]).into_response(),
                            None => StatusCode::OK.into_response(),
                        }
                    }
                }),
            )
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Response::new(axum::body::Body::empty())
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Redirector {
            port,
            location,
            hits,
        }
    }

    fn redirect_to(&self, location: String) {
        *self.location.lock().unwrap() = Some(location);
    }

    fn hits(&self) -> usize {
        *self.hits.lock().unwrap()
    }
}

fn agent(dir: &tempfile::TempDir, web_port: u16, dns: &DnsServer) -> AgentProc {
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "resolver: {{ nameservers: [\"{}\"] }}\n\
             families: [ipv4]\n\
             probe: {{ allow: [\"127.0.0.0/8\", \"*.test\"], max_concurrent: 2 }}\n\
             targets:\n\
             \x20 - {{ name: loop, host: 127.0.0.1, port: {web_port}, checks: [tcp, http], \
             http: {{ path: / }}, interval: 1h, timeout: 5s }}\n",
            dns.addr(dualprobe::model::family::Family::Ipv4)
        ),
    )
    .unwrap();
    AgentProc::start(&cfg, "info")
}

fn refused_loops(agent: &AgentProc) -> usize {
    agent.logs().matches("own check refused").count()
}

/// `refused_loops` once it reaches `want` or 2 s have passed: the agent writes the line before
/// it answers, but the test's reader thread may not have taken it off the pipe yet.
async fn refused_loops_settled(agent: &AgentProc, want: usize) -> usize {
    for _ in 0..40 {
        if refused_loops(agent) >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    refused_loops(agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_back_into_the_agent_is_refused_not_followed() {
    let web = Redirector::start().await;
    let mut zone = Zone::default();
    zone.set("self.test", &[Ipv4Addr::LOCALHOST], &[]);
    let dns = DnsServer::start(zone);
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir, web.port, &dns);
    agent.wait_ready().await;
    let agent_port: u16 = agent.addr.rsplit(':').next().unwrap().parse().unwrap();

    // By address: the hop names the agent's listen socket; nothing connects to it.
    web.redirect_to(format!(
        "http://127.0.0.1:{agent_port}/probe?target=loop&format=json"
    ));
    let before = web.hits();
    let reply = get(&agent.url("/probe?target=loop&format=json")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains("\"forbidden\"") && reply.body.contains("own listener"),
        "{}",
        reply.body
    );
    assert_eq!(web.hits() - before, 1, "the loop was followed");
    assert_eq!(refused_loops(&agent), 0, "nothing reached /probe");

    // By origin: a name that resolves to the agent passes the address test; the request carries
    // this agent's origin id and its /probe refuses it, once.
    web.redirect_to(format!(
        "http://self.test:{agent_port}/probe?target=loop&format=json"
    ));
    let before = web.hits();
    let reply = get(&agent.url("/probe?target=loop&format=json")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains("\"http_status\"") && reply.body.contains("403"),
        "{}",
        reply.body
    );
    assert_eq!(web.hits() - before, 1, "the loop was followed");
    assert_eq!(
        refused_loops_settled(&agent, 1).await,
        1,
        "{}",
        agent.logs()
    );

    // An ad-hoc literal target on the agent's own port is refused (403) before any connection.
    let reply = get(&agent.url(&format!("/probe?target=127.0.0.1:{agent_port}&check=tcp"))).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains("own listener"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_adhoc_probes_do_not_starve_configured_targets() {
    let web = Redirector::start().await;
    let dns = DnsServer::start(Zone::default());
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir, web.port, &dns);
    agent.wait_ready().await;
    let slow = agent.url(&format!(
        "/probe?target=http://127.0.0.1:{}/slow&check=http&timeout=4",
        web.port
    ));
    // max_concurrent is 2: two slow ad-hoc probes fill the ad-hoc lane...
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = slow.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let third = get(&slow).await;
    assert_eq!(third.status, 429, "{}", third.body);
    // ...and a configured target still runs.
    let configured = get(&agent.url("/probe?target=loop")).await;
    assert_eq!(configured.status, 200, "{}", configured.body);
    assert!(
        configured.body.contains("probe_success 1"),
        "{}",
        configured.body
    );
    for h in held {
        assert_eq!(h.await.unwrap().status, 200);
    }
}
