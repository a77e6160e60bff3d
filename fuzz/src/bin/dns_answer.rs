//! DNS answers: a response off the wire (hickory's `Message::from_vec`, as the resolver decodes
//! it) into the addresses a check probes (`resolver::addresses_of`), then the metadata guard.
//! Invariants: each family gets only its own record type's addresses, and the guard refuses every
//! address `forbidden` names, in any embedded form.

use std::net::IpAddr;

use dualprobe::model::family::Family;
use dualprobe::net::guard::{AddressPolicy, MetadataGuard, forbidden};
use dualprobe::net::resolver::addresses_of;
use hickory_proto::op::Message;
use hickory_proto::rr::RData;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(msg) = Message::from_vec(data) else {
            return;
        };
        let answers = &msg.answers;
        for family in Family::ALL {
            let addrs = addresses_of(answers, family);
            let expected = answers
                .iter()
                .filter(|r| {
                    matches!(
                        (&r.data, family),
                        (RData::A(_), Family::Ipv4) | (RData::AAAA(_), Family::Ipv6)
                    )
                })
                .count();
            assert_eq!(addrs.len(), expected);
            for a in addrs {
                // The record type, not `Family::of` (which counts `::ffff:a.b.c.d` as IPv4).
                let v6 = matches!(a, IpAddr::V6(_));
                assert_eq!(v6, family == Family::Ipv6, "{a} answered for {family}");
                let refused = MetadataGuard::default().check(a).is_err();
                assert_eq!(
                    refused,
                    forbidden(a).is_some(),
                    "guard and forbidden disagree on {a}"
                );
                if let IpAddr::V6(v6) = a
                    && let Some(v4) = v6.to_ipv4_mapped()
                    && forbidden(IpAddr::V4(v4)).is_some()
                {
                    assert!(refused, "{a} maps {v4}, which is forbidden");
                }
            }
        }
        // Re-encoding what was decoded must not panic either (the test DNS server does it).
        let _ = msg.to_vec();
    });
}
