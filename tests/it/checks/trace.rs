//! The `trace` check's section honoured on loopback (the target is hop 1, so what the options
//! change is whether the trace runs, which probe it sends, how far and how long): `run`
//! (after a failure by default, every cycle with `always`), `proto` (a UDP socket that never
//! answers against a TCP listener on the same port), `max_hops` and `wait` (every hop silent,
//! one wave of that length), and a trace that never reaches its target ending inside the
//! check's deadline with the hops it saw, instead of timing out with none. Hops through routers
//! and the silent router are the netns suite's (`pmtu_netns`).

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::Duration;

use dualprobe::model::family::Family;
use serde_json::Value;

use crate::support::{Lab, labels, outcome, show, with_free_port};

/// A port with a TCP listener and a UDP socket that reads nothing on 127.0.0.1: a TCP SYN is
/// answered (the target, hop 1), a UDP datagram is not (no port unreachable either).
fn tcp_answers_udp_silent() -> (u16, TcpListener, UdpSocket) {
    with_free_port(|port| {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port))?;
        Ok((port, tcp, udp))
    })
}

/// `hops` of the trace outcome as `(ttl, address or "*", reached)`.
fn hops(json: &Value) -> Vec<(u64, String, bool)> {
    json["hops"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h["ttl"].as_u64().unwrap_or(0),
                        h["address"].as_str().unwrap_or("*").to_string(),
                        h["reached"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_passing_chain_traces_only_with_run_always() {
    let lab = Lab::new();
    let (port, _tcp, _udp) = tcp_answers_udp_silent();
    let base = format!("name: t\nhost: 127.0.0.1\nport: {port}\nchecks: [tcp, trace]");
    let target = lab.target(&format!("{base}\ntrace: {{ proto: tcp }}"));
    let report = lab.run(&target, Family::Ipv4).await;
    assert_eq!(labels(&report), [("tcp", "ok"), ("trace", "ok")]);
    let json = serde_json::to_value(outcome(&report, "trace")).unwrap();
    assert!(json.get("hops").is_none(), "no trace was sent: {json}");

    let target = lab.target(&format!("{base}\ntrace: {{ proto: tcp, run: always }}"));
    let report = lab.run(&target, Family::Ipv4).await;
    assert_eq!(
        labels(&report),
        [("tcp", "ok"), ("trace", "ok")],
        "{}",
        show(&report)
    );
    let json = serde_json::to_value(outcome(&report, "trace")).unwrap();
    assert_eq!(hops(&json), [(1, "127.0.0.1".into(), true)], "{json}");
    assert_eq!(json["last_hop"]["address"], "127.0.0.1", "{json}");
}

#[tokio::test]
async fn proto_picks_the_probe_and_max_hops_and_wait_bound_the_trace() {
    let lab = Lab::new();
    let (port, _tcp, _udp) = tcp_answers_udp_silent();
    let target = |trace: &str| {
        lab.target(&format!(
            "name: t\nhost: 127.0.0.1\nport: {port}\nchecks: [trace]\ntrace: {trace}"
        ))
    };
    // TCP SYNs: the listener answers at hop 1.
    let report = lab.run(&target("{ proto: tcp }"), Family::Ipv4).await;
    assert_eq!(labels(&report), [("trace", "ok")], "{}", show(&report));
    let json = serde_json::to_value(outcome(&report, "trace")).unwrap();
    assert_eq!(hops(&json), [(1, "127.0.0.1".into(), true)], "{json}");

    // UDP datagrams to the silent socket: no hop answers; three hop limits, one wave of 300 ms.
    let report = lab
        .run(
            &target("{ proto: udp, max_hops: 3, wait: 300ms }"),
            Family::Ipv4,
        )
        .await;
    assert_eq!(
        labels(&report),
        [("trace", "unreachable")],
        "{}",
        show(&report)
    );
    let o = outcome(&report, "trace");
    let json = serde_json::to_value(o).unwrap();
    assert_eq!(
        hops(&json),
        [
            (1, "*".into(), false),
            (2, "*".into(), false),
            (3, "*".into(), false)
        ],
        "{json}"
    );
    assert!(
        o.duration >= Duration::from_millis(300) && o.duration < Duration::from_millis(600),
        "one 300 ms wave: {:?}",
        o.duration
    );
    assert_eq!(
        json["detail"],
        "trace to 127.0.0.1:".to_string()
            + &port.to_string()
            + ": no hop answered (target not reached; silent: 1, 2, 3)",
        "{json}"
    );
}

#[tokio::test]
async fn an_unreached_target_is_reported_with_its_hops_before_the_deadline() {
    let lab = Lab::new();
    let (port, _tcp, _udp) = tcp_answers_udp_silent();
    // No wait set: 30 hops in 4 waves share the 1 s deadline less a tenth.
    let target = lab.target(&format!(
        "name: t\nhost: 127.0.0.1\nport: {port}\nchecks: [trace]"
    ));
    let report = lab.run(&target, Family::Ipv4).await;
    assert_eq!(
        labels(&report),
        [("trace", "unreachable")],
        "{}",
        show(&report)
    );
    let o = outcome(&report, "trace");
    let json = serde_json::to_value(o).unwrap();
    let h = hops(&json);
    assert_eq!(h.len(), 30, "{json}");
    assert!(h.iter().all(|(_, a, r)| a == "*" && !r), "{json}");
    assert!(o.duration < Lab::TIMEOUT, "{:?}", o.duration);
}
