//! The running agent discovers PrivateLink endpoints with `ec2:DescribeVpcEndpoints` through the
//! standard credential chain and probes them: the real binary against a local server speaking
//! the EC2 query API with responses shaped like the API reference. Nothing leaves loopback: the
//! credentials come from the environment and the instance metadata service is disabled.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support_aws::QueryApiServer;

/// The EC2 query API answering with the fixtures (`tests/data/ec2-describe-*.xml`).
async fn fixture_server() -> QueryApiServer {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |f: &str| std::fs::read_to_string(root.join("tests/data").join(f)).unwrap();
    QueryApiServer::start(vec![
        (
            "DescribeVpcEndpoints",
            read("ec2-describe-vpc-endpoints.xml"),
        ),
        ("DescribeVpcs", read("ec2-describe-vpcs.xml")),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_probes_the_vpc_endpoints_it_discovers() {
    let server = fixture_server().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "interval: 2s\ntimeout: 300ms\nresolver:\n  nameservers: [\"127.0.0.1:{closed}\"]\ndiscovery:\n  vpc_endpoints:\n    vpc_id: vpc-1a2b3c4d\n    region: us-east-1\n    dual_stack: false\n    refresh: 1s\n    endpoint_url: \"http://{}\"\n",
            server.addr
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualprobe"))
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--config",
        ])
        .arg(&cfg)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env("HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(l) = v.get("listen").and_then(|l| l.as_str())
            {
                let _ = tx.send(l.to_string());
            }
        }
    });
    let listen = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("listen address");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let start = Instant::now();
    let mut metrics = String::new();
    while start.elapsed() < Duration::from_secs(15) {
        metrics = client
            .get(format!("http://{listen}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("dualprobe_probe_success{target=\"vpce-elasticloadbalancing-regional\"")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = client
        .get(format!("http://{listen}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        metrics.contains("source=\"vpc_endpoints\""),
        "discovered endpoints are targets:\n{metrics}"
    );
    // Discovery health: the ELB interface and the S3 gateway endpoint (ecr.dkr is pending).
    assert!(
        metrics.contains("dualprobe_discovery_success{source=\"vpc_endpoints\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dualprobe_discovery_endpoints{source=\"vpc_endpoints\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "dualprobe_discovery_last_success_timestamp_seconds{source=\"vpc_endpoints\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        !metrics.contains("source=\"cloudformation\""),
        "only configured sources have discovery series:\n{metrics}"
    );
    assert!(
        page.contains("data-source=\"vpc_endpoints\">discovery vpc_endpoints (vpc-1a2b3c4d): <span class=\"result\">ok, 2 endpoint(s)</span> · last success <time"),
        "{page}"
    );
    assert!(
        metrics.contains(
            "host=\"vpce-0f89a33420c1931d7-bluzidnv.elasticloadbalancing.us-east-1.vpce.amazonaws.com\""
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("dualprobe_probe_success{target=\"vpce-elasticloadbalancing-regional\",check=\"dns\",family=\"ipv4\"}"),
        "discovered endpoints are probed:\n{metrics}"
    );
    let actions = server.actions.lock().unwrap().clone();
    assert!(
        actions.iter().any(|a| a == "DescribeVpcEndpoints"),
        "{actions:?}"
    );
}

/// Runs the binary against `server` (refresh 1 s) and returns its log lines, `/metrics` and the
/// status page once `done` holds for the metrics (or after 15 s).
async fn run_against(
    server: &QueryApiServer,
    done: impl Fn(&str) -> bool,
) -> (Vec<String>, String, String) {
    run_with(server, "", done).await
}

/// As [`run_against`] with `extra` appended to the config.
async fn run_with(
    server: &QueryApiServer,
    extra: &str,
    done: impl Fn(&str) -> bool,
) -> (Vec<String>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "interval: 2s\ntimeout: 300ms\nresolver:\n  nameservers: [\"127.0.0.1:9\"]\ndiscovery:\n  vpc_endpoints:\n    vpc_id: vpc-1a2b3c4d\n    region: us-east-1\n    dual_stack: false\n    refresh: 1s\n    endpoint_url: \"http://{}\"\n{extra}",
            server.addr
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualprobe"))
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--config",
        ])
        .arg(&cfg)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("ECS_CONTAINER_METADATA_URI_V4")
        .env("HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = std::sync::Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(l) = v.get("listen").and_then(|l| l.as_str())
            {
                let _ = tx.send(l.to_string());
            }
            sink.lock().unwrap().push(line);
        }
    });
    let listen = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("listen address");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str| {
        let req = client.get(format!("http://{listen}{path}")).send();
        async move { req.await.unwrap().text().await.unwrap() }
    };
    let start = Instant::now();
    let mut metrics = String::new();
    while start.elapsed() < Duration::from_secs(15) {
        metrics = get("/metrics").await;
        if done(&metrics) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = get("/").await;
    let _ = child.kill();
    let _ = child.wait();
    let lines = lines.lock().unwrap().clone();
    (lines, metrics, page)
}

/// A discovery whose `DescribeVpcs` fails: success 0, no endpoint count, a WARN that names the
/// failed call, and a status-page line with the error. The earlier endpoints are not invented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_discovery_is_visible() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let server = QueryApiServer::start(vec![(
        "DescribeVpcEndpoints",
        std::fs::read_to_string(root.join("tests/data/ec2-describe-vpc-endpoints.xml")).unwrap(),
    )])
    .await;
    let (lines, metrics, page) = run_against(&server, |m| {
        m.contains("dualprobe_discovery_success{source=\"vpc_endpoints\"} 0")
    })
    .await;
    assert!(
        metrics.contains("dualprobe_discovery_success{source=\"vpc_endpoints\"} 0\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("dualprobe_discovery_endpoints{")
            && !metrics.contains("dualprobe_discovery_last_success_timestamp_seconds{"),
        "no success yet, so no count and no time:\n{metrics}"
    );
    let warn = lines
        .iter()
        .find(|l| l.contains("\"WARN\"") && l.contains("VPC endpoint discovery failed"))
        .unwrap_or_else(|| panic!("a WARN line: {lines:#?}"));
    assert!(
        warn.contains("ec2:DescribeVpcs for vpc-1a2b3c4d"),
        "names the failed call: {warn}"
    );
    assert!(
        page.contains("<span class=\"result\">failed: ec2:DescribeVpcs for vpc-1a2b3c4d: ")
            && page.contains("last success never</li>"),
        "{page}"
    );
}

/// A VPC without endpoints: success 1, endpoints explicitly 0, a WARN, "found 0" on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_that_finds_nothing_is_visible() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let empty = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeVpcEndpointsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\n    <requestId>19a9ff46-7df6-49b8-9726-3df27527089e</requestId>\n    <vpcEndpointSet/>\n</DescribeVpcEndpointsResponse>\n";
    let server = QueryApiServer::start(vec![
        ("DescribeVpcEndpoints", empty.to_string()),
        (
            "DescribeVpcs",
            std::fs::read_to_string(root.join("tests/data/ec2-describe-vpcs.xml")).unwrap(),
        ),
    ])
    .await;
    let (lines, metrics, page) = run_against(&server, |m| {
        m.contains("dualprobe_discovery_endpoints{source=\"vpc_endpoints\"} 0")
    })
    .await;
    assert!(
        metrics.contains("dualprobe_discovery_success{source=\"vpc_endpoints\"} 1\n")
            && metrics.contains("dualprobe_discovery_endpoints{source=\"vpc_endpoints\"} 0\n"),
        "{metrics}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\"WARN\"")
            && l.contains("discovery found no endpoints")
            && l.contains("vpc_endpoints")),
        "{lines:#?}"
    );
    assert!(
        page.contains("<span class=\"result\">found 0 endpoints</span> · last success <time"),
        "{page}"
    );
}

/// A VPC endpoint shadowed by a CloudFormation target of the same name (`vpce-s3-gateway`:
/// the earlier source wins) is still the same discovery: refreshes that find the same set swap
/// nothing. Every refresh used to count it as a change and rebuild the generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadowed_endpoint_does_not_make_every_refresh_a_change() {
    let server = fixture_server().await;
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t.yml");
    std::fs::write(
        &template,
        "Resources:\n  S3Endpoint:\n    Type: AWS::EC2::VPCEndpoint\n    Properties:\n      VpcEndpointType: Gateway\n      ServiceName: !Sub com.amazonaws.${AWS::Region}.s3\n      VpcId: vpc-1a2b3c4d\n",
    )
    .unwrap();
    let started = Instant::now();
    let (lines, metrics, _) = run_with(
        &server,
        &format!(
            "  cloudformation: {{ template: {}, region: us-east-1 }}\n",
            template.display()
        ),
        |_| started.elapsed() > Duration::from_secs(5),
    )
    .await;
    let refreshes = server
        .actions
        .lock()
        .unwrap()
        .iter()
        .filter(|a| *a == "DescribeVpcEndpoints")
        .count();
    assert!(refreshes >= 3, "{refreshes} refreshes in 5 s");
    let changes = lines
        .iter()
        .filter(|l| l.contains("VPC endpoints changed"))
        .count();
    assert_eq!(
        changes, 1,
        "only the first discovery is a change:\n{lines:#?}"
    );
    assert!(
        metrics.contains("dualprobe_target_info{target=\"vpce-s3-gateway\",host=\"s3.us-east-1.amazonaws.com\",port=\"443\",source=\"cloudformation\"} 1"),
        "the CloudFormation target wins:\n{metrics}"
    );
}

/// A refresh whose new endpoint set cannot be applied (the generation build re-reads the
/// CloudFormation template, here made invalid between two rounds) keeps the old set running and
/// keeps refreshing: once the template is good again, the next round applies the change. A loop
/// that ended at the failed swap would never probe the new endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_swap_does_not_stop_the_refreshes() {
    let server = fixture_server().await;
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t.yml");
    let good = "Resources:\n  S3Endpoint:\n    Type: AWS::EC2::VPCEndpoint\n    Properties:\n      VpcEndpointType: Gateway\n      ServiceName: !Sub com.amazonaws.${AWS::Region}.s3\n      VpcId: vpc-1a2b3c4d\n";
    std::fs::write(&template, good).unwrap();
    // The same answer with the pending ecr.dkr endpoint now available: one more target.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let endpoints =
        std::fs::read_to_string(root.join("tests/data/ec2-describe-vpc-endpoints.xml")).unwrap();
    let changed = endpoints.replace("<state>pending</state>", "<state>available</state>");
    assert_ne!(changed, endpoints);
    let ecr = "host=\"vpce-0a1b2c3d4e5f60718-x1y2z3w4.dkr.ecr.us-east-1.vpce.amazonaws.com\"";
    let probed = "dualprobe_probe_success{target=\"vpce-ecr-dkr\",check=\"dns\",family=\"ipv4\"}";
    let cfn_failed = "dualprobe_discovery_success{source=\"cloudformation\"} 0\n";
    // 0: waiting for the first discovery; 1: template broken and endpoints changed, waiting for
    // the swap to fail; 2: template restored, waiting for the change to be applied.
    let phase = std::sync::Mutex::new(0);
    let (lines, metrics, _) = run_with(
        &server,
        &format!(
            "  cloudformation: {{ template: {}, region: us-east-1 }}\n",
            template.display()
        ),
        |m| {
            let mut phase = phase.lock().unwrap();
            if *phase == 0 && m.contains("target=\"vpce-elasticloadbalancing-regional\"") {
                std::fs::write(&template, "Resources: [ { not: a template\n").unwrap();
                server.set_answer("DescribeVpcEndpoints", changed.clone());
                *phase = 1;
            } else if *phase == 1 && m.contains(cfn_failed) {
                std::fs::write(&template, good).unwrap();
                *phase = 2;
            }
            *phase == 2 && m.contains(ecr) && m.contains(probed)
        },
    )
    .await;
    let phase = *phase.lock().unwrap();
    assert_eq!(
        phase, 2,
        "the swap never failed (phase {phase}):\n{lines:#?}\n{metrics}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cannot apply discovered VPC endpoints")),
        "{lines:#?}"
    );
    assert!(
        metrics.contains(ecr) && metrics.contains(probed),
        "the change after the failed swap was never applied:\n{lines:#?}\n{metrics}"
    );
    assert!(
        metrics.contains("dualprobe_discovery_success{source=\"cloudformation\"} 1\n"),
        "{metrics}"
    );
}
