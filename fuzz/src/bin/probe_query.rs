//! `/probe` requests: the raw query (form-urlencoded `target`, `check`, `family`, `module`,
//! `timeout`...) and the scrape timeout header, through the handler's own steps
//! (`dualprobe::fuzzing::probe_request`) against a config with targets, modules and an
//! allowlist. Input: the query, then optionally a newline and the header's value.
//! Invariants for every request that would be probed: the deadline is positive and within
//! `probe.max_timeout`; there is a family and a check; an ad-hoc target is never a forbidden
//! address, and the URL the http check builds from it connects to the host that was allowed.

use dualprobe::config::Config;
use dualprobe::model::target::Host;
use dualprobe::net::guard::forbidden;

const CONFIG: &str = r#"
targets:
  - { name: web, host: app.example.test, port: 443, checks: [dns, tcp, tls, http] }
  - { name: literal, host: "2001:db8::1", port: 80, checks: [tcp], families: [ipv6] }
probe:
  allow: ["*.amazonaws.com", "*.test", "192.0.2.0/24", "2001:db8::/32", "::/0", "0.0.0.0/0"]
  max_timeout: 10s
  timeout_offset: 500ms
modules:
  http_2xx: { checks: [dns, tcp, tls, http], families: [ipv4, ipv6], http: { path: / } }
  tcp_v4: { checks: [tcp], families: [ipv4], port: 22 }
"#;

fn main() {
    let config = Config::from_yaml(CONFIG, "fuzz.yaml", None).expect("the fuzz config is valid");
    // The closure must be unwind safe; the config is only read, and a panic ends the process.
    let shared = std::panic::AssertUnwindSafe(&config);
    afl::fuzz!(|data: &[u8]| {
        let config: &Config = *shared;
        let Ok(s) = std::str::from_utf8(data) else {
            return;
        };
        let (query, header) = match s.split_once('\n') {
            Some((q, h)) => (q, Some(h)),
            None => (s, None),
        };
        let Ok(r) = dualprobe::fuzzing::probe_request(config, query, header) else {
            return;
        };
        let t = &r.target;
        assert!(!r.timeout.is_zero(), "{s:?}: zero deadline");
        assert!(
            r.timeout <= config.probe_endpoint.max_timeout,
            "{s:?}: {:?}",
            r.timeout
        );
        assert!(!t.families.is_empty(), "{s:?}: no family");
        assert!(!t.checks.is_empty(), "{s:?}: no check");
        if !r.adhoc {
            return;
        }
        if let Host::Ip(ip) = t.host {
            assert!(forbidden(ip).is_none(), "{s:?}: ad-hoc probe of {ip}");
            for f in &t.families {
                assert_eq!(*f, dualprobe::model::family::Family::of(ip), "{s:?}");
            }
        }
        let url = format!("http://{}:{}/", t.host.url_host(), t.port);
        let parsed = url::Url::parse(&url).unwrap_or_else(|e| panic!("{s:?}: {url:?}: {e}"));
        let connected = Host::parse(parsed.host_str().unwrap_or_default());
        let same = match (&t.host, &connected) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        };
        assert!(
            same,
            "{s:?}: allowed {:?}, connects to {connected:?}",
            t.host
        );
    });
}
