//! The `s3` and `ec2` checks against a real API peer: moto serving HTTPS with a test CA on
//! 127.0.0.1 and/or [::1], reached through the real dual-stack endpoint names
//! (`s3.dualstack.us-east-1.amazonaws.com`, `ec2.us-east-1.api.aws`) that a test DNS server
//! answers with the loopback addresses. The SDK resolves those names itself (dual-stack on, no
//! endpoint override): the product path. Only the TCP port differs from production (the target's
//! `port:`, since tests cannot own 443). Credentials are static and passed to the SDK directly.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use dualprobe::aws::clients::ClientParts;
use dualprobe::checks::CheckEnv;
use dualprobe::checks::run_cycle;
use dualprobe::model::family::Family;
use dualprobe::model::target::{Target, TargetSource};

use crate::support::{DnsServer, Zone, labels, outcome};
use crate::support_aws::{
    self, AwsPki, EC2_DUALSTACK, Moto, S3_DUALSTACK, aws_target, ec2_client, load, target,
};

/// A DNS server answering the dual-stack names with both loopback addresses.
fn aws_dns() -> DnsServer {
    let mut zone = Zone::default();
    for name in [S3_DUALSTACK, EC2_DUALSTACK] {
        zone.set(name, &[Ipv4Addr::LOCALHOST], &[Ipv6Addr::LOCALHOST]);
    }
    DnsServer::start(zone)
}

/// An S3 client of `target` pinned to `family`, path-style (bucket names in the path, so the
/// host stays the dual-stack endpoint name).
fn s3_client(t: &Target, family: Family, env: &CheckEnv) -> aws_sdk_s3::Client {
    let aws = t.aws.as_ref().unwrap();
    let c = ClientParts::for_target(
        t,
        aws,
        family,
        &env.resolver,
        None,
        aws.credentials.clone().unwrap(),
    )
    .unwrap()
    .s3()
    .client;
    aws_sdk_s3::Client::from_conf(c.config().to_builder().force_path_style(true).build())
}

async fn bucket_names(c: &aws_sdk_s3::Client) -> Vec<String> {
    let out = c.list_buckets().send().await.expect("ListBuckets");
    out.buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_family_reaches_its_own_listener() {
    let pki = AwsPki::new();
    let port = support_aws::free_port_both();
    let moto4 = Moto::start(&pki, Family::Ipv4, port, None);
    let moto6 = Moto::start(&pki, Family::Ipv6, port, None);
    let dns = aws_dns();
    let targets = aws_target("s3", "s3", port, &pki, "[dns, tcp, tls, s3]")
        + &aws_target("ec2", "ec2", port, &pki, "[dns, tcp, tls, ec2]");
    let (config, env) = load(&dns, &targets);
    let s3 = target(&config, "s3", support_aws::test_credentials());
    let ec2 = target(&config, "ec2", support_aws::test_credentials());

    // Two moto processes, two separate states: a bucket made over one family is only seen
    // over that family, which proves each family's calls reach their own listener.
    for family in Family::ALL {
        let c = s3_client(&s3, family, &env);
        c.create_bucket()
            .bucket(format!("made-over-{family}"))
            .send()
            .await
            .expect("CreateBucket");
    }
    for family in Family::ALL {
        let c = s3_client(&s3, family, &env);
        assert_eq!(
            bucket_names(&c).await,
            vec![format!("made-over-{family}")],
            "{family}"
        );
        // moto's EC2 backend is slow on its first call: warm it up outside the probe.
        ec2_client(&ec2, family, &env)
            .describe_regions()
            .send()
            .await
            .expect("warm-up");
    }

    for (family, moto) in [(Family::Ipv4, &moto4), (Family::Ipv6, &moto6)] {
        let report = run_cycle(&s3, family, &env, true).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("tls", "ok"), ("s3", "ok")],
            "{family}: {report:#?}"
        );
        assert_eq!(
            outcome(&report, "s3").observations.remote,
            Some(moto.addr),
            "{family}"
        );

        let report = run_cycle(&ec2, family, &env, true).await;
        assert_eq!(
            labels(&report),
            [("dns", "ok"), ("tcp", "ok"), ("tls", "ok"), ("ec2", "ok")],
            "{family}: {report:#?}"
        );
        assert_eq!(
            outcome(&report, "ec2").observations.remote,
            Some(moto.addr),
            "{family}"
        );
    }
    assert!(s3.source == TargetSource::Config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_family_without_a_listener_is_refused() {
    let pki = AwsPki::new();
    let port = support_aws::free_port_both();
    // moto on IPv4 only: the IPv6 call finds nothing listening on [::1].
    let moto4 = Moto::start(&pki, Family::Ipv4, port, None);
    let dns = aws_dns();
    let targets = aws_target("s3-chain", "s3", port, &pki, "[dns, tcp, tls, s3]")
        + &aws_target("s3-alone", "s3", port, &pki, "[s3]");
    let (config, env) = load(&dns, &targets);
    let chain = target(&config, "s3-chain", support_aws::test_credentials());
    let alone = target(&config, "s3-alone", support_aws::test_credentials());

    let v4 = run_cycle(&chain, Family::Ipv4, &env, true).await;
    assert_eq!(
        labels(&v4),
        [("dns", "ok"), ("tcp", "ok"), ("tls", "ok"), ("s3", "ok")],
        "{v4:#?}"
    );
    assert_eq!(outcome(&v4, "s3").observations.remote, Some(moto4.addr));
    let v6 = run_cycle(&chain, Family::Ipv6, &env, true).await;
    assert_eq!(
        labels(&v6),
        [
            ("dns", "ok"),
            ("tcp", "refused"),
            ("tls", "skipped"),
            ("s3", "skipped")
        ],
        "{v6:#?}"
    );

    // Without a tcp check first, the SDK call itself reports the refusal.
    let v6 = run_cycle(&alone, Family::Ipv6, &env, true).await;
    assert_eq!(labels(&v6), [("s3", "refused")], "{v6:#?}");
    let v4 = run_cycle(&alone, Family::Ipv4, &env, true).await;
    assert_eq!(labels(&v4), [("s3", "ok")], "{v4:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_rejections_map_to_aws_auth_and_aws_denied() {
    let pki = AwsPki::new();
    // moto checks keys, signatures and IAM policies after the first 2 requests (the IAM setup).
    let moto = Moto::start(&pki, Family::Ipv4, 0, Some(2));
    let keys = support_aws::boto3(
        r#"
import os, boto3
iam = boto3.client("iam", endpoint_url=os.environ["ENDPOINT"], verify=os.environ["CA"])
iam.create_user(UserName="prober")
k = iam.create_access_key(UserName="prober")["AccessKey"]
print(k["AccessKeyId"], k["SecretAccessKey"])
"#,
        &moto,
        &pki,
    );
    let (key, secret) = keys.trim().split_once(' ').expect("key and secret");
    let mut zone = Zone::default();
    for name in [S3_DUALSTACK, EC2_DUALSTACK] {
        zone.set(name, &[Ipv4Addr::LOCALHOST], &[]);
    }
    let dns = DnsServer::start(zone);
    let targets = aws_target("s3", "s3", moto.port(), &pki, "[s3]")
        + &aws_target("ec2", "ec2", moto.port(), &pki, "[ec2]");
    let (config, env) = load(&dns, &targets);

    let cases = [
        (
            "unknown key",
            support_aws::credentials("AKIAUNKNOWNUNKNOWN00", "x"),
            "aws_auth",
            "aws_auth",
        ),
        (
            "wrong secret",
            support_aws::credentials(key, "not-the-secret"),
            "aws_auth",
            "aws_auth",
        ),
        // A known user with no policy: AWS answered, so the path works; counted as aws_denied.
        (
            "no policy",
            support_aws::credentials(key, secret),
            "aws_denied",
            "aws_denied",
        ),
    ];
    for (what, creds, s3_label, ec2_label) in cases {
        let name = what.replace(' ', "-");
        let mut s3 = (*target(&config, "s3", creds.clone())).clone();
        s3.name = format!("s3-{name}");
        let report = run_cycle(&Arc::new(s3), Family::Ipv4, &env, true).await;
        let o = outcome(&report, "s3");
        assert_eq!(o.result_label(), s3_label, "s3 {what}: {report:#?}");
        assert_eq!(
            o.passed(),
            s3_label == "aws_denied",
            "s3 {what}: denied is a network pass"
        );

        let mut ec2 = (*target(&config, "ec2", creds)).clone();
        ec2.name = format!("ec2-{name}");
        let report = run_cycle(&Arc::new(ec2), Family::Ipv4, &env, true).await;
        let o = outcome(&report, "ec2");
        assert_eq!(o.result_label(), ec2_label, "ec2 {what}: {report:#?}");
        assert_eq!(o.passed(), ec2_label == "aws_denied", "ec2 {what}");
    }
}
