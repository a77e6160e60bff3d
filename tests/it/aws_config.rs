//! Config for the AWS checks and discovery: every `tests/data/invalid-aws-*.yaml` and
//! `invalid-discovery-*.yaml` fixture is rejected with its exact problem (file, line, field);
//! `aws:` targets take host, port and default checks from the SDK's resolved endpoint; the
//! `discovery:` section loads (the template is parsed at load).

use std::path::Path;
use std::time::Duration;

use dualprobe::aws::{AwsService, Ec2Operation};
use dualprobe::config::{Config, ConfigSource};
use dualprobe::model::target::Host;

/// (fixture, the line the error must contain).
const EXPECTED: &[(&str, &str)] = &[
    (
        "invalid-aws-host-with-aws.yaml",
        ":4: targets[0].host: must not be set with `aws:`",
    ),
    (
        "invalid-aws-service.yaml",
        ":4: targets[0].aws.service: unknown service `sqs`; known services: s3, ec2",
    ),
    (
        "invalid-aws-region.yaml",
        ":5: targets[0].aws.region: `US East 1` is not a region name like us-east-1",
    ),
    (
        "invalid-aws-endpoint-with-dual-stack.yaml",
        ":6: targets[0].aws.endpoint_url: cannot be used with `dual_stack: true`",
    ),
    (
        "invalid-aws-check-without-aws.yaml",
        ":2: targets[0].checks: s3: needs an `aws: { service: s3, region: ... }` block",
    ),
    (
        "invalid-aws-operation.yaml",
        ":6: targets[0].aws.operation: unknown operation `TerminateInstances`; known: DescribeRegions",
    ),
    (
        "invalid-aws-unknown-key.yaml",
        ":5: targets[0].aws.regoin: unknown field `regoin`; known fields: service, region, dual_stack, endpoint_url, operation",
    ),
    (
        "invalid-aws-private-dns-cidr.yaml",
        ":6: targets[0].private_dns.cidrs[1]: `2600:1f18::/560` is not a CIDR",
    ),
    (
        "invalid-discovery-vpc-id.yaml",
        ":3: discovery.vpc_endpoints.vpc_id: `my-vpc` is not a VPC ID like vpc-0abc123",
    ),
    (
        "invalid-discovery-refresh.yaml",
        ":5: discovery.vpc_endpoints.refresh: `soon` is not a duration",
    ),
    (
        "invalid-discovery-template.yaml",
        ":3: discovery.cloudformation.template: cannot read ",
    ),
    (
        "invalid-discovery-template-content.yaml",
        ":3: discovery.cloudformation.template: Endpoint: ServiceName cannot be evaluated before deployment",
    ),
    (
        "invalid-discovery-unknown-key.yaml",
        ":5: discovery.vpc_endpoint: unknown field `vpc_endpoint`; known fields: cloudformation, vpc_endpoints",
    ),
];

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn every_aws_and_discovery_fixture_has_its_expected_error() {
    let mut fixtures: Vec<String> = std::fs::read_dir(data(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            (n.starts_with("invalid-aws-") || n.starts_with("invalid-discovery-"))
                && n.ends_with(".yaml")
        })
        .collect();
    fixtures.sort();
    for f in &fixtures {
        assert!(
            EXPECTED.iter().any(|(n, _)| n == f),
            "fixture {f} has no expected error here"
        );
    }
    for (name, expected) in EXPECTED {
        let path = data(name);
        let err = ConfigSource::File(path.clone())
            .load()
            .expect_err(&format!("{name} must be rejected"));
        let text = err.to_string();
        let want = format!("{}{expected}", path.display());
        assert!(
            text.contains(&want),
            "{name}: error text\n{text}\ndoes not contain\n{want}"
        );
    }
}

#[test]
fn aws_targets_take_host_port_and_checks_from_the_endpoint() {
    let yaml = r#"
targets:
  - name: s3-dualstack
    aws: { service: s3, region: us-east-1, dual_stack: true }
  - name: ec2-dualstack
    aws: { service: ec2, region: eu-west-1, operation: DescribeAvailabilityZones }
    checks: [ec2, tls, dns]
  - name: ec2-vpce
    aws: { service: ec2, region: eu-west-1, dual_stack: false, endpoint_url: "https://ec2.internal.test:8443" }
  - name: s3-via-proxy-port
    aws: { service: s3, region: us-east-1 }
    port: 9443
"#;
    let c = Config::from_yaml(yaml, "test", None).unwrap();
    let s3 = c.target("s3-dualstack").unwrap();
    assert_eq!(
        s3.host,
        Host::Name("s3.dualstack.us-east-1.amazonaws.com".into())
    );
    assert_eq!(s3.port, 443);
    let names: Vec<&str> = s3.checks.iter().map(|k| k.name()).collect();
    assert_eq!(names, ["dns", "tcp", "tls", "s3"]);
    let aws = s3.aws.as_ref().unwrap();
    assert_eq!(aws.service, AwsService::S3);
    assert!(
        aws.credentials.is_none(),
        "config never carries credentials"
    );

    let ec2 = c.target("ec2-dualstack").unwrap();
    assert_eq!(ec2.host, Host::Name("ec2.eu-west-1.api.aws".into()));
    let names: Vec<&str> = ec2.checks.iter().map(|k| k.name()).collect();
    assert_eq!(
        names,
        ["dns", "tls", "ec2"],
        "chain order is the registry's"
    );
    assert_eq!(
        ec2.aws.as_ref().unwrap().ec2_operation,
        Ec2Operation::DescribeAvailabilityZones
    );

    let vpce = c.target("ec2-vpce").unwrap();
    assert_eq!(vpce.host, Host::Name("ec2.internal.test".into()));
    assert_eq!(vpce.port, 8443);

    let proxied = c.target("s3-via-proxy-port").unwrap();
    assert_eq!(
        proxied.port, 9443,
        "an explicit port is where every check connects"
    );
}

#[test]
fn discovery_section_loads() {
    let yaml = r#"
discovery:
  cloudformation: { template: ../../cloudformation/ipv6-vpc.yml, region: eu-central-1 }
  vpc_endpoints: { vpc_id: vpc-0abc123, region: eu-central-1, refresh: 10m }
"#;
    let c = Config::from_yaml(yaml, "test", Some(&data(""))).unwrap();
    let cfn = c.discovery.cloudformation.as_ref().unwrap();
    assert!(cfn.template.ends_with("cloudformation/ipv6-vpc.yml"));
    assert_eq!(cfn.region, "eu-central-1");
    let v = c.discovery.vpc_endpoints.as_ref().unwrap();
    assert_eq!(v.vpc_id, "vpc-0abc123");
    assert_eq!(v.refresh, Duration::from_secs(600));
    assert!(v.dual_stack, "EC2's dual-stack endpoint by default");
    assert!(v.endpoint_url.is_none());
}
