//! Discovery: the repo's own VPC template (eight PrivateLink endpoints, four of them behind a
//! `Condition`), every `cloudformation/*.yml` kept in step with what discovery finds, and
//! `DescribeVpcEndpoints`/`DescribeVpcs` answers shaped like the EC2 API reference served by a
//! real HTTP peer on 127.0.0.1, and `DescribeVpcEndpoints` against moto (its own shapes, another
//! VPC's endpoints left out).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use dualprobe::config::Config;
use dualprobe::discovery::cloudformation::{discover_template_file, endpoints, parse_template};
use dualprobe::discovery::{self, EndpointKind};
use dualprobe::model::family::Family;
use dualprobe::model::target::{Host, TargetSource};
use dualprobe::net::resolver::DnsResolver;

use crate::support::{DnsServer, Zone};
use crate::support_aws::{
    self, AwsPki, EC2_DUALSTACK, Moto, QueryApiServer, aws_target, ec2_client, load, target,
};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_seed_vpc_template_yields_all_eight_endpoints() {
    let found = discover_template_file(&repo("cloudformation/ipv6-vpc.yml"), "us-east-1").unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = found
        .iter()
        .map(|d| (d.origin.as_str(), d.host.as_str(), d.condition.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            // ECR's endpoints only in NetworkMode dualstack: an IPv6-only task pulls by ECR's
            // dual-stack names, which PrivateLink does not carry.
            (
                "EcrApiEndpoint",
                "api.ecr.us-east-1.amazonaws.com",
                Some("DualStack")
            ),
            (
                "EcrDkrEndpoint",
                "dualprobe.dkr.ecr.us-east-1.amazonaws.com",
                Some("DualStack")
            ),
            ("LogsEndpoint", "logs.us-east-1.amazonaws.com", None),
            (
                "SsmEndpoint",
                "ssm.us-east-1.amazonaws.com",
                Some("EcsExecEnabled")
            ),
            (
                "SsmMessagesEndpoint",
                "ssmmessages.us-east-1.amazonaws.com",
                Some("EcsExecEnabled")
            ),
            (
                "SecretsManagerEndpoint",
                "secretsmanager.us-east-1.amazonaws.com",
                Some("SecretsManagerEnabled")
            ),
            (
                "ApsWorkspacesEndpoint",
                "aps-workspaces.us-east-1.amazonaws.com",
                Some("ApsWorkspacesEndpointEnabled")
            ),
            ("S3GatewayEndpoint", "s3.us-east-1.amazonaws.com", None),
        ]
    );
    let gateway = found
        .iter()
        .find(|d| d.kind == EndpointKind::Gateway)
        .unwrap();
    assert_eq!(
        gateway.families,
        vec![Family::Ipv4],
        "gateway endpoints carry IPv4 only"
    );
    assert!(
        !gateway.check_private,
        "a gateway endpoint keeps the public name"
    );
    for d in found.iter().filter(|d| d.kind == EndpointKind::Interface) {
        assert!(d.check_private, "{}", d.name);
        // No IpAddressType: an IPv4 endpoint. Both families are probed, and IPv6 is expected
        // to have no record (an AAAA there would be the surprise).
        assert_eq!(d.families, Family::ALL.to_vec(), "{}", d.name);
        assert_eq!(
            (d.expect.ipv4.as_str(), d.expect.ipv6.as_str()),
            ("reachable", "nodata"),
            "{}: no IpAddressType in the template",
            d.name
        );
    }

    // The conditions evaluate with the parameters' defaults: NetworkMode dualstack (so the ECR
    // endpoints exist), ECS Exec on, Secrets Manager and aps-workspaces off.
    let t = parse_template(&std::fs::read_to_string(repo("cloudformation/ipv6-vpc.yml")).unwrap())
        .unwrap();
    let defaults: Vec<(String, Option<bool>)> = endpoints(&t, "us-east-1")
        .unwrap()
        .into_iter()
        .filter(|e| e.condition.is_some())
        .map(|e| (e.logical_id, e.condition_default))
        .collect();
    assert_eq!(
        defaults,
        [
            ("EcrApiEndpoint".to_string(), Some(true)),
            ("EcrDkrEndpoint".to_string(), Some(true)),
            ("SsmEndpoint".to_string(), Some(true)),
            ("SsmMessagesEndpoint".to_string(), Some(true)),
            ("SecretsManagerEndpoint".to_string(), Some(false)),
            ("ApsWorkspacesEndpoint".to_string(), Some(false)),
        ]
    );

    let text = discovery::render_discovered(&found);
    assert!(text.starts_with("8 endpoint target(s)\n"), "{text}");
    assert_eq!(text.matches(" if ").count(), 6, "{text}");
    assert!(text.contains("vpce-secretsmanager"), "{text}");
    assert!(text.contains("if SecretsManagerEnabled"), "{text}");
    assert!(text.contains("vpce-s3-gateway"), "{text}");
}

/// Keeps discovery in step with the repo's templates: every `AWS::EC2::VPCEndpoint` resource in
/// `cloudformation/` is found (none silently skipped).
#[test]
fn every_endpoint_in_the_repo_templates_is_discovered() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo("cloudformation")).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml" | "json")
        ) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let declared = text.matches("Type: AWS::EC2::VPCEndpoint").count()
            + text.matches("\"Type\": \"AWS::EC2::VPCEndpoint\"").count();
        if declared == 0 {
            // Templates without endpoints must still parse (they may be referenced by config).
            parse_template(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            continue;
        }
        let found = discover_template_file(&path, "eu-west-1").unwrap();
        assert_eq!(found.len(), declared, "{}", path.display());
        checked += declared;
    }
    assert!(checked >= 7, "the VPC template's endpoints were checked");
}

#[test]
fn config_discovery_yields_cloudformation_targets() {
    let yaml = format!(
        "families: [ipv4, ipv6]\ntargets:\n  - name: vpce-logs\n    host: logs.example.test\ndiscovery:\n  cloudformation: {{ template: \"{}\", region: eu-north-1 }}\n",
        repo("cloudformation/ipv6-vpc.yml").display()
    );
    let config = Config::from_yaml(&yaml, "test", None).unwrap();
    let targets =
        discovery::discover_cloudformation(&config.discovery, &config.discovery_defaults())
            .unwrap();
    // The configured `vpce-logs` wins over the discovered one of the same name.
    assert_eq!(targets.len(), 7);
    assert!(
        targets
            .iter()
            .all(|t| t.source == TargetSource::Cloudformation)
    );
    let ecr = targets.iter().find(|t| t.name == "vpce-ecr-api").unwrap();
    assert_eq!(
        ecr.host,
        Host::Name("api.ecr.eu-north-1.amazonaws.com".into())
    );
    assert_eq!(ecr.port, 443);
    let checks: Vec<&str> = ecr.checks.iter().map(|k| k.name()).collect();
    assert_eq!(checks, ["dns", "private_dns", "tcp", "tls"]);
    assert_eq!(ecr.families, Family::ALL.to_vec());
    assert_eq!(ecr.expect.ipv6, dualprobe::model::target::Expect::Nodata);
    let s3 = targets
        .iter()
        .find(|t| t.name == "vpce-s3-gateway")
        .unwrap();
    let checks: Vec<&str> = s3.checks.iter().map(|k| k.name()).collect();
    assert_eq!(checks, ["dns", "tcp", "tls"]);
}

#[tokio::test]
async fn api_reference_shapes_become_targets() {
    let server = QueryApiServer::start(vec![
        (
            "DescribeVpcEndpoints",
            std::fs::read_to_string(repo("tests/data/ec2-describe-vpc-endpoints.xml")).unwrap(),
        ),
        (
            "DescribeVpcs",
            std::fs::read_to_string(repo("tests/data/ec2-describe-vpcs.xml")).unwrap(),
        ),
    ])
    .await;
    let yaml = format!(
        "families: [ipv4, ipv6]\ndiscovery:\n  vpc_endpoints:\n    vpc_id: vpc-1a2b3c4d\n    region: us-east-1\n    dual_stack: false\n    endpoint_url: \"http://{}\"\n",
        server.addr
    );
    let config = Config::from_yaml(&yaml, "test", None).unwrap();
    // No lookups happen (the endpoint is an IP literal); the system resolver config is unused.
    let resolver = DnsResolver::new(
        &["127.0.0.1:9".parse().unwrap()],
        std::time::Duration::from_secs(1),
    )
    .unwrap();
    let targets = discovery::discover_vpc_endpoints(
        &config.discovery,
        &config.discovery_defaults(),
        &resolver,
        Some(support_aws::test_credentials()),
    )
    .await
    .unwrap();
    assert_eq!(
        *server.actions.lock().unwrap(),
        ["DescribeVpcEndpoints", "DescribeVpcs"]
    );
    let got: Vec<(&str, String, Vec<Family>)> = targets
        .iter()
        .map(|t| (t.name.as_str(), t.host.to_string(), t.families.clone()))
        .collect();
    let both = vec![Family::Ipv4, Family::Ipv6];
    assert_eq!(
        got,
        [
            (
                "vpce-elasticloadbalancing-regional",
                "vpce-0f89a33420c1931d7-bluzidnv.elasticloadbalancing.us-east-1.vpce.amazonaws.com".to_string(),
                both.clone()
            ),
            (
                "vpce-elasticloadbalancing-us-east-1b",
                "vpce-0f89a33420c1931d7-bluzidnv-us-east-1b.elasticloadbalancing.us-east-1.vpce.amazonaws.com".to_string(),
                both.clone()
            ),
            (
                "vpce-elasticloadbalancing-us-east-1a",
                "vpce-0f89a33420c1931d7-bluzidnv-us-east-1a.elasticloadbalancing.us-east-1.vpce.amazonaws.com".to_string(),
                both.clone()
            ),
            ("vpce-elasticloadbalancing", "elasticloadbalancing.us-east-1.amazonaws.com".to_string(), both.clone()),
            ("vpce-s3-gateway", "s3.us-east-1.amazonaws.com".to_string(), vec![Family::Ipv4]),
        ],
        "the pending ecr.dkr endpoint is left out"
    );
    // `service-defined` DNS records on a dual-stack endpoint: the private DNS name has A
    // records only (its missing AAAA is expected), the regional and zonal names both.
    let expect: Vec<(&str, &str, &str)> = targets
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.expect.ipv4.as_str(),
                t.expect.ipv6.as_str(),
            )
        })
        .collect();
    assert_eq!(
        expect,
        [
            (
                "vpce-elasticloadbalancing-regional",
                "reachable",
                "reachable"
            ),
            (
                "vpce-elasticloadbalancing-us-east-1b",
                "reachable",
                "reachable"
            ),
            (
                "vpce-elasticloadbalancing-us-east-1a",
                "reachable",
                "reachable"
            ),
            ("vpce-elasticloadbalancing", "reachable", "nodata"),
            ("vpce-s3-gateway", "reachable", "reachable"),
        ]
    );
    let elb = &targets[0];
    assert!(
        dualprobe::checks::private_dns::extra_cidrs(elb).contains(&"10.0.0.0/16".parse().unwrap())
    );
    assert!(
        dualprobe::checks::private_dns::extra_cidrs(elb)
            .contains(&"2600:1f18:47b:a200::/56".parse().unwrap()),
        "the VPC's IPv6 block counts as private for private_dns"
    );
    assert!(
        targets
            .iter()
            .all(|t| t.source == TargetSource::VpcEndpoints)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_vpc_endpoints_discovery_against_moto() {
    let pki = AwsPki::new();
    let moto = Moto::start(&pki, Family::Ipv4, 0, None);
    let mut zone = Zone::default();
    zone.set(EC2_DUALSTACK, &[Ipv4Addr::LOCALHOST], &[]);
    let dns = DnsServer::start(zone);
    let (config, env) = load(&dns, &aws_target("ec2", "ec2", moto.port(), &pki, "[ec2]"));
    let ec2 = ec2_client(
        &target(&config, "ec2", support_aws::test_credentials()),
        Family::Ipv4,
        &env,
    );

    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.0.1.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .expect("CreateSubnet");
    let subnet_id = subnet
        .subnet()
        .and_then(|s| s.subnet_id())
        .unwrap()
        .to_string();
    let rt = ec2
        .create_route_table()
        .vpc_id(&vpc_id)
        .send()
        .await
        .expect("CreateRouteTable");
    let rt_id = rt
        .route_table()
        .and_then(|r| r.route_table_id())
        .unwrap()
        .to_string();
    for service in ["logs", "ecr.api"] {
        ec2.create_vpc_endpoint()
            .vpc_id(&vpc_id)
            .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
            .service_name(format!("com.amazonaws.us-east-1.{service}"))
            .subnet_ids(&subnet_id)
            .private_dns_enabled(true)
            .send()
            .await
            .expect("CreateVpcEndpoint");
    }
    ec2.create_vpc_endpoint()
        .vpc_id(&vpc_id)
        .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Gateway)
        .service_name("com.amazonaws.us-east-1.s3")
        .route_table_ids(&rt_id)
        .send()
        .await
        .expect("CreateVpcEndpoint gateway");
    // Another VPC's endpoint must not show up.
    let other = ec2
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .unwrap();
    let other_id = other.vpc().and_then(|v| v.vpc_id()).unwrap().to_string();
    ec2.create_vpc_endpoint()
        .vpc_id(&other_id)
        .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
        .service_name("com.amazonaws.us-east-1.kms")
        .send()
        .await
        .unwrap();

    let yaml = format!(
        "interval: 60s\ntimeout: 20s\nfamilies: [ipv4, ipv6]\nresolver:\n  nameservers: [\"{}\"]\ndiscovery:\n  vpc_endpoints:\n    vpc_id: {vpc_id}\n    region: us-east-1\n    refresh: 1m\n    dual_stack: false\n    endpoint_url: \"https://{EC2_DUALSTACK}:{}\"\n    ca_file: \"{}\"\n",
        dns.addr(Family::Ipv4),
        moto.port(),
        pki.ca_file.display()
    );
    let config = Config::from_yaml(&yaml, "test", None).unwrap_or_else(|e| panic!("{e}"));
    let found = dualprobe::discovery::discover_vpc_endpoints(
        &config.discovery,
        &config.discovery_defaults(),
        &env.resolver,
        Some(support_aws::test_credentials()),
    )
    .await
    .expect("discovery");
    let mut got: Vec<(String, String, Vec<&str>)> = found
        .iter()
        .map(|t| {
            assert_eq!(t.source, TargetSource::VpcEndpoints);
            let checks = t.checks.iter().map(|k| k.name()).collect();
            (t.name.clone(), t.host.to_string(), checks)
        })
        .collect();
    got.sort();
    // moto names interface endpoints `vpce-….SERVICE.R.vpce.amazonaws.com` style entries
    // differently from AWS; whatever it returns, every entry of our VPC's endpoints is a target,
    // the gateway endpoint becomes the regional S3 name over IPv4, and kms (other VPC) is absent.
    assert!(got.iter().any(|(n, h, c)| n == "vpce-s3-gateway"
        && h == "s3.us-east-1.amazonaws.com"
        && c == &["dns", "tcp", "tls"]));
    assert!(
        got.iter()
            .any(|(n, _, c)| n.starts_with("vpce-logs")
                && c == &["dns", "private_dns", "tcp", "tls"])
    );
    assert!(got.iter().any(|(n, _, _)| n.starts_with("vpce-ecr-api")));
    assert!(!got.iter().any(|(n, _, _)| n.contains("kms")), "{got:?}");
    let gw = found.iter().find(|t| t.name == "vpce-s3-gateway").unwrap();
    assert_eq!(gw.families, vec![Family::Ipv4]);
    let logs = found
        .iter()
        .find(|t| t.name.starts_with("vpce-logs"))
        .unwrap();
    assert!(
        dualprobe::checks::private_dns::extra_cidrs(logs).contains(&"10.0.0.0/16".parse().unwrap()),
        "{:?}",
        dualprobe::checks::private_dns::extra_cidrs(logs)
    );
}

/// A failure of the second call (`DescribeVpcs`) is reported as that call, with the VPC.
#[tokio::test]
async fn a_failed_describe_vpcs_is_named_as_such() {
    let server = QueryApiServer::start(vec![(
        "DescribeVpcEndpoints",
        std::fs::read_to_string(repo("tests/data/ec2-describe-vpc-endpoints.xml")).unwrap(),
    )])
    .await;
    let yaml = format!(
        "discovery:\n  vpc_endpoints:\n    vpc_id: vpc-1a2b3c4d\n    region: us-east-1\n    dual_stack: false\n    endpoint_url: \"http://{}\"\n",
        server.addr
    );
    let config = Config::from_yaml(&yaml, "test", None).unwrap();
    let resolver = DnsResolver::new(
        &["127.0.0.1:9".parse().unwrap()],
        std::time::Duration::from_secs(1),
    )
    .unwrap();
    let e = discovery::discover_vpc_endpoints(
        &config.discovery,
        &config.discovery_defaults(),
        &resolver,
        Some(support_aws::test_credentials()),
    )
    .await
    .expect_err("DescribeVpcs is not answered");
    assert!(
        matches!(
            &e,
            discovery::DiscoveryError::Api {
                operation: "ec2:DescribeVpcs",
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with("ec2:DescribeVpcs for vpc-1a2b3c4d: "),
        "{text}"
    );
    assert!(
        text.contains("InvalidAction"),
        "the API's error is kept: {text}"
    );
    assert_eq!(
        *server.actions.lock().unwrap(),
        ["DescribeVpcEndpoints", "DescribeVpcs"]
    );
}

/// With IAM enforced, a discovery whose role lacks one of its two actions fails, and the error
/// names the call that was denied (not always `DescribeVpcEndpoints`); with both it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_errors_name_the_denied_call() {
    let pki = AwsPki::new();
    // 10 setup requests: 3 users x (CreateUser, PutUserPolicy, CreateAccessKey) + CreateVpc.
    let moto = Moto::start(&pki, Family::Ipv4, 0, Some(10));
    let keys = support_aws::boto3(
        r#"
import json, os, boto3
kw = dict(endpoint_url=os.environ["ENDPOINT"], verify=os.environ["CA"])
iam = boto3.client("iam", **kw)
for user, actions in [("endpoints-only", ["ec2:DescribeVpcEndpoints"]),
                      ("vpcs-only", ["ec2:DescribeVpcs"]),
                      ("both", ["ec2:DescribeVpcEndpoints", "ec2:DescribeVpcs"])]:
    iam.create_user(UserName=user)
    doc = {"Version": "2012-10-17",
           "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(doc))
    k = iam.create_access_key(UserName=user)["AccessKey"]
    print(user, k["AccessKeyId"], k["SecretAccessKey"])
vpc = boto3.client("ec2", region_name="us-east-1", **kw).create_vpc(CidrBlock="10.0.0.0/16")
print("vpc", vpc["Vpc"]["VpcId"], "-")
"#,
        &moto,
        &pki,
    );
    let field = |name: &str| -> (String, String) {
        let line = keys
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {keys}"));
        let mut it = line.split(' ').skip(1);
        (it.next().unwrap().into(), it.next().unwrap().into())
    };
    let (vpc_id, _) = field("vpc");
    let mut zone = Zone::default();
    zone.set(EC2_DUALSTACK, &[Ipv4Addr::LOCALHOST], &[]);
    let dns = DnsServer::start(zone);
    let yaml = format!(
        "families: [ipv4]\nresolver:\n  nameservers: [\"{}\"]\ndiscovery:\n  vpc_endpoints:\n    vpc_id: {vpc_id}\n    region: us-east-1\n    dual_stack: false\n    endpoint_url: \"https://{EC2_DUALSTACK}:{}\"\n    ca_file: \"{}\"\n",
        dns.addr(Family::Ipv4),
        moto.port(),
        pki.ca_file.display()
    );
    let config = Config::from_yaml(&yaml, "test", None).unwrap_or_else(|e| panic!("{e}"));
    let resolver =
        DnsResolver::new(&config.nameservers, std::time::Duration::from_secs(2)).unwrap();
    let discover = |user: &str| {
        let (key, secret) = field(user);
        let (config, resolver) = (&config, &resolver);
        async move {
            dualprobe::discovery::discover_vpc_endpoints(
                &config.discovery,
                &config.discovery_defaults(),
                resolver,
                Some(support_aws::credentials(&key, &secret)),
            )
            .await
        }
    };
    for (user, denied) in [
        ("endpoints-only", "ec2:DescribeVpcs"),
        ("vpcs-only", "ec2:DescribeVpcEndpoints"),
    ] {
        let e = discover(user).await.expect_err(user).to_string();
        assert!(
            e.starts_with(&format!("{denied} for {vpc_id}: aws_denied")),
            "{user}: {e}"
        );
        assert!(e.contains(&format!("perform: {denied}")), "{user}: {e}");
    }
    let found = discover("both").await.expect("both actions granted");
    assert!(found.is_empty(), "the VPC has no endpoints: {found:?}");
}
