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
