//! Config rows for the sections: `aws:`, `http:`, `tls:`, `private_dns:`, `discovery:`,
//! `probe:`, `modules:` and `metrics:`.
//!
//! Problems no row reaches, and why:
//! - `targets[i].aws: no endpoint: ...` (the SDK's endpoint resolver refusing): `aws.region` is
//!   checked first (lowercase letters, digits and `-`) and `endpoint_url` with `dual_stack` is
//!   refused before the resolver runs, which leaves it nothing it refuses.
//! - `tls.ca_file: bad certificate in ...` (PEM that decodes to DER rustls' root store cannot
//!   take): needs a crafted certificate; the PEM-level errors are rows here.
//! - The `TooBig` file errors are rows in `files.rs` (they need files of the size).

use super::config::{KNOWN_CHECKS, load_error, target};
use super::{Row, check_table, row};

/// `targets:` with one target `a` whose `aws:` block is `aws` (flow mapping), then `extra`.
fn aws(aws: &str, extra: &str) -> String {
    format!("targets:\n  - name: a\n    aws: {{ {aws} }}\n{extra}")
}

fn rows() -> Vec<Row> {
    vec![
        row(
            "aws unknown service",
            aws("service: sqs, region: us-east-1", ""),
            "c.yml:3: targets[0].aws.service: unknown service `sqs`; known services: s3, ec2",
        ),
        row(
            "aws bad region",
            aws("service: s3, region: US_EAST_1", ""),
            "c.yml:3: targets[0].aws.region: `US_EAST_1` is not a region name like us-east-1",
        ),
        row(
            "aws region without a dash",
            aws("service: s3, region: useast1", ""),
            "c.yml:3: targets[0].aws.region: `useast1` is not a region name like us-east-1",
        ),
        row(
            "aws operation for s3",
            aws(
                "service: s3, region: us-east-1, operation: DescribeRegions",
                "",
            ),
            "c.yml:3: targets[0].aws.operation: only applies to `service: ec2`",
        ),
        row(
            "aws unknown ec2 operation",
            aws(
                "service: ec2, region: us-east-1, operation: TerminateInstances",
                "",
            ),
            "c.yml:3: targets[0].aws.operation: unknown operation `TerminateInstances`; known: DescribeRegions, DescribeAvailabilityZones, DescribeInstances, DescribeVpcs",
        ),
        row(
            "aws endpoint_url with dual_stack",
            aws(
                "service: s3, region: us-east-1, endpoint_url: \"http://127.0.0.1:5000\"",
                "",
            ),
            "c.yml:3: targets[0].aws.endpoint_url: cannot be used with `dual_stack: true` (the SDKs reject both); set `dual_stack: false`",
        ),
        row(
            "aws endpoint_url not a URL",
            aws(
                "service: s3, region: us-east-1, dual_stack: false, endpoint_url: \"127.0.0.1:5000\"",
                "",
            ),
            "c.yml:3: targets[0].aws.endpoint_url: `127.0.0.1:5000` is not a URL like https://host:port",
        ),
        row(
            "aws with a host",
            aws("service: s3, region: us-east-1", "    host: s3.test\n"),
            "c.yml:4: targets[0].host: must not be set with `aws:`: the host is the SDK's endpoint (override it with `aws.endpoint_url`)",
        ),
        row(
            "ec2 check on an s3 target",
            aws(
                "service: s3, region: us-east-1",
                "    checks: [dns, tcp, ec2]\n",
            ),
            "c.yml:2: targets[0].checks: ec2: needs `aws: { service: ec2 }`, not `s3`",
        ),
        row(
            "http scheme ftp",
            target("    http: { scheme: ftp }\n"),
            "c.yml:4: targets[0].http.scheme: `ftp` is not http or https",
        ),
        row(
            "http status 99",
            target("    http: { expect_status: [200, 99] }\n"),
            "c.yml:4: targets[0].http.expect_status[1]: `99` is not a status like 200 or \"2xx\"",
        ),
        row(
            "http status class 6xx",
            target("    http: { expect_status: [\"6xx\"] }\n"),
            "c.yml:4: targets[0].http.expect_status[0]: `6xx` is not a status like 200 or \"2xx\"",
        ),
        row(
            "private_dns cidr nope",
            target("    private_dns: { cidrs: [10.0.0.0/8, nope] }\n"),
            "c.yml:4: targets[0].private_dns.cidrs[1]: `nope` is not a CIDR like 10.0.0.0/16 or 2600:1f18:abcd:ef00::/56",
        ),
        row(
            "tls ca_file missing",
            target("    tls: { ca_file: /nonexistent/ca.pem }\n"),
            "c.yml:4: targets[0].tls.ca_file: cannot read CA file /nonexistent/ca.pem: No such file or directory (os error 2)",
        ),
        row(
            "tls ca_file a directory",
            target("    tls: { ca_file: / }\n"),
            "c.yml:4: targets[0].tls.ca_file: CA file / is a directory",
        ),
        row(
            "cloudformation template missing",
            "discovery:\n  cloudformation:\n    template: /nonexistent/t.yml\n    region: us-east-1\n",
            "c.yml:3: discovery.cloudformation.template: cannot read /nonexistent/t.yml: No such file or directory (os error 2)",
        ),
        row(
            "cloudformation bad region",
            "discovery:\n  cloudformation:\n    template: /nonexistent/t.yml\n    region: Mars\n",
            // In line order.
            "c.yml:3: discovery.cloudformation.template: cannot read /nonexistent/t.yml: No such file or directory (os error 2)\nc.yml:4: discovery.cloudformation.region: `Mars` is not a region name like us-east-1",
        ),
        row(
            "vpc_id malformed",
            "discovery:\n  vpc_endpoints: { vpc_id: vpc-xyz, region: us-east-1 }\n",
            "c.yml:2: discovery.vpc_endpoints.vpc_id: `vpc-xyz` is not a VPC ID like vpc-0abc123",
        ),
        row(
            "vpc_id without prefix",
            "discovery:\n  vpc_endpoints: { vpc_id: 0abc, region: us-east-1 }\n",
            "c.yml:2: discovery.vpc_endpoints.vpc_id: `0abc` is not a VPC ID like vpc-0abc123",
        ),
        row(
            "vpc_endpoints bad region and refresh",
            "discovery:\n  vpc_endpoints:\n    vpc_id: vpc-0abc\n    region: us east\n    refresh: 0s\n",
            "c.yml:4: discovery.vpc_endpoints.region: `us east` is not a region name like us-east-1\nc.yml:5: discovery.vpc_endpoints.refresh: must be greater than zero",
        ),
        row(
            "vpc_endpoints endpoint_url with dual_stack",
            "discovery:\n  vpc_endpoints:\n    vpc_id: vpc-0abc\n    region: us-east-1\n    dual_stack: true\n    endpoint_url: http://127.0.0.1:5000\n",
            "c.yml:6: discovery.vpc_endpoints.endpoint_url: cannot be used with `dual_stack: true` (the SDKs reject both); set `dual_stack: false`",
        ),
        row(
            "vpc_endpoints ca_file missing",
            "discovery:\n  vpc_endpoints:\n    vpc_id: vpc-0abc\n    region: us-east-1\n    ca_file: /nonexistent/ca.pem\n",
            "c.yml:5: discovery.vpc_endpoints.ca_file: cannot read CA file /nonexistent/ca.pem: No such file or directory (os error 2)",
        ),
        row(
            "probe allow star",
            "probe:\n  allow: [\"*.amazonaws.com\", \"*\"]\n",
            "c.yml:2: probe.allow[1]: `*` would allow every host; list the domains or CIDRs instead",
        ),
        row(
            "probe allow inner wildcard",
            "probe:\n  allow: [\"*.*.test\"]\n",
            "c.yml:2: probe.allow[0]: `*.*.test`: a wildcard may only lead, as in *.example.com",
        ),
        row(
            "probe allow bad CIDR",
            "probe:\n  allow: [\"10.0.0.0/33\"]\n",
            "c.yml:2: probe.allow[0]: `10.0.0.0/33` is not a host pattern (*.example.com) or a CIDR (192.0.2.0/24)",
        ),
        row(
            "probe token_file missing",
            "probe:\n  token_file: /nonexistent/token\n",
            "c.yml:2: probe.token_file: cannot read /nonexistent/token: No such file or directory (os error 2)",
        ),
        row(
            "probe max_concurrent zero",
            "probe:\n  max_concurrent: 0\n",
            "c.yml:2: probe.max_concurrent: must be at least 1",
        ),
        row(
            "probe rate and burst",
            "probe:\n  rate_per_second: 0\n  burst: 70000\n",
            "c.yml:2: probe.rate_per_second: must be at least 1\nc.yml:3: probe.burst: `70000` is more than the 65536 allowed",
        ),
        row(
            "probe max_timeout bad",
            "probe:\n  max_timeout: forever\n",
            "c.yml:2: probe.max_timeout: `forever` is not a duration (expected number at 0); write e.g. 15s, 500ms, 1m",
        ),
        row(
            "probe timeout_offset zero",
            "probe:\n  timeout_offset: 0ms\n",
            "c.yml:2: probe.timeout_offset: must be greater than zero",
        ),
        row(
            "module unknown check",
            "modules:\n  m:\n    checks: [tcp, ping]\n",
            format!(
                "c.yml:3: modules.m.checks[1]: unknown check `ping`; known checks: {KNOWN_CHECKS}"
            ),
        ),
        row(
            "module http scheme",
            "modules:\n  m:\n    http: { scheme: gopher }\n",
            "c.yml:3: modules.m.http.scheme: `gopher` is not http or https",
        ),
        row(
            "module port zero",
            "modules:\n  m:\n    port: 0\n",
            "c.yml:3: modules.m.port: must be 1-65535",
        ),
        row(
            "module s3 check",
            "modules:\n  m:\n    checks: [dns, tcp, s3]\n",
            "c.yml:2: modules.m.checks: s3: needs an `aws: { service: s3, region: ... }` block",
        ),
        // FINDING: a module has no interval (and no `interval:` key), but its timeout is held
        // to the 24h placeholder schedule `RawModule::into_target` gives it, and the message
        // names that interval. Not fixed here: what a module's timeout may be is a design call
        // (`/probe` caps it by `probe.max_timeout` anyway).
        row(
            "module timeout of a day",
            "modules:\n  m:\n    timeout: 2d\n",
            "c.yml:3: modules.m.timeout: must be less than interval (2days >= 1day)",
        ),
        row(
            "metrics no duration bucket",
            "metrics:\n  duration_buckets: []\n",
            "c.yml:2: metrics.duration_buckets: lists no bound; give at least one (seconds), or leave it out for the default buckets",
        ),
        row(
            "metrics duration buckets not increasing",
            "metrics:\n  duration_buckets: [0.1, 0.5, 0.5, 0.25]\n",
            "c.yml:2: metrics.duration_buckets[2]: `0.5` is not above the bound before it (`0.5`); bounds must increase\n\
             c.yml:2: metrics.duration_buckets[3]: `0.25` is not above the bound before it (`0.5`); bounds must increase",
        ),
        row(
            "metrics duration bucket zero",
            "metrics:\n  duration_buckets:\n    - 0\n    - 1\n",
            "c.yml:3: metrics.duration_buckets[0]: `0` is not a positive, finite number of seconds",
        ),
        row(
            "metrics duration bucket negative",
            "metrics:\n  duration_buckets: [-1, 1]\n",
            "c.yml:2: metrics.duration_buckets[0]: `-1` is not a positive, finite number of seconds",
        ),
        row(
            "metrics duration bucket infinite",
            "metrics:\n  duration_buckets: [1, .inf]\n",
            "c.yml:2: metrics.duration_buckets[1]: `inf` is not a positive, finite number of seconds",
        ),
        row(
            "metrics duration bucket not a number",
            "metrics:\n  duration_buckets: [1, .nan]\n",
            "c.yml:2: metrics.duration_buckets[1]: `NaN` is not a positive, finite number of seconds",
        ),
        row(
            "metrics too many duration buckets",
            format!(
                "metrics:\n  duration_buckets: [{}]\n",
                (1..=33)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "c.yml:2: metrics.duration_buckets: lists 33 bounds, more than the 32 allowed",
        ),
    ]
}

#[test]
fn config_section_rows_have_their_exact_errors() {
    check_table("config sections", &rows(), |r| load_error(&r.input));
}
