//! What a `trace` saw: the hops towards a target, one per hop limit. Carried in a check's
//! observations (JSON, the status page, the log line), never as a metric label.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

/// One hop limit's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// The hop limit (IPv4 TTL, IPv6 hop limit) the probe was sent with.
    pub ttl: u8,
    /// Who answered (a router's Time Exceeded, or the target); `None`: no answer (`*`).
    pub address: Option<IpAddr>,
    /// Time from sending to the answer.
    #[serde(
        serialize_with = "serialize_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub rtt: Option<Duration>,
    /// True when this is the target itself answering (port unreachable, a reply, a connect).
    pub reached: bool,
}

/// The hops of one trace, in hop-limit order, up to the target when it answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// Every hop limit tried, answered or not.
    pub hops: Vec<Hop>,
}

impl Trace {
    /// True when the target itself answered.
    pub fn reached(&self) -> bool {
        self.hops.iter().any(|h| h.reached)
    }

    /// The farthest hop that answered.
    pub fn last_responding(&self) -> Option<&Hop> {
        self.hops.iter().rev().find(|h| h.address.is_some())
    }

    /// `last hop 3 198.51.100.1 (target not reached; 4, 5 silent)`: the status page and log
    /// line form.
    pub fn summary(&self) -> String {
        let silent: Vec<String> = self
            .hops
            .iter()
            .filter(|h| h.address.is_none())
            .map(|h| h.ttl.to_string())
            .collect();
        let mut s = match self.last_responding() {
            Some(h) => format!(
                "last hop {} {}",
                h.ttl,
                h.address.map(|a| a.to_string()).unwrap_or_default()
            ),
            None => "no hop answered".to_string(),
        };
        s.push_str(if self.reached() {
            " (target reached"
        } else {
            " (target not reached"
        });
        if !silent.is_empty() {
            s.push_str("; silent: ");
            s.push_str(&silent.join(", "));
        }
        s.push(')');
        s
    }
}

fn serialize_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64() * 1000.0),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_the_last_hop_and_the_gap() {
        let hop = |ttl, a: Option<&str>, reached| Hop {
            ttl,
            address: a.map(|a| a.parse().unwrap()),
            rtt: None,
            reached,
        };
        let t = Trace {
            hops: vec![
                hop(1, Some("2001:db8:1::1"), false),
                hop(2, None, false),
                hop(3, Some("2001:db8:3::2"), true),
            ],
        };
        assert!(t.reached());
        assert_eq!(
            t.summary(),
            "last hop 3 2001:db8:3::2 (target reached; silent: 2)"
        );
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["hops"][1]["address"], serde_json::Value::Null);
    }
}
