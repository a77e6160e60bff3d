//! The CloudFormation evaluator: a template (YAML with the short-form tags, or JSON) into the VPC
//! endpoints it declares — intrinsics (`Ref`, `Fn::Sub`, `Fn::Join`, `Fn::If`, conditions,
//! `Fn::Select`...) evaluated as far as they can be. Any input ends in endpoints or an error.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(found) =
            dualprobe::discovery::cloudformation::discover_in_template(text, "eu-west-1")
        {
            for d in &found {
                assert!(!d.families.is_empty(), "{} has no family", d.name);
                assert!(!d.host.is_empty(), "{} has no host", d.name);
            }
        }
    });
}
