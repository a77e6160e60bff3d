//! `addresses: all` holds for every connecting check, not only `tcp`: a name with two IPv4
//! loopback addresses (127.0.0.1 and 127.0.0.2) where only the first one serves. With `first`
//! the chain passes; with `all`, `tls` and `http` fail and say which address did.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use dualprobe::model::family::Family;

use crate::support::{DUAL_HOST, HttpServer, Lab, TlsServer, detail, labels, show};

/// Resolves to both addresses.
const PAIR_HOST: &str = "pair.test";
const SECOND: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn pair_lab() -> Lab {
    let lab = Lab::new();
    lab.dns
        .update(|z| z.set(PAIR_HOST, &[Ipv4Addr::LOCALHOST, SECOND], &[]));
    lab
}

/// Accepts TCP on 127.0.0.2:`port` and hangs up at once: TCP works there, TLS does not.
fn hang_up_on_second(port: u16) -> std::thread::JoinHandle<()> {
    let l = TcpListener::bind(SocketAddr::new(SECOND.into(), port)).expect("bind 127.0.0.2");
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    })
}

#[tokio::test]
async fn tls_with_addresses_all_handshakes_with_every_address() {
    let lab = pair_lab();
    let server = TlsServer::start(&lab.pki.server);
    let _second = hang_up_on_second(server.port());
    let yaml = |name: &str, sel: &str| {
        format!(
            "name: {name}\nhost: {PAIR_HOST}\nport: {}\nfamilies: [ipv4]\naddresses: {sel}\nchecks: [dns, tcp, tls]\ntls: {{ server_name: {DUAL_HOST}, ca_file: {} }}",
            server.port(),
            lab.pki.ca_file_yaml()
        )
    };
    let first = lab.target(&yaml("first", "first"));
    let report = lab.run(&first, Family::Ipv4).await;
    assert_eq!(
        labels(&report),
        [("dns", "ok"), ("tcp", "ok"), ("tls", "ok")],
        "{}",
        show(&report)
    );
    let all = lab.target(&yaml("all", "all"));
    let report = lab.run(&all, Family::Ipv4).await;
    let got = labels(&report);
    assert_eq!(
        got[..2],
        [("dns", "ok"), ("tcp", "ok")],
        "{}",
        show(&report)
    );
    assert_eq!(got[2].0, "tls");
    assert_ne!(got[2].1, "ok", "{}", show(&report));
    assert!(
        detail(&report, "tls").starts_with("127.0.0.2: "),
        "{}",
        show(&report)
    );
}

#[tokio::test]
async fn http_with_addresses_all_requests_every_address() {
    let lab = pair_lab();
    // Serves on 127.0.0.1 (and [::1]) only: 127.0.0.2 refuses.
    let server = HttpServer::plain();
    let yaml = |name: &str, sel: &str| {
        format!(
            "name: {name}\nhost: {PAIR_HOST}\nport: {}\nfamilies: [ipv4]\naddresses: {sel}\nchecks: [dns, http]\nhttp: {{ path: /ok }}",
            server.port()
        )
    };
    let first = lab.target(&yaml("first", "first"));
    let report = lab.run(&first, Family::Ipv4).await;
    assert_eq!(
        labels(&report),
        [("dns", "ok"), ("http", "ok")],
        "{}",
        show(&report)
    );
    let all = lab.target(&yaml("all", "all"));
    let report = lab.run(&all, Family::Ipv4).await;
    assert_eq!(
        labels(&report),
        [("dns", "ok"), ("http", "refused")],
        "{}",
        show(&report)
    );
    assert!(
        detail(&report, "http").starts_with("127.0.0.2: "),
        "{}",
        show(&report)
    );
    // The working address was asked too, first.
    assert_eq!(server.hits(Family::Ipv4, "/ok"), 2);
}
