//! Config parsing and validation: every `tests/data/invalid-*.yaml` fixture is rejected with the
//! exact problem text (file, line, field), and the valid fixture loads with the values it says.

use std::path::Path;
use std::time::Duration;

use dualprobe::config::{Config, ConfigSource, embedded_default};
use dualprobe::model::family::Family;
use dualprobe::model::target::{Expect, Host};

/// (fixture, the line the error must contain).
const EXPECTED: &[(&str, &str)] = &[
    (
        "invalid-unknown-key.yaml",
        ":5: targets[0].prot: unknown field `prot`; known fields: name, host, port, ",
    ),
    (
        "invalid-timeout-not-below-interval.yaml",
        ":2: timeout: must be less than interval (5s >= 5s)",
    ),
    (
        "invalid-target-timeout.yaml",
        ":5: targets[0].timeout: must be less than interval (3s >= 2s)",
    ),
    (
        "invalid-duplicate-name.yaml",
        ":4: targets[1].name: `web` is used by an earlier target; names must be unique",
    ),
    (
        "invalid-unknown-check.yaml",
        ":4: targets[0].checks[2]: unknown check `ping`; known checks: dns, ",
    ),
    (
        "invalid-duration.yaml",
        ":1: interval: `fifteen seconds` is not a duration",
    ),
    (
        "invalid-family.yaml",
        ":1: families[1]: `ipv5` is not one of ipv4, ipv6",
    ),
    (
        "invalid-interval-too-long.yaml",
        ":1: interval: `500000000y` is longer than 7d",
    ),
    (
        "invalid-status.yaml",
        ":5: targets[0].http.expect_status[1]: `99` is not a status like 200 or \"2xx\"",
    ),
    (
        "invalid-ca-file.yaml",
        ":5: targets[0].tls.ca_file: cannot read CA file",
    ),
    (
        "invalid-missing-host.yaml",
        ":2: targets[0].host: is required",
    ),
    (
        "invalid-nameserver.yaml",
        ":2: resolver.nameservers[1]: `not-an-address` is not an address like 127.0.0.1:53 or [::1]:5353",
    ),
    (
        "invalid-listen.yaml",
        ":1: listen: `localhost` is not an address like [::]:9469 or 0.0.0.0:9469",
    ),
    (
        "invalid-yaml-syntax.yaml",
        ":3: YAML syntax error at column 11: unclosed bracket '['",
    ),
    (
        "invalid-literal-family.yaml",
        ":4: targets[0].families: 192.0.2.10 is an ipv4 address but that family is not probed",
    ),
];

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn every_invalid_fixture_has_its_expected_error() {
    let mut fixtures: Vec<String> = std::fs::read_dir(data(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("invalid-") && n.ends_with(".yaml"))
        // AWS and discovery fixtures are checked in tests/aws_config.rs.
        .filter(|n| !n.starts_with("invalid-aws-") && !n.starts_with("invalid-discovery-"))
        .collect();
    fixtures.sort();
    for f in &fixtures {
        assert!(
            EXPECTED.iter().any(|(n, _)| n == f),
            "fixture {f} has no expected error in this test"
        );
    }
    for (name, expected) in EXPECTED {
        let path = data(name);
        let err = ConfigSource::File(path.clone())
            .load()
            .expect_err(&format!("{name} must be rejected"));
        let text = err.to_string();
        let want = format!("{}{expected}", path.display());
        assert!(
            text.contains(&want),
            "{name}: error text\n{text}\ndoes not contain\n{want}"
        );
    }
}

#[test]
fn all_problems_are_reported_not_just_the_first() {
    let yaml = "interval: 5s\ntimeout: 9s\ntargets:\n  - name: a\n    host: x.test\n    checks: [nope]\n  - name: a\n    host: y.test\n";
    let err = Config::from_yaml(yaml, "multi.yaml", None).unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
}

#[test]
fn valid_fixture_loads_with_its_values() {
    let c = ConfigSource::File(data("valid-full.yaml")).load().unwrap();
    assert_eq!(c.listen.to_string(), "[::]:9469");
    assert_eq!(c.concurrency, 64);
    assert_eq!(c.starts_per_second, 50);
    assert_eq!(c.nameservers.len(), 2);
    let web = c.target("web").unwrap();
    assert_eq!(web.interval, Duration::from_secs(30));
    assert_eq!(web.timeout, Duration::from_secs(5));
    assert_eq!(
        web.checks.iter().map(|k| k.name()).collect::<Vec<_>>(),
        ["dns", "tcp", "tls", "http"]
    );
    assert_eq!(web.expect.ipv6, Expect::Unreachable);
    let http = dualprobe::checks::http::settings(web);
    assert!(http.expect_status.iter().any(|m| m.matches(301)));
    assert!(http.expect_status.iter().any(|m| m.matches(204)));
    assert!(!http.expect_status.iter().any(|m| m.matches(302)));
    assert_eq!(dualprobe::checks::http::scheme(web).as_str(), "https");
    let lit = c.target("literal").unwrap();
    assert_eq!(lit.host, Host::Ip("2001:db8::1".parse().unwrap()));
    // DNS is skipped for IP literals and only the literal's family is probed.
    assert_eq!(
        lit.checks.iter().map(|k| k.name()).collect::<Vec<_>>(),
        ["tcp"]
    );
    assert_eq!(lit.families, vec![Family::Ipv6]);
}

#[test]
fn embedded_default_is_valid_and_targets_dual_stack_endpoints() {
    let c = Config::from_yaml(&embedded_default(), "embedded default", None).unwrap();
    let hosts: Vec<String> = c.targets.iter().map(|t| t.host.to_string()).collect();
    assert!(
        hosts
            .iter()
            .any(|h| h.starts_with("s3.dualstack.") && h.ends_with(".amazonaws.com"))
    );
    assert!(
        hosts
            .iter()
            .any(|h| h.starts_with("ec2.") && h.ends_with(".api.aws"))
    );
    assert_eq!(c.families, Family::ALL.to_vec());
    assert_eq!(c.starts_per_second, 100, "the default start rate");
}

#[test]
fn checks_run_in_registry_order_whatever_the_config_order() {
    let yaml = "targets:\n  - name: w\n    host: w.test\n    checks: [http, dns, tls, tcp]\n";
    let c = Config::from_yaml(yaml, "t", None).unwrap();
    assert_eq!(
        c.targets[0]
            .checks
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>(),
        ["dns", "tcp", "tls", "http"]
    );
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dualprobe.yml");
    let c = ConfigSource::File(path)
        .load()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.target("internet-ipv4").is_some());
    assert!(c.modules.contains_key("https"));
}

/// Files the config names are read only when they are small regular files: `/dev/zero` (which
/// once aborted a reload with a 4 GiB allocation) and a FIFO nobody writes (which once froze the
/// runtime) are refused at once with the file named, and so is an oversized token file.
#[test]
fn named_files_must_be_small_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("token.fifo");
    crate::support::mkfifo(&fifo);
    let big = dir.path().join("big.token");
    std::fs::write(&big, "x".repeat(5000)).unwrap();
    let cases = [
        (
            "targets:\n  - name: a\n    host: a.test\n    checks: [tcp, tls]\n    tls: { ca_file: /dev/zero }\n".to_string(),
            ":5: targets[0].tls.ca_file: CA file /dev/zero is not a regular file (a FIFO, socket or device)".to_string(),
        ),
        (
            "probe:\n  token_file: /dev/zero\n".to_string(),
            ":2: probe.token_file: /dev/zero is not a regular file (a FIFO, socket or device)".to_string(),
        ),
        (
            format!("probe:\n  token_file: {}\n", fifo.display()),
            format!(":2: probe.token_file: {} is not a regular file (a FIFO, socket or device)", fifo.display()),
        ),
        (
            format!("probe:\n  token_file: {}\n", big.display()),
            format!(":2: probe.token_file: {} is 5000 bytes, more than the 4096 allowed", big.display()),
        ),
        (
            "discovery:\n  cloudformation: { template: /dev/zero, region: us-east-1 }\n".to_string(),
            ":2: discovery.cloudformation.template: /dev/zero is not a regular file (a FIFO, socket or device)".to_string(),
        ),
    ];
    for (yaml, want) in &cases {
        let (tx, rx) = std::sync::mpsc::channel();
        let yaml2 = yaml.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Config::from_yaml(&yaml2, "c.yml", None).map(|_| ()));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("loading hung: {yaml}"));
        let e = got.expect_err(yaml).to_string();
        assert!(e.contains(want.as_str()), "{yaml}\nwant {want}\ngot  {e}");
    }
    let e = ConfigSource::File("/dev/zero".into())
        .load()
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/dev/zero: the config is not a regular file (a FIFO, socket or device)"
    );
}

/// `interval` has a floor: `1ns` once spun a core.
#[test]
fn intervals_under_a_second_are_refused() {
    for (yaml, want) in [
        (
            "interval: 1ns\ntimeout: 1ns\n",
            "c.yml:1: interval: `1ns` is shorter than the 1s minimum",
        ),
        (
            "targets:\n  - { name: a, host: a.test, interval: 500ms, timeout: 100ms }\n",
            "c.yml:2: targets[0].interval: `500ms` is shorter than the 1s minimum",
        ),
    ] {
        let e = Config::from_yaml(yaml, "c.yml", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{yaml}: {e}");
    }
    assert!(Config::from_yaml("interval: 1s\ntimeout: 500ms\n", "c.yml", None).is_ok());
}

/// In-flight bounds a semaphore can hold: larger values once passed check-config and then
/// aborted the agent on the first `/probe` or reload.
#[test]
fn in_flight_bounds_are_capped() {
    for (yaml, want) in [
        (
            "concurrency: 18446744073709551615\n",
            "c.yml:1: concurrency: `18446744073709551615` is more than the 65536 allowed",
        ),
        (
            "probe:\n  max_concurrent: 100000\n",
            "c.yml:2: probe.max_concurrent: `100000` is more than the 65536 allowed",
        ),
    ] {
        let e = Config::from_yaml(yaml, "c.yml", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{yaml}: {e}");
    }
}

/// The `http:` section is the `http` check's own (`checks/http.rs`), yet it still decides a
/// target's default port, and the chain and port decide its default scheme.
#[test]
fn http_section_decides_default_port_and_scheme() {
    use dualprobe::checks::http;
    for (target, port, scheme) in [
        // No section: 443, and 443 means https.
        (
            "{ name: t, host: a.test, checks: [dns, tcp, http] }",
            443,
            "https",
        ),
        // A section without a scheme: plain HTTP on 80.
        (
            "{ name: t, host: a.test, checks: [dns, tcp, http], http: { path: /x } }",
            80,
            "http",
        ),
        (
            "{ name: t, host: a.test, checks: [tcp, http], http: { scheme: https } }",
            443,
            "https",
        ),
        // `tls` in the chain: 443 and https, whatever the section says of the port.
        (
            "{ name: t, host: a.test, checks: [tcp, tls, http], http: { path: / } }",
            443,
            "https",
        ),
        // An explicit port: http unless it is 443 or tls runs.
        (
            "{ name: t, host: a.test, port: 8080, checks: [tcp, http] }",
            8080,
            "http",
        ),
        (
            "{ name: t, host: a.test, port: 8443, checks: [tcp, tls, http] }",
            8443,
            "https",
        ),
        (
            "{ name: t, host: a.test, port: 8443, checks: [tcp, http], http: { scheme: https } }",
            8443,
            "https",
        ),
        // No http check, no section: the TLS port.
        ("{ name: t, host: a.test }", 443, "https"),
    ] {
        let yaml = format!("targets:\n  - {target}\n");
        let c = Config::from_yaml(&yaml, "c.yml", None).unwrap_or_else(|e| panic!("{target}: {e}"));
        let t = c.target("t").unwrap();
        assert_eq!(
            (t.port, http::scheme(t).as_str()),
            (port, scheme),
            "{target}"
        );
    }
    let e = Config::from_yaml(
        "targets:\n  - name: t\n    host: a.test\n    http: { scheme: ftp, expect_status: [200, 99] }\n",
        "c.yml",
        None,
    )
    .unwrap_err()
    .to_string();
    for want in [
        "c.yml:4: targets[0].http.scheme: `ftp` is not http or https",
        "c.yml:4: targets[0].http.expect_status[1]: `99` is not a status like 200 or \"2xx\"",
    ] {
        assert!(e.contains(want), "{e}");
    }
}

/// A guarded literal host fails at load, once, instead of as `forbidden` on every cycle; the
/// flag that exempts it means nothing anywhere else, so it is refused there too.
#[test]
fn guarded_literals_need_the_flag_and_the_flag_needs_one() {
    for (target, want) in [
        (
            "{ name: t, host: 169.254.170.2, port: 51678, checks: [tcp] }",
            "c.yml:2: targets[0].host: 169.254.170.2 is the ECS task metadata and credentials endpoint (link-local): no check may reach it unless the target says `allow_metadata_address: true`",
        ),
        (
            "{ name: t, host: \"[fd00:ec2::254]\", port: 80, checks: [tcp] }",
            "c.yml:2: targets[0].host: fd00:ec2::254 is the instance metadata service over IPv6: no check may reach it unless the target says `allow_metadata_address: true`",
        ),
        (
            "{ name: t, host: 2852039166, port: 80, checks: [tcp] }",
            "c.yml:2: targets[0].host: 169.254.169.254 is the instance metadata service (link-local): no check may reach it unless the target says `allow_metadata_address: true`",
        ),
        (
            "{ name: t, host: a.test, allow_metadata_address: true }",
            "c.yml:2: targets[0].allow_metadata_address: only applies to a guarded IP literal host (the ECS agent at 169.254.170.2, the instance metadata service); `a.test` is not one",
        ),
        (
            "{ name: t, host: 192.0.2.1, allow_metadata_address: true }",
            "c.yml:2: targets[0].allow_metadata_address: only applies to a guarded IP literal host (the ECS agent at 169.254.170.2, the instance metadata service); `192.0.2.1` is not one",
        ),
    ] {
        let yaml = format!("targets:\n  - {target}\n");
        let e = Config::from_yaml(&yaml, "c.yml", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{target}:\n{e}");
    }
    let ok = "targets:\n  - { name: t, host: 169.254.170.2, port: 51678, checks: [tcp], allow_metadata_address: true }\n";
    assert!(Config::from_yaml(ok, "c.yml", None).is_ok());
}

/// Type errors (a value of the wrong kind, an unknown key) name the field path and the bad
/// value, and never hide the other problems of the document: each row's whole error text.
#[test]
fn type_errors_name_their_field_and_value_and_hide_nothing() {
    let t = "targets:\n  - name: web\n    host: web.test\n";
    let cases: &[(String, &str)] = &[
        (
            format!("{t}    port: abc\n"),
            "c.yml:4: targets[0].port: `abc` is not a port (1-65535)",
        ),
        (
            format!("{t}    port: 70000\n"),
            "c.yml:4: targets[0].port: `70000` is not a port (1-65535)",
        ),
        (
            format!("{t}    families: ipv4\n"),
            "c.yml:4: targets[0].families: expected a list, found `ipv4`",
        ),
        (
            "families: [ipv4, ipv5]\n".into(),
            "c.yml:1: families[1]: `ipv5` is not one of ipv4, ipv6",
        ),
        (
            format!("{t}    checks: dns\n"),
            "c.yml:4: targets[0].checks: expected a list, found `dns`",
        ),
        (
            format!("{t}    interval: 30\n"),
            "c.yml:4: targets[0].interval: `30` is not a duration (time unit needed, for example 30sec or 30ms); write e.g. 15s, 500ms, 1m",
        ),
        (
            format!("{t}    prot: 443\n"),
            "c.yml:4: targets[0].prot: unknown field `prot`; known fields: name, host, port, checks, interval, timeout, families, addresses, tls, expect, aws, allow_metadata_address, private_dns, http, pmtu, trace",
        ),
        (
            format!("intervall: 15s\n{t}"),
            "c.yml:1: intervall: unknown field `intervall`; known fields: listen, interval, timeout, families, concurrency, starts_per_second, resolver, targets, discovery, probe, modules, metrics",
        ),
        (
            format!("{t}    http: {{ pth: /x }}\n"),
            "c.yml:4: targets[0].http.pth: unknown field `pth`; known fields: path, scheme, expect_status, follow_redirects",
        ),
        (
            format!("{t}    expect: {{ ipv4: maybe }}\n"),
            "c.yml:4: targets[0].expect.ipv4: `maybe` is not one of reachable, unreachable, nodata, any",
        ),
        (
            format!("{t}    allow_metadata_address: sure\n"),
            "c.yml:4: targets[0].allow_metadata_address: `sure` is not true or false",
        ),
        (
            "concurrency: lots\n".into(),
            "c.yml:1: concurrency: `lots` is not a whole number (0 or more)",
        ),
        // The case: a type error, an unknown key on the next line, and a semantic
        // error in the next target, all at once, in line order.
        (
            format!(
                "{t}    port: abc\n    prot: 1\n  - name: db\n    host: db.test\n    checks: [ping]\n"
            ),
            "c.yml:4: targets[0].port: `abc` is not a port (1-65535)\n\
             c.yml:5: targets[0].prot: unknown field `prot`; known fields: name, host, port, checks, interval, timeout, families, addresses, tls, expect, aws, allow_metadata_address, private_dns, http, pmtu, trace\n\
             c.yml:8: targets[1].checks[0]: unknown check `ping`; known checks: dns, private_dns, happy_eyeballs, icmp, tcp, tls, http, pmtu, s3, ec2, trace",
        ),
        // A type error in a module, a semantic one at the top.
        (
            "timeout: 20s\nmodules:\n  m: { port: x, checks: [tcp] }\n".into(),
            "c.yml:1: timeout: must be less than interval (20s >= 15s)\n\
             c.yml:3: modules.m.port: `x` is not a port (1-65535)",
        ),
        // A target that is not a mapping keeps the next one's index.
        (
            "targets:\n  - web.test\n  - { name: b, host: b.test, port: 0 }\n".into(),
            "c.yml:2: targets[0]: expected a mapping (key: value), found `web.test`\n\
             c.yml:3: targets[1].port: must be 1-65535",
        ),
        // A missing name, and a value of the wrong type in a flow mapping.
        (
            "targets:\n  - { host: a.test }\n  - { name: b, host: [b.test], port: 80 }\n".into(),
            "c.yml:2: targets[0].name: is required\n\
             c.yml:3: targets[1].host: expected a single value, found a list",
        ),
    ];
    for (yaml, want) in cases {
        let got = Config::from_yaml(yaml, "c.yml", None)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{yaml}"))
            .to_string();
        assert_eq!(&got, want, "\n{yaml}");
    }
}

/// Syntax errors stop reading: reported alone, with the line and the column.
#[test]
fn syntax_errors_give_line_and_column() {
    for (yaml, want) in [
        (
            "targets:\n  - name: web\n    host: \"web.test\n",
            "c.yml:3: YAML syntax error at column 11: unclosed quote",
        ),
        (
            "targets:\n  - name: web\n   host: web.test\n",
            "c.yml:3: YAML syntax error at column 4: while parsing a block collection, did not find expected '-' indicator",
        ),
    ] {
        let got = Config::from_yaml(yaml, "c.yml", None)
            .unwrap_err()
            .to_string();
        assert_eq!(got, want, "\n{yaml}");
    }
}

/// An alias bomb ("billion laughs") and a deeply nested document are refused quickly with the
/// limit named, never a hang or a stack overflow (the loader runs on a 2 MiB stack, a spawned
/// thread's default).
#[test]
fn alias_bombs_and_deep_nesting_hit_named_limits() {
    // Merges make it type-correct: every level is a target, ten times the one before.
    let mut bomb = String::from("targets:\n  - &a0 { name: a, host: a.test }\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb += &format!("  - &a{i} {{ <<: [{refs}] }}\n");
    }
    let aliases = format!(
        "aliases bring in more than {} YAML events (the limit, against alias bombs)",
        dualprobe::config::MAX_ALIAS_EVENTS
    );
    let depth = format!(
        "the document nests lists and mappings deeper than {} levels (the limit)",
        dualprobe::config::MAX_DEPTH
    );
    let block: String = (1..3000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let cases = [
        (bomb.clone(), aliases.clone()),
        // After a type error, the re-reads hit the same limit.
        (format!("concurrency: x\n{bomb}"), aliases.clone()),
        (
            format!("targets: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
            depth.clone(),
        ),
        (format!("x:\n{block}"), depth.clone()),
        (
            format!("targets:\n  {}x\n", "- ".repeat(3000)),
            depth.clone(),
        ),
    ];
    for (yaml, want) in cases {
        let (tx, rx) = std::sync::mpsc::channel();
        let doc = yaml.clone();
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let started = std::time::Instant::now();
                let r = Config::from_yaml(&doc, "c.yml", None).map(|_| ());
                let _ = tx.send((r, started.elapsed()));
            })
            .unwrap();
        let (got, took) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("loading hung or crashed: {}", &yaml[..60]));
        let e = got.unwrap_err().to_string();
        assert!(e.contains(&want), "want {want}\ngot  {e}");
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }
}
