//! ECS task metadata v4: `GET ${ECS_CONTAINER_METADATA_URI_V4}/task`, read once at start. Gives
//! the task's availability zone, cluster, family, task ID and service (labels of
//! `dualprobe_build_info`, identity of the EMF heartbeat) and its
//! IPv4/IPv6 addresses and subnet CIDRs (logged). Outside ECS the variable is absent: `None`, no
//! error.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// The environment variable ECS sets in every container (agent 1.39+, Fargate 1.4+).
pub const ENV_VAR: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// What dualprobe uses of the task metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskMetadata {
    /// The cluster: its name (the ARN's last part; the field may hold an ARN or a name).
    pub cluster: String,
    /// The task ARN.
    pub task_arn: String,
    /// The service the task belongs to (`ServiceName`; AWS documents it as absent on Fargate).
    pub service_name: Option<String>,
    /// The task definition family.
    pub family: String,
    /// The task definition revision.
    pub revision: String,
    /// The availability zone the task runs in (absent on very old agents).
    pub availability_zone: Option<String>,
    /// `FARGATE` or `EC2`.
    pub launch_type: Option<String>,
    /// The task's IPv4 addresses (awsvpc network interfaces).
    pub ipv4: Vec<Ipv4Addr>,
    /// The task's IPv6 addresses.
    pub ipv6: Vec<Ipv6Addr>,
    /// The subnets' CIDRs (IPv4 and IPv6), as reported.
    pub subnet_cidrs: Vec<String>,
}

impl TaskMetadata {
    /// The task ID: the ARN's last segment (`arn:…:task/CLUSTER/ID`, or the older
    /// `arn:…:task/ID`).
    pub fn task_id(&self) -> &str {
        self.task_arn.rsplit('/').next().unwrap_or_default()
    }
}

/// Why the metadata could not be read (only when the variable is set).
#[derive(Debug, thiserror::Error)]
pub enum TaskMetadataError {
    /// The request failed.
    #[error("task metadata request to {url} failed: {message}")]
    Request {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The answer was not a v4 task document.
    #[error("task metadata from {url} is not a v4 task document: {message}")]
    Parse {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTask {
    #[serde(default)]
    cluster: String,
    #[serde(rename = "TaskARN", default)]
    task_arn: String,
    service_name: Option<String>,
    #[serde(default)]
    family: String,
    #[serde(default)]
    revision: String,
    availability_zone: Option<String>,
    launch_type: Option<String>,
    #[serde(default)]
    containers: Vec<RawContainer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContainer {
    #[serde(default)]
    networks: Vec<RawNetwork>,
}

#[derive(Debug, Deserialize)]
struct RawNetwork {
    #[serde(rename = "IPv4Addresses", default)]
    ipv4: Vec<String>,
    #[serde(rename = "IPv6Addresses", default)]
    ipv6: Vec<String>,
    #[serde(rename = "IPv4SubnetCIDRBlock")]
    ipv4_subnet: Option<String>,
    #[serde(rename = "IPv6SubnetCIDRBlock")]
    ipv6_subnet: Option<String>,
}

/// Parses a v4 `/task` document.
pub fn parse(body: &str) -> Result<TaskMetadata, String> {
    let raw: RawTask = serde_json::from_str(body).map_err(|e| e.to_string())?;
    if raw.task_arn.is_empty() && raw.family.is_empty() {
        return Err("neither TaskARN nor Family is set".into());
    }
    let cluster = raw
        .cluster
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut out = TaskMetadata {
        cluster,
        task_arn: raw.task_arn,
        service_name: raw.service_name.filter(|s| !s.is_empty()),
        family: raw.family,
        revision: raw.revision,
        availability_zone: raw.availability_zone.filter(|s| !s.is_empty()),
        launch_type: raw.launch_type,
        ..TaskMetadata::default()
    };
    for n in raw.containers.iter().flat_map(|c| &c.networks) {
        for a in n.ipv4.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok()) {
            if !out.ipv4.contains(&a) {
                out.ipv4.push(a);
            }
        }
        for a in n.ipv6.iter().filter_map(|a| a.parse::<Ipv6Addr>().ok()) {
            if !out.ipv6.contains(&a) {
                out.ipv6.push(a);
            }
        }
        for c in [&n.ipv4_subnet, &n.ipv6_subnet].into_iter().flatten() {
            if !out.subnet_cidrs.contains(c) {
                out.subnet_cidrs.push(c.clone());
            }
        }
    }
    Ok(out)
}

/// Reads `${base}/task` (one attempt, `timeout`).
pub async fn fetch(base: &str, timeout: Duration) -> Result<TaskMetadata, TaskMetadataError> {
    let url = format!("{}/task", base.trim_end_matches('/'));
    let request = |message: String| TaskMetadataError::Request {
        url: url.clone(),
        message,
    };
    let tls = crate::net::tls::client_config(None, false).map_err(request)?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|e| request(e.to_string()))?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| request(crate::aws::errors::chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(request(format!("HTTP {status}")));
    }
    let body = resp.text().await.map_err(|e| request(e.to_string()))?;
    parse(&body).map_err(|message| TaskMetadataError::Parse {
        url: url.clone(),
        message,
    })
}

/// Reads the metadata when `ECS_CONTAINER_METADATA_URI_V4` is set; `Ok(None)` outside ECS.
pub async fn from_env() -> Result<Option<Arc<TaskMetadata>>, TaskMetadataError> {
    match std::env::var(ENV_VAR) {
        Ok(uri) if !uri.trim().is_empty() => fetch(uri.trim(), Duration::from_secs(3))
            .await
            .map(|m| Some(Arc::new(m))),
        _ => Ok(None),
    }
}
