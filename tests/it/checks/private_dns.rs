//! `private_dns` through a real DNS server on loopback: PrivateLink names answered with private
//! addresses pass, a public answer fails with `public_address`, and the VPC's own (global)
//! IPv6 block counts as private when listed in `private_dns.cidrs`. No packet goes to the
//! answered addresses: the chains stop at name resolution.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::support::{Lab, labels};
use dualprobe::model::family::Family;

#[tokio::test]
async fn private_answers_pass_and_public_ones_fail() {
    let lab = Lab::new();
    lab.dns.update(|z| {
        z.set(
            "logs.us-east-1.amazonaws.com",
            &[Ipv4Addr::new(10, 0, 130, 5)],
            &["fd00:ec2::5".parse::<Ipv6Addr>().unwrap()],
        );
        z.set(
            "ssm.us-east-1.amazonaws.com",
            &[Ipv4Addr::new(52, 94, 0, 1)],
            &["2600:1f18:47b:a202::9".parse::<Ipv6Addr>().unwrap()],
        );
        z.set(
            "sts.us-east-1.amazonaws.com",
            &[Ipv4Addr::new(100, 64, 3, 3)],
            &["2600:1f18:47b:a202::7".parse::<Ipv6Addr>().unwrap()],
        );
    });
    let logs =
        lab.target("name: logs\nhost: logs.us-east-1.amazonaws.com\nchecks: [private_dns, dns]");
    let ssm =
        lab.target("name: ssm\nhost: ssm.us-east-1.amazonaws.com\nchecks: [dns, private_dns]");
    let sts = lab.target(
        "name: sts\nhost: sts.us-east-1.amazonaws.com\nchecks: [dns, private_dns]\nprivate_dns: { cidrs: [\"2600:1f18:47b:a200::/56\"] }",
    );
    for family in Family::ALL {
        let r = lab.run(&logs, family).await;
        assert_eq!(
            labels(&r),
            [("dns", "ok"), ("private_dns", "ok")],
            "{family}: {r:#?}"
        );
        let r = lab.run(&ssm, family).await;
        assert_eq!(
            labels(&r),
            [("dns", "ok"), ("private_dns", "public_address")],
            "{family}: {r:#?}"
        );
        assert!(
            crate::support::detail(&r, "private_dns")
                .contains("private DNS of the endpoint is off")
        );
        let r = lab.run(&sts, family).await;
        assert_eq!(
            labels(&r),
            [("dns", "ok"), ("private_dns", "ok")],
            "{family}: {r:#?}"
        );
    }
}
