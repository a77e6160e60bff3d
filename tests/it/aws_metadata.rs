//! ECS task metadata v4: read from a real HTTP server on 127.0.0.1 serving a document shaped
//! like the v4 `/task` response; errors are typed, never panics; no variable, no metadata.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support_aws::OneFileServer;
use dualprobe::aws::task_metadata::{self, TaskMetadataError};

fn fixture() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ecs-task-metadata-v4.json"),
    )
    .unwrap()
}

#[tokio::test]
async fn reads_az_cluster_family_and_addresses() {
    let server = OneFileServer::start("/v4/0b69d5c0-1234/task", fixture()).await;
    let base = format!("http://{}/v4/0b69d5c0-1234", server.addr);
    let m = task_metadata::fetch(&base, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    assert_eq!(m.cluster, "dualprobe-demo");
    assert_eq!(m.family, "dualprobe-sidecar");
    assert_eq!(m.revision, "7");
    assert_eq!(m.availability_zone.as_deref(), Some("us-east-1b"));
    assert_eq!(m.launch_type.as_deref(), Some("FARGATE"));
    assert_eq!(m.ipv4, vec![Ipv4Addr::new(10, 0, 130, 17)]);
    assert_eq!(
        m.ipv6,
        vec![
            "2600:1f18:47b:a202:8f3a:11c2:9b4d:5e61"
                .parse::<Ipv6Addr>()
                .unwrap()
        ]
    );
    assert_eq!(m.subnet_cidrs, ["10.0.128.0/18", "2600:1f18:47b:a202::/64"]);
    assert!(m.task_arn.ends_with("/0b69d5c0d3d0446894d7c8e1f3b7e4a5"));

    // A trailing slash on the variable's value is tolerated.
    let again = task_metadata::fetch(&format!("{base}/"), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(again, m);
}

#[tokio::test]
async fn failures_are_typed_errors() {
    let server = OneFileServer::start("/v4/x/task", "{\"Cluster\": 5}".to_string()).await;
    let base = format!("http://{}/v4/x", server.addr);
    let e = task_metadata::fetch(&base, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(e, TaskMetadataError::Parse { .. }), "{e}");

    let e = task_metadata::fetch(
        &format!("http://{}/v4/other", server.addr),
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, TaskMetadataError::Request { .. }) && e.to_string().contains("404"),
        "{e}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = task_metadata::fetch(&format!("http://{closed}/v4/x"), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(e, TaskMetadataError::Request { .. }), "{e}");
}

#[tokio::test]
async fn outside_ecs_there_is_no_metadata_and_no_error() {
    if std::env::var_os(task_metadata::ENV_VAR).is_some() {
        eprintln!("running inside ECS: skipped");
        return;
    }
    assert!(task_metadata::from_env().await.unwrap().is_none());
}

/// `dualprobe_build_info` gets `task` (the ARN's last segment) and `service` (`ServiceName`,
/// which AWS documents as absent on Fargate: empty then).
#[test]
fn task_id_and_service_label_build_info() {
    let fargate = task_metadata::parse(&fixture()).unwrap();
    assert_eq!(fargate.task_id(), "0b69d5c0d3d0446894d7c8e1f3b7e4a5");
    assert_eq!(
        fargate.service_name, None,
        "the Fargate fixture has no ServiceName"
    );
    let on_ec2 = task_metadata::parse(&fixture().replacen(
        "\"Family\":",
        "\"ServiceName\": \"web\",\n  \"Family\":",
        1,
    ))
    .unwrap();
    assert_eq!(on_ec2.service_name.as_deref(), Some("web"));
    let old_arn = task_metadata::parse(
        "{\"TaskARN\": \"arn:aws:ecs:us-east-1:123456789012:task/1dc5c17a-422b\", \"Family\": \"f\"}",
    )
    .unwrap();
    assert_eq!(old_arn.task_id(), "1dc5c17a-422b", "the older ARN format");

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = dualprobe::report::metrics::Metrics::register(&mut registry);
    for (m, service) in [(&fargate, ""), (&on_ec2, "web")] {
        metrics.set_build_info(dualprobe::report::metrics::BuildLabels::from_task_metadata(
            m,
        ));
        let text = dualprobe::report::metrics::render(
            &registry,
            &metrics.checks,
            dualprobe::report::metrics::Format::PrometheusText,
        );
        let want = format!(
            "dualprobe_build_info{{version=\"\",availability_zone=\"us-east-1b\",cluster=\"dualprobe-demo\",task_family=\"dualprobe-sidecar\",task=\"0b69d5c0d3d0446894d7c8e1f3b7e4a5\",service=\"{service}\"}} 1\n"
        );
        assert!(text.contains(&want), "{want}\n{text}");
    }
}
