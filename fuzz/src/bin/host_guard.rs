//! Host text forms, redirect `Location`s and the address policy. Invariants, not just "no panic":
//!
//! - a host text that any parser on the request path (ours, `url`'s) reads as an IP address is
//!   that address for us too, never a name that the allowlist's name patterns could let through;
//! - a redirect `Location` (resolved against the current URL as reqwest does) whose host is a
//!   forbidden address is refused by the ad-hoc policy, however permissive `probe.allow` is;
//! - an ad-hoc target that `split_target` accepts as a name is, in the URL the http check builds
//!   from it, that same host (what the allowlist judged is what gets connected to).

use std::net::IpAddr;

use dualprobe::model::target::Host;
use dualprobe::net::guard::{AddressPolicy, AdhocPolicy, Allowlist, MetadataGuard, forbidden};
use dualprobe::serve::adhoc::split_target;

/// `url`'s reading of a host, as reqwest will connect to it.
fn url_ip<S>(host: &url::Host<S>) -> Option<IpAddr> {
    match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
        url::Host::Domain(_) => None,
    }
}

fn main() {
    // Everything allowed that an allowlist can say: only the metadata guard stands.
    let entries = [
        "0.0.0.0/0",
        "::/0",
        "*.test",
        "*.amazonaws.com",
        "example.com",
    ];
    let wide = AdhocPolicy {
        allow: Allowlist::parse(&entries.map(String::from)).expect("allowlist"),
        guard: MetadataGuard::default(),
    };
    let base = url::Url::parse("http://probe.example.test:8080/a/b?c").expect("base");

    afl::fuzz!(|data: &[u8]| {
        let Ok(s) = std::str::from_utf8(data) else {
            return;
        };

        // Host text as config and redirects give it.
        let h = Host::parse(s);
        if let Host::Name(n) = &h {
            assert!(
                n.parse::<IpAddr>().is_err(),
                "{s:?}: name {n:?} is an IP literal"
            );
            if let Ok(uh) = url::Host::parse(n) {
                assert!(url_ip(&uh).is_none(), "{s:?}: name {n:?} is {uh} to url");
            }
        }
        if let Host::Ip(ip) = h
            && forbidden(ip).is_some()
        {
            assert!(
                wide.check_host(&h).is_err(),
                "{s:?}: forbidden {ip} allowed"
            );
        }

        // A redirect Location, the way reqwest resolves it and our policy then sees its host.
        if let Ok(next) = base.join(s)
            && let Some(uh) = next.host()
        {
            let ours = Host::parse(next.host_str().unwrap_or_default());
            if let Some(ip) = url_ip(&uh) {
                assert_eq!(
                    ours,
                    Host::Ip(ip),
                    "{s:?}: redirect to {next} seen as {ours:?}"
                );
                if forbidden(ip).is_some() {
                    assert!(
                        wide.check_host(&ours).is_err(),
                        "{s:?}: redirect to {ip} allowed"
                    );
                    assert!(MetadataGuard::default().check_host(&ours).is_err());
                }
            }
        }

        // An ad-hoc `/probe` target, and the URL the http check makes of it.
        if let Ok((host, port, scheme, path)) = split_target(s) {
            if let Host::Ip(ip) = host
                && forbidden(ip).is_some()
            {
                assert!(
                    wide.check_host(&host).is_err(),
                    "{s:?}: forbidden {ip} allowed"
                );
            }
            let url = format!(
                "{}://{}:{}{}",
                scheme.unwrap_or("http"),
                host.url_host(),
                port.unwrap_or(80),
                path.as_deref().unwrap_or("/")
            );
            let parsed = url::Url::parse(&url)
                .unwrap_or_else(|e| panic!("{s:?}: accepted, but {url:?} is no URL: {e}"));
            let connected = Host::parse(parsed.host_str().unwrap_or_default());
            let same = match (&host, &connected) {
                (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
                (a, b) => a == b,
            };
            assert!(
                same,
                "{s:?}: judged {host:?}, connects to {connected:?} ({url})"
            );
            if let Some(ip) = parsed.host().as_ref().and_then(url_ip) {
                assert_eq!(connected, Host::Ip(ip));
            }
        }
    });
}
