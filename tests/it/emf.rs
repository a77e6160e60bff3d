//! `--emf`: the real binary writes CloudWatch Embedded Metric Format lines on stdout (logs stay on
//! stderr): one per check per cycle with dimensions target/family/check, and one per cycle for
//! the expectation; a heartbeat every 60 s and a line per discovery attempt, with the task's
//! identity from ECS task metadata (served by a real HTTP server on 127.0.0.1).

use crate::support_aws;

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
    while start.elapsed() < Duration::from_secs(10) && docs.len() < 5 {
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
        expectation["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["target", "family"], ["task_family", "family"]])
    );
    assert_eq!(expectation["task_family"], "dualprobe", "no task metadata");

    // The heartbeat is written at start (then every 60 s), without task metadata as
    // dualprobe/local.
    let beat = docs
        .iter()
        .find(|d| d.get("Heartbeat").is_some())
        .unwrap_or_else(|| panic!("a Heartbeat document: {docs:?}"));
    assert_eq!(
        beat["_aws"]["CloudWatchMetrics"][0],
        serde_json::json!({
            "Namespace": "dp-test",
            "Dimensions": [["task_family"], ["task_family", "task"]],
            "Metrics": [{"Name": "Heartbeat", "Unit": "Count"}]
        })
    );
    assert_eq!(
        (&beat["Heartbeat"], &beat["task_family"], &beat["task"]),
        (
            &serde_json::json!(1),
            &serde_json::json!("dualprobe"),
            &serde_json::json!("local")
        )
    );
    assert!(
        !docs.iter().any(|d| d.get("DiscoverySuccess").is_some()),
        "no discovery configured, no discovery lines"
    );
}

/// In a task (metadata v4 served on 127.0.0.1): the heartbeat and every line carry the task's
/// family and ID; each discovery attempt writes `DiscoverySuccess` and, on success only,
/// `DiscoveryEndpoints` (explicitly 0 for a template without endpoints).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_identity_heartbeat_and_discovery_lines() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let task = std::fs::read_to_string(root.join("tests/data/ecs-task-metadata-v4.json")).unwrap();
    let meta = support_aws::OneFileServer::start("/v4/abc/task", task).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("no-endpoints.yml");
    std::fs::write(
        &template,
        "Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n",
    )
    .unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "interval: 1s\ntimeout: 500ms\nresolver:\n  nameservers: [\"127.0.0.1:{closed}\"]\ndiscovery:\n  cloudformation: {{ template: \"{}\", region: us-east-1 }}\n  vpc_endpoints:\n    vpc_id: vpc-1a2b3c4d\n    region: us-east-1\n    dual_stack: false\n    refresh: 1h\n    endpoint_url: \"http://127.0.0.1:{closed}\"\n",
            template.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualprobe"))
        .args(["run", "--emf", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .env(
            "ECS_CONTAINER_METADATA_URI_V4",
            format!("http://{}/v4/abc", meta.addr),
        )
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env("HOME", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    let mut docs: Vec<serde_json::Value> = Vec::new();
    let want = |docs: &[serde_json::Value], source: &str| {
        docs.iter()
            .find(|d| d["source"] == source && d.get("DiscoverySuccess").is_some())
            .cloned()
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15)
        && !(want(&docs, "vpc_endpoints").is_some()
            && want(&docs, "cloudformation").is_some()
            && docs.iter().any(|d| d.get("Heartbeat").is_some()))
    {
        if let Ok(d) = rx.recv_timeout(Duration::from_millis(200)) {
            docs.push(d);
        }
    }
    let _ = child.kill();
    let _ = child.wait();

    let beat = docs
        .iter()
        .find(|d| d.get("Heartbeat").is_some())
        .unwrap_or_else(|| panic!("a heartbeat: {docs:?}"));
    assert_eq!(beat["task_family"], "dualprobe-sidecar");
    assert_eq!(beat["task"], "0b69d5c0d3d0446894d7c8e1f3b7e4a5");
    assert_eq!(beat["availability_zone"], "us-east-1b");

    let cfn = want(&docs, "cloudformation").expect("a cloudformation discovery line");
    assert_eq!(
        cfn["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["task_family", "source"]])
    );
    assert_eq!(
        cfn["_aws"]["CloudWatchMetrics"][0]["Metrics"],
        serde_json::json!([
            {"Name": "DiscoverySuccess", "Unit": "Count"},
            {"Name": "DiscoveryEndpoints", "Unit": "Count"}
        ])
    );
    assert_eq!(
        (&cfn["DiscoverySuccess"], &cfn["DiscoveryEndpoints"]),
        (&1.into(), &0.into())
    );
    assert_eq!(cfn["task_family"], "dualprobe-sidecar");

    let vpc = want(&docs, "vpc_endpoints").expect("a vpc_endpoints discovery line");
    assert_eq!(vpc["DiscoverySuccess"], 0, "nothing listens: {vpc}");
    assert!(vpc.get("DiscoveryEndpoints").is_none(), "{vpc}");
    assert_eq!(
        vpc["_aws"]["CloudWatchMetrics"][0]["Metrics"],
        serde_json::json!([{"Name": "DiscoverySuccess", "Unit": "Count"}])
    );
    assert!(
        vpc["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("ec2:DescribeVpcEndpoints for vpc-1a2b3c4d: ")),
        "{vpc}"
    );
}

/// The heartbeat repeats every period until the agent stops (60 s in the binary; shorter here).
#[tokio::test]
async fn the_heartbeat_repeats_until_cancelled() {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let sink = std::sync::Arc::new(dualprobe::report::emf::EmfSink::new(
        "ns",
        dualprobe::report::emf::EmfTask::default(),
        Box::new(buf.clone()),
    ));
    let tracker = tokio_util::task::TaskTracker::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    sink.spawn_heartbeat(Duration::from_millis(100), &tracker, cancel.clone());
    tokio::time::sleep(Duration::from_millis(350)).await;
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    let written = buf.0.lock().unwrap().clone();
    let lines: Vec<serde_json::Value> = String::from_utf8(written)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        (3..=5).contains(&lines.len()),
        "at 0, 100, 200, 300 ms: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|d| d["Heartbeat"] == 1 && d["task"] == "local")
    );
    let after = buf.0.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(buf.0.lock().unwrap().len(), after, "nothing after cancel");
}
