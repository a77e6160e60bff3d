//! `POST /-/reload` of the real binary: it takes the `/probe` bearer token when one is
//! configured, and a reload that names a file which is not a small regular file (`/dev/zero`
//! as a CA bundle, a FIFO as the token file) is refused at once with the file named, while the
//! running config, `/-/healthy` and the checks carry on.

use std::time::{Duration, Instant};

use crate::agent_proc::{AgentProc, client, get, sample};

const TOKEN: &str = "reload-secret-3f9c";

async fn post(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = client().post(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("POST");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_takes_the_token_and_refuses_bad_files_without_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let fifo = dir.path().join("token.fifo");
    crate::support::mkfifo(&fifo);
    let cfg = dir.path().join("c.yml");
    let good = format!(
        "interval: 2s\ntimeout: 1s\nprobe:\n  token_file: {}\ntargets:\n  - {{ name: local, host: 127.0.0.1, port: 9, checks: [tcp], families: [ipv4] }}\n",
        token.display()
    );
    std::fs::write(&cfg, &good).unwrap();
    let agent = AgentProc::start(&cfg, "info");
    let url = format!("{}/-/reload", agent.base);

    // Without the token, or with a wrong one: 401, nothing reloaded.
    assert_eq!(post(&url, None).await.0, 401);
    assert_eq!(post(&url, Some("wrong")).await.0, 401);
    let (status, body) = post(&url, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");

    // A CA bundle that never ends, and a token file nobody writes: refused at once.
    for (bad, want) in [
        (
            good.replace(
                "checks: [tcp]",
                "checks: [tcp, tls], tls: { ca_file: /dev/zero }",
            ),
            "/dev/zero is not a regular file".to_string(),
        ),
        (
            good.replace(&token.display().to_string(), &fifo.display().to_string()),
            format!("{} is not a regular file", fifo.display()),
        ),
    ] {
        std::fs::write(&cfg, &bad).unwrap();
        let started = Instant::now();
        let (status, body) = post(&url, Some(TOKEN)).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(&want), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let health = get(&format!("{}/-/healthy", agent.base)).await;
        assert_eq!(health.status, 200);
        let m = get(&format!("{}/metrics", agent.base)).await.body;
        assert_eq!(
            sample(&m, "dualprobe_config_last_reload_successful"),
            Some(0.0),
            "{m}"
        );
        // The old config still runs: its target's series are there.
        assert!(
            m.contains("dualprobe_probe_success{target=\"local\",check=\"tcp\",family=\"ipv4\"}"),
            "{m}"
        );
    }
    // The token file of the running config still guards reloads.
    std::fs::write(&cfg, &good).unwrap();
    assert_eq!(post(&url, None).await.0, 401);
    assert_eq!(post(&url, Some(TOKEN)).await.0, 200);
}

/// A SIGHUP the moment the agent says it is starting reloads it; it must not kill it (SIGHUP's
/// default action) because the handler was not registered yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_right_at_start_reloads_instead_of_killing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(&cfg, "targets: []\n").unwrap();
    let mut agent = AgentProc::start(&cfg, "info");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &agent.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    agent.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.logs().contains("SIGHUP: reloading config") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        agent.running(),
        "SIGHUP killed the agent:\n{}",
        agent.logs()
    );
    assert!(
        agent.logs().contains("SIGHUP: reloading config"),
        "{}",
        agent.logs()
    );
}
