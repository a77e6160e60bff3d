//! Inputs the fuzz targets (`fuzz/`, `scripts/fuzz.sh`) found that broke something, each kept as
//! the smallest form that failed, run against the public entry point the target drives.

use dualprobe::discovery::cloudformation::discover_in_template;

/// Evaluates on a thread of its own with a main thread's stack (8 MiB), so a runaway recursion
/// is the same stack overflow the agent would hit, not a smaller test-thread stack's.
fn discover(template: &'static str) -> Result<usize, String> {
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            discover_in_template(template, "eu-west-1")
                .map(|found| found.len())
                .map_err(|e| e.to_string())
        })
        .expect("thread")
        .join()
        .expect("no panic")
}

/// A parameter whose default refers to itself recursed until the stack overflowed (the agent
/// aborted on loading such a template); now it cannot be evaluated, an error naming the resource.
#[test]
fn cloudformation_self_referencing_parameter() {
    let template = "Parameters:\n  P: { Type: String, Default: !Ref P }\nResources:\n  E:\n    Type: AWS::EC2::VPCEndpoint\n    Properties: { ServiceName: !Ref P }\n";
    let err = discover(template).expect_err("a cycle cannot be evaluated");
    assert!(err.contains("ServiceName cannot be evaluated"), "{err}");
}

/// A condition that depends on itself through `Fn::If` restarted the condition depth count on
/// every round and overflowed the stack.
#[test]
fn cloudformation_condition_cycle_through_if() {
    let template = "Conditions:\n  C: !Equals [!If [C, a, b], a]\nResources:\n  E:\n    Type: AWS::EC2::VPCEndpoint\n    Condition: C\n    Properties: { ServiceName: com.amazonaws.eu-west-1.s3 }\n";
    assert_eq!(
        discover(template),
        Ok(1),
        "the endpoint is found, its condition unknown"
    );
}

/// Every reference doubling the work (each parameter's default joins the previous one twice)
/// took time exponential in the chain's length: 2^40 evaluations, a hang. A budget ends it.
#[test]
fn cloudformation_exponential_references_end() {
    let mut t = String::from("Parameters:\n  P0: { Type: String, Default: x }\n");
    for i in 1..=40 {
        let p = i - 1;
        t.push_str(&format!(
            "  P{i}: {{ Type: String, Default: !Join ['', [!Ref P{p}, !Ref P{p}]] }}\n"
        ));
    }
    t.push_str("Resources:\n  E:\n    Type: AWS::EC2::VPCEndpoint\n    Properties: { ServiceName: !Ref P40 }\n");
    let template: &'static str = Box::leak(t.into_boxed_str());
    let start = std::time::Instant::now();
    let err = discover(template).expect_err("over the budget");
    assert!(err.contains("ServiceName cannot be evaluated"), "{err}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// `6169.254.` (host_guard target): a name ending in a number is what URL parsers read as an
/// IPv4 address; not being a valid one, it was kept as a name and accepted as an ad-hoc target,
/// and the http check then built `http://6169.254:80/`, which is no URL. Now refused up front,
/// as a `/probe` target and as a configured host, by the same name check.
#[test]
fn host_ending_in_a_number_is_no_name() {
    use dualprobe::model::target::Host;
    use dualprobe::serve::adhoc::split_target;
    let expected = "`6169.254` is not a host name or IP address (it ends in a number, so URLs read it as an IPv4 address, and it is not a valid one)";
    let err = split_target("6169.254.").expect_err("no valid host");
    assert_eq!(err.to_string(), expected);
    for bad in ["1.2.3.256", "x.300", "example.0x", "a.0XFF."] {
        assert!(Host::check_name(bad).is_err(), "{bad} accepted");
    }
    // Names with digits elsewhere, and a hex-looking label that is not last, stay names.
    for good in [
        "s3.dualstack.eu-west-1.amazonaws.com",
        "0x10.example",
        "t1.bench.test",
        "a.0x1g",
    ] {
        assert_eq!(Host::check_name(good), Ok(()), "{good}");
    }
}

/// `e%2e` (host_guard target): `url` percent-decodes it to `e.` after our trailing-dot trim, so
/// the name the allowlist judged (`e.`) differed from the host of the URL built from it (`e`).
#[test]
fn percent_encoded_trailing_dot_is_the_same_name() {
    use dualprobe::model::target::Host;
    use dualprobe::serve::adhoc::split_target;
    assert_eq!(Host::parse("e%2e"), Host::Name("e".into()));
    assert_eq!(
        Host::parse("Example.TEST%2E%2e"),
        Host::Name("example.test".into())
    );
    let (host, ..) = split_target("e%2e:8080").expect("a name");
    assert_eq!(host, Host::Name("e".into()));
    let url = url::Url::parse(&format!("http://{}:8080/", host.url_host())).expect("url");
    assert_eq!(Host::parse(url.host_str().expect("host")), host);
}

/// `xn--` (host_guard target): letters, digits and `-` only, so the name check passed it, but
/// no URL can carry a bad punycode label; the http check could not build its URL.
#[test]
fn bad_punycode_label_is_no_name() {
    use dualprobe::serve::adhoc::split_target;
    let err = split_target("xn--").expect_err("no URL host");
    assert_eq!(
        err.to_string(),
        "`xn--` is not a host name (invalid international domain name)"
    );
    assert!(split_target("xn--0xa9fea9ffea9fe").is_err());
    // A valid punycode name stays a name.
    assert!(split_target("xn--bcher-kva.example").is_ok());
}

/// `target=app.amazonaws.com&check&…` (probe_query target): an empty `check` made an ad-hoc
/// target with no checks at all, which would answer success having checked nothing.
#[test]
fn an_empty_check_parameter_is_an_error() {
    use dualprobe::serve::adhoc::{AdhocRequest, build};
    for checks in [
        vec![String::new()],
        vec![",".to_string()],
        vec![" , ".to_string()],
    ] {
        let req = AdhocRequest {
            target: "app.amazonaws.com".into(),
            checks: checks.clone(),
            families: Vec::new(),
            timeout: std::time::Duration::from_secs(2),
        };
        let err = build(&req).expect_err("no check named");
        assert!(
            err.to_string()
                .starts_with("`check` names no check; known checks: dns, "),
            "{checks:?}: {err}"
        );
    }
}
