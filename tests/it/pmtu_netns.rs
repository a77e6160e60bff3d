//! `pmtu` and `trace` against real kernel behaviour: a task → router → router → server chain
//! of network namespaces, per family, with a 1280-byte link between the routers.
//!
//! Every scenario builds the chain afresh (so no path MTU is cached from an earlier one), runs
//! a TLS server with a large certificate (several full-size segments) on port 443 and a plain
//! HTTP server on port 80 (a 200 kB body, `/small` a few bytes) in the server namespace, and
//! runs the real dualprobe binary in the task namespace:
//!
//! - no filtering: `pmtu` reports a path MTU of 1280 on both families, over TLS and over plain
//!   HTTP (`pmtu.large_path` from a config file); a large path that answers a few bytes is
//!   `other`, naming `pmtu.large_path`;
//! - the routers drop ICMPv6 Packet Too Big on output: `pmtu_blackhole` on IPv6 only, `tcp`
//!   still passing there, IPv4 still 1280 — for the TLS handshake and for the plain-HTTP GET;
//!   then, with every data segment from the HTTP server dropped on the way back, both GETs
//!   stall: `timeout`, "the path is down", on both families;
//! - the routers drop IPv4 Fragmentation Needed: `pmtu_blackhole` on IPv4 only;
//! - the second router sends no Time Exceeded: `dualprobe trace` shows hop 1, the gap at hop 2
//!   and the server at hop 3, per family; as a check after a failing `tcp`, the JSON holds the
//!   hops and the last responding hop.
//!
//! Addresses are documentation prefixes only (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
//! 2001:db8::/32). Needs root, `ip` and `nft`; without them prints `SKIPPED` and passes (fails
//! under `CI`).

use std::process::{Child, Command, Stdio};

use crate::support::is_root;

const SERVER4: &str = "203.0.113.2";
const SERVER6: &str = "2001:db8:3::2";

fn skip(why: &str) {
    println!("SKIPPED: pmtu_netns: {why}");
    assert!(
        std::env::var_os("CI").is_none(),
        "SKIPPED is a failure under CI: {why}"
    );
}

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The four namespaces of one scenario; deleted (with the server process) when dropped.
struct Chain {
    prefix: String,
    server: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Chain {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Builds task — r1 — (1280-byte link) — r2 — server and starts the TLS server.
    fn new(scenario: &str) -> Result<Chain, String> {
        let prefix = format!("dp-pm{}-{scenario}", std::process::id());
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut chain = Chain {
            prefix,
            server: None,
            _dir: dir,
        };
        for role in ["t", "r1", "r2", "s"] {
            run("ip", &["netns", "add", &chain.ns(role)])?;
            run("ip", &["-n", &chain.ns(role), "link", "set", "lo", "up"])?;
            // No duplicate address detection: a tentative link-local address holds neighbour
            // discovery, so forwarding, back for about two seconds after the links come up.
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &chain.ns(role),
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            )?;
        }
        // (left ns, left dev, right ns, right dev, v4 /24 prefix, v6 /64 prefix, mtu)
        let links = [
            ("t", "r1", "192.0.2", "2001:db8:1", "1500"),
            ("r1", "r2", "198.51.100", "2001:db8:2", "1280"),
            ("r2", "s", "203.0.113", "2001:db8:3", "1500"),
        ];
        for (i, (l, r, v4, v6, mtu)) in links.iter().enumerate() {
            let (ld, rd) = (format!("l{i}"), format!("r{i}"));
            let (ln, rn) = (chain.ns(l), chain.ns(r));
            run(
                "ip",
                &[
                    "link", "add", &ld, "netns", &ln, "type", "veth", "peer", "name", &rd, "netns",
                    &rn,
                ],
            )?;
            for (ns, dev, host) in [(&ln, &ld, 1), (&rn, &rd, 2)] {
                // The router side is .1 / ::1, except on the first link, where the task is .2.
                let host = if i == 0 { 3 - host } else { host };
                run("ip", &["-n", ns, "link", "set", dev, "mtu", mtu, "up"])?;
                run(
                    "ip",
                    &[
                        "-n",
                        ns,
                        "addr",
                        "add",
                        &format!("{v4}.{host}/24"),
                        "dev",
                        dev,
                    ],
                )?;
                run(
                    "ip",
                    &[
                        "-n",
                        ns,
                        "-6",
                        "addr",
                        "add",
                        &format!("{v6}::{host}/64"),
                        "dev",
                        dev,
                        "nodad",
                    ],
                )?;
            }
        }
        for r in ["r1", "r2"] {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &chain.ns(r),
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                    "net.ipv6.conf.all.forwarding=1",
                ],
            )?;
        }
        let routes: [(&str, &[&str]); 8] = [
            ("t", &["route", "add", "default", "via", "192.0.2.1"]),
            (
                "t",
                &["-6", "route", "add", "default", "via", "2001:db8:1::1"],
            ),
            ("s", &["route", "add", "default", "via", "203.0.113.1"]),
            (
                "s",
                &["-6", "route", "add", "default", "via", "2001:db8:3::1"],
            ),
            (
                "r1",
                &["route", "add", "203.0.113.0/24", "via", "198.51.100.2"],
            ),
            (
                "r1",
                &[
                    "-6",
                    "route",
                    "add",
                    "2001:db8:3::/64",
                    "via",
                    "2001:db8:2::2",
                ],
            ),
            (
                "r2",
                &["route", "add", "192.0.2.0/24", "via", "198.51.100.1"],
            ),
            (
                "r2",
                &[
                    "-6",
                    "route",
                    "add",
                    "2001:db8:1::/64",
                    "via",
                    "2001:db8:2::1",
                ],
            ),
        ];
        for (ns, args) in routes {
            let n = chain.ns(ns);
            let mut a = vec!["-n", n.as_str()];
            a.extend_from_slice(args);
            run("ip", &a)?;
        }
        chain.start_server()?;
        Ok(chain)
    }

    /// A TLS server on [::]:443 (both families) whose certificate names 200 hosts: a
    /// certificate message of several full-size segments.
    fn start_server(&mut self) -> Result<(), String> {
        let names: Vec<String> = (0..200).map(|i| format!("host-{i:03}.pmtu.test")).collect();
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = rcgen::CertificateParams::new(names)
            .and_then(|p| p.self_signed(&key))
            .map_err(|e| e.to_string())?;
        let dir = self._dir.path();
        std::fs::write(dir.join("cert.pem"), cert.pem()).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).map_err(|e| e.to_string())?;
        let script = r#"
import socket, ssl, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class Get(BaseHTTPRequestHandler):
    timeout = 10
    def do_GET(self):
        body = b"small\n" if self.path == "/small" else b"x" * 200000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except Exception:
            pass
    def log_message(self, *args):
        pass
class Http(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
threading.Thread(target=Http(("::", 80), Get).serve_forever, daemon=True).start()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 443))
s.listen(64)
print("ready", flush=True)
def serve(c):
    try:
        c.settimeout(10)
        t = ctx.wrap_socket(c, server_side=True)
        t.recv(1)
    except Exception:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns("s"), "python3", "-c", script])
            .arg(dir.join("cert.pem"))
            .arg(dir.join("key.pem"))
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("TLS server: {e}"))?;
        let mut line = String::new();
        let out = child.stdout.take().expect("piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)
            .map_err(|e| e.to_string())?;
        self.server = Some(child);
        if line.trim() != "ready" {
            return Err(format!("TLS server did not start: {line:?}"));
        }
        Ok(())
    }

    /// nft `rules` (one a line) on both routers' output.
    fn filter_routers(&self, rules: &str) -> Result<(), String> {
        self.filter_router("r1", rules)?;
        self.filter_router("r2", rules)
    }

    /// `rules` (one a line) on one router's output.
    fn filter_router(&self, router: &str, rules: &str) -> Result<(), String> {
        self.filter_hook(router, "output", rules)
    }

    /// `rules` (one a line) on one router's `hook` (`output`, `forward`).
    fn filter_hook(&self, router: &str, hook: &str, rules: &str) -> Result<(), String> {
        let table = format!(
            "table inet f{hook} {{\n chain c {{\n  type filter hook {hook} priority 0;\n  {rules}\n }}\n}}\n"
        );
        let file = self._dir.path().join(format!("{router}-{hook}.nft"));
        std::fs::write(&file, table).map_err(|e| e.to_string())?;
        let file = file.to_string_lossy().into_owned();
        run(
            "ip",
            &["netns", "exec", &self.ns(router), "nft", "-f", &file],
        )
        .map(|_| ())
    }

    /// The dualprobe binary in the task namespace.
    fn dualprobe(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("t"),
                env!("CARGO_BIN_EXE_dualprobe"),
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec dualprobe");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// `probe --check tcp,pmtu --json` of one family: (tcp result, pmtu result, path_mtu).
    fn pmtu(&self, v6: bool) -> (String, String, Option<i64>, String) {
        self.pmtu_at(v6, 443)
    }

    /// [`Chain::pmtu`] at `port` (80: the plain-HTTP GET of `/`, the ad-hoc default path).
    fn pmtu_at(&self, v6: bool, port: u16) -> (String, String, Option<i64>, String) {
        let target = if v6 {
            format!("[{SERVER6}]:{port}")
        } else {
            format!("{SERVER4}:{port}")
        };
        let (_, out) = self.dualprobe(&[
            "probe",
            &target,
            "--check",
            "tcp,pmtu",
            "--timeout",
            "6s",
            "--json",
        ]);
        pmtu_result(out)
    }

    /// `probe --config FILE NAME --json` of a target of [`HTTP_CONFIG`]: (tcp result, pmtu
    /// result, path_mtu, output).
    fn pmtu_configured(&self, name: &str) -> (String, String, Option<i64>, String) {
        let cfg = self._dir.path().join("http.yml");
        std::fs::write(&cfg, HTTP_CONFIG).expect("write config");
        let cfg = cfg.to_string_lossy().into_owned();
        let (_, out) = self.dualprobe(&["probe", "--config", &cfg, name, "--json"]);
        pmtu_result(out)
    }
}

/// Plain-HTTP targets on the server's port 80 (the port a `large_path` implies), each family
/// on its own, with the `pmtu` section naming the large path.
const HTTP_CONFIG: &str = "interval: 30s
timeout: 6s
targets:
  - { name: web6, host: \"2001:db8:3::2\", checks: [tcp, pmtu], pmtu: { large_path: /big } }
  - { name: web4, host: 203.0.113.2, checks: [tcp, pmtu], pmtu: { large_path: /big } }
  - { name: small6, host: \"2001:db8:3::2\", checks: [tcp, pmtu], pmtu: { large_path: /small } }
";

/// (tcp result, pmtu result, path_mtu, output) of a one-family `probe --json` answer.
fn pmtu_result(out: String) -> (String, String, Option<i64>, String) {
    let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let checks = &json[0]["checks"];
    let reason = |i: usize| checks[i]["reason"].as_str().unwrap_or("?").to_string();
    let mtu = checks[1]["path_mtu"].as_i64();
    (reason(0), reason(1), mtu, out)
}

impl Drop for Chain {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for role in ["t", "r1", "r2", "s"] {
            let _ = run("ip", &["netns", "delete", &self.ns(role)]);
        }
    }
}

fn prerequisites() -> Result<(), String> {
    if !is_root() {
        return Err("not running as root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    for tool in [("ip", "-V"), ("nft", "--version"), ("python3", "--version")] {
        if Command::new(tool.0).arg(tool.1).output().is_err() {
            return Err(format!("`{}` is not installed", tool.0));
        }
    }
    Ok(())
}

#[test]
fn path_mtu_1280_is_reported_on_both_families() {
    if let Err(e) = prerequisites() {
        return skip(&e);
    }
    let chain = Chain::new("ok").expect("chain");
    for v6 in [false, true] {
        let (tcp, pmtu, mtu, out) = chain.pmtu(v6);
        assert_eq!(
            (tcp.as_str(), pmtu.as_str()),
            ("ok", "ok"),
            "v6={v6}: {out}"
        );
        assert_eq!(mtu, Some(1280), "v6={v6}: {out}");
    }
}

#[test]
fn filtered_packet_too_big_is_a_blackhole_on_ipv6_only() {
    if let Err(e) = prerequisites() {
        return skip(&e);
    }
    let chain = Chain::new("b6").expect("chain");
    chain
        .filter_routers("icmpv6 type packet-too-big drop")
        .expect("nft");
    let (tcp, pmtu, mtu, out) = chain.pmtu(true);
    assert_eq!(tcp, "ok", "the small check still passes: {out}");
    assert_eq!(pmtu, "pmtu_blackhole", "{out}");
    assert_eq!(mtu, None, "{out}");
    let (tcp, pmtu, mtu, out) = chain.pmtu(false);
    assert_eq!(
        (tcp.as_str(), pmtu.as_str(), mtu),
        ("ok", "ok", Some(1280)),
        "IPv4: {out}"
    );
}

#[test]
fn plain_http_gets_tell_a_filtered_packet_too_big_from_a_path_down() {
    if let Err(e) = prerequisites() {
        return skip(&e);
    }
    // Nothing filtered: the 200 kB GET completes at the default MSS on both families.
    let chain = Chain::new("hok").expect("chain");
    for name in ["web6", "web4"] {
        let (tcp, pmtu, mtu, out) = chain.pmtu_configured(name);
        assert_eq!(
            (tcp.as_str(), pmtu.as_str(), mtu),
            ("ok", "ok", Some(1280)),
            "{name}: {out}"
        );
    }
    // A large path that is not large cannot tell anything: said, not passed.
    let (_, pmtu, _, out) = chain.pmtu_configured("small6");
    assert_eq!(pmtu, "other", "{out}");
    // (The byte count is the head and the 6-byte body: the head's size varies with Python's.)
    let detail = serde_json::from_str::<serde_json::Value>(&out).unwrap_or_default()[0]["checks"]
        [1]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let bytes = detail
        .strip_prefix(&format!("GET /small from [{SERVER6}]:80 answered "))
        .and_then(|d| d.split_once(' '))
        .filter(|(_, rest)| rest.starts_with("bytes, no more than one 1220-byte segment: too few to tell a black hole; point pmtu.large_path at a larger response"))
        .and_then(|(n, _)| n.parse::<usize>().ok());
    assert!(bytes.is_some_and(|n| n > 6 && n < 400), "{out}");
    drop(chain);

    // Packet Too Big dropped: the default-MSS GET stalls, the MSS 1220 one completes, on IPv6
    // only; the ad-hoc form (port 80, path /) says the same.
    let chain = Chain::new("hb6").expect("chain");
    chain
        .filter_routers("icmpv6 type packet-too-big drop")
        .expect("nft");
    let (tcp, pmtu, mtu, out) = chain.pmtu_configured("web6");
    assert_eq!(
        (tcp.as_str(), pmtu.as_str(), mtu),
        ("ok", "pmtu_blackhole", None),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "GET /big from [{SERVER6}]:80 stalls with full-size segments but completes with MSS 1220"
        )),
        "{out}"
    );
    let (tcp, pmtu, mtu, out) = chain.pmtu_configured("web4");
    assert_eq!(
        (tcp.as_str(), pmtu.as_str(), mtu),
        ("ok", "ok", Some(1280)),
        "IPv4: {out}"
    );
    let (tcp, pmtu, _, out) = chain.pmtu_at(true, 80);
    assert_eq!(
        (tcp.as_str(), pmtu.as_str()),
        ("ok", "pmtu_blackhole"),
        "ad hoc: {out}"
    );
    assert!(out.contains("GET / from"), "ad hoc: {out}");

    // Every data segment from the HTTP server dropped on the way back (the handshake and the
    // response head still pass): both GETs stall, on both families. That is the path down.
    for r in ["r1", "r2"] {
        run(
            "ip",
            &["netns", "exec", &chain.ns(r), "nft", "flush", "ruleset"],
        )
        .expect("nft flush");
    }
    chain
        .filter_hook("r2", "forward", "tcp sport 80 meta length > 300 drop")
        .expect("nft");
    for (name, server) in [
        ("web6", format!("[{SERVER6}]:80")),
        ("web4", format!("{SERVER4}:80")),
    ] {
        let (tcp, pmtu, mtu, out) = chain.pmtu_configured(name);
        assert_eq!(
            (tcp.as_str(), pmtu.as_str(), mtu),
            ("ok", "timeout", None),
            "{name}: {out}"
        );
        assert!(
            out.contains(&format!(
                "GET /big from {server} stalls with the default MSS and with MSS"
            )) && out.contains("the path is down"),
            "{name}: {out}"
        );
    }
}

#[test]
fn filtered_fragmentation_needed_is_a_blackhole_on_ipv4_only() {
    if let Err(e) = prerequisites() {
        return skip(&e);
    }
    let chain = Chain::new("b4").expect("chain");
    chain
        .filter_routers("icmp type destination-unreachable icmp code frag-needed drop")
        .expect("nft");
    let (tcp, pmtu, _, out) = chain.pmtu(false);
    assert_eq!(
        (tcp.as_str(), pmtu.as_str()),
        ("ok", "pmtu_blackhole"),
        "{out}"
    );
    let (tcp, pmtu, mtu, out) = chain.pmtu(true);
    assert_eq!(
        (tcp.as_str(), pmtu.as_str(), mtu),
        ("ok", "ok", Some(1280)),
        "IPv6: {out}"
    );
}

#[test]
fn trace_shows_the_silent_router_and_the_hops_around_it() {
    if let Err(e) = prerequisites() {
        return skip(&e);
    }
    let chain = Chain::new("tr").expect("chain");
    chain
        .filter_router(
            "r2",
            "icmp type time-exceeded drop\n  icmpv6 type time-exceeded drop",
        )
        .expect("nft");
    for (family, r1, server) in [
        ("ipv4", "192.0.2.1", SERVER4),
        ("ipv6", "2001:db8:1::1", SERVER6),
    ] {
        let host = if family == "ipv6" {
            format!("[{server}]:443")
        } else {
            format!("{server}:443")
        };
        let (ok, out) = chain.dualprobe(&["trace", &host, "--family", family, "--wait", "1s"]);
        assert!(ok, "{family}: the server answers at hop 3: {out}");
        let hop = |n: &str| {
            out.lines()
                .find(|l| l.split_whitespace().next() == Some(n))
                .unwrap_or_default()
                .to_string()
        };
        assert!(hop("1").contains(r1), "{family}: {out}");
        assert!(hop("2").contains('*'), "{family}: the silent router: {out}");
        assert!(
            hop("3").contains(server) && hop("3").contains("(target)"),
            "{family}: {out}"
        );
        assert!(out.contains("silent: 2"), "{family}: {out}");
    }
    // TCP SYNs with rising hop limits: the server's SYN-ACK on 443 is hop 3.
    let (ok, out) = chain.dualprobe(&[
        "trace",
        &format!("{SERVER4}:443"),
        "--family",
        "ipv4",
        "--proto",
        "tcp",
        "--wait",
        "1s",
    ]);
    assert!(
        ok && out.contains(SERVER4) && out.contains("silent: 2"),
        "tcp: {out}"
    );
    assert!(
        out.contains("last hop 3 203.0.113.2 (target reached"),
        "tcp: {out}"
    );
    // As a check after a failing chain (nothing listens on TCP 9): the hops in the JSON.
    let (_, out) = chain.dualprobe(&[
        "probe",
        &format!("{SERVER4}:9"),
        "--check",
        "tcp,trace",
        "--timeout",
        "4s",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let trace = &json[0]["checks"][1];
    assert_eq!(json[0]["checks"][0]["reason"], "refused", "{out}");
    assert_eq!(trace["reason"], "ok", "{out}");
    assert_eq!(trace["last_hop"]["ttl"], 3, "{out}");
    assert_eq!(trace["last_hop"]["address"], SERVER4, "{out}");
    assert_eq!(
        trace["hops"][1]["address"],
        serde_json::Value::Null,
        "{out}"
    );
    // The `trace:` section of a configured target: TCP SYNs after a passing `tcp` (`run:
    // always`), stopping at hop 2: the silent router is the last hop tried, the server unseen.
    let cfg = chain._dir.path().join("trace.yml");
    std::fs::write(
        &cfg,
        format!("timeout: 4s\ntargets:\n  - {{ name: tr, host: {SERVER4}, port: 443, checks: [tcp, trace], trace: {{ max_hops: 2, proto: tcp, wait: 1s, run: always }} }}\n"),
    )
    .unwrap();
    let (_, out) = chain.dualprobe(&[
        "probe",
        "--config",
        &cfg.to_string_lossy(),
        "tr",
        "--family",
        "ipv4",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let checks = &json[0]["checks"];
    assert_eq!(checks[0]["reason"], "ok", "{out}");
    assert_eq!(checks[1]["reason"], "unreachable", "{out}");
    assert_eq!(
        checks[1]["detail"],
        format!("trace to {SERVER4}:443: last hop 1 192.0.2.1 (target not reached; silent: 2)"),
        "{out}"
    );
    assert_eq!(checks[1]["hops"].as_array().map(Vec::len), Some(2), "{out}");
}
