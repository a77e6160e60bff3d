//! `--emf`: the real binary writes CloudWatch Embedded Metric Format lines on stdout (logs stay on
//! stderr): one per check per cycle with dimensions target/family/check, and one per cycle for
//! the expectation.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn emf_lines_describe_each_check_and_the_expectation() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "interval: 1s\ntimeout: 500ms\ntargets:\n  - {{ name: up, host: 127.0.0.1, port: {port}, checks: [tcp] }}\n  - {{ name: down, host: 127.0.0.1, port: {closed}, checks: [tcp], expect: {{ ipv4: unreachable }} }}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualprobe"))
        .args([
            "run",
            "--emf",
            "--emf-namespace",
            "dp-test",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut docs: Vec<serde_json::Value> = Vec::new();
    let start = Instant::now();
    let mut lines = BufReader::new(stdout).lines();
    while start.elapsed() < Duration::from_secs(10) && docs.len() < 4 {
        let Some(Ok(line)) = lines.next() else { break };
        docs.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")));
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(listener);

    let check_doc = |target: &str| {
        docs.iter()
            .find(|d| d["target"] == target && d.get("check").is_some())
            .unwrap_or_else(|| panic!("no check document for {target}: {docs:?}"))
    };
    let up = check_doc("up");
    let directive = &up["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "dp-test");
    assert_eq!(
        directive["Dimensions"][0],
        serde_json::json!(["target", "family", "check"])
    );
    assert_eq!(up["family"], "ipv4");
    assert_eq!(up["check"], "tcp");
    assert_eq!(up["ProbeSuccess"], 1);
    assert!(up["ProbeDuration"].as_f64().unwrap() >= 0.0);
    assert!(up["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    let down = check_doc("down");
    assert_eq!(down["ProbeSuccess"], 0);
    assert_eq!(down["result"], "refused");
    let expectation = docs
        .iter()
        .find(|d| d["target"] == "down" && d.get("ExpectationMet").is_some())
        .expect("an ExpectationMet document");
    assert_eq!(
        expectation["ExpectationMet"], 1,
        "a refused connection meets `unreachable`"
    );
    assert_eq!(
        expectation["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
        serde_json::json!(["target", "family"])
    );
}
