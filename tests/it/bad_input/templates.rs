//! CloudFormation template rows: what discovery says about a bad template, through its public
//! entry `discover_template_file` (what `discovery.cloudformation` and `dualprobe targets
//! --from-template` use). Each row's input is the template's content, written to a file named
//! after the row; a few rows are files of other kinds.

use std::path::{Path, PathBuf};

use dualprobe::discovery::cloudformation::discover_template_file;

use super::{Row, check_table, row};

/// An `AWS::EC2::VPCEndpoint` `E` whose `ServiceName` is `service`, after `head`.
fn endpoint(head: &str, service: &str) -> String {
    format!(
        "{head}Resources:\n  E:\n    Type: AWS::EC2::VPCEndpoint\n    Properties:\n      ServiceName: {service}\n      VpcEndpointType: Interface\n      PrivateDnsEnabled: true\n"
    )
}

/// What discovery says for the file at `path`.
fn discovered(path: &Path) -> String {
    match discover_template_file(path, "us-east-1") {
        Ok(found) => format!("<{} endpoints>", found.len()),
        Err(e) => e.to_string(),
    }
}

fn rows(dir: &Path) -> Vec<Row> {
    let p = |name: &str| dir.join(name).display().to_string();
    let unevaluable = |file: &str| {
        format!(
            "{}: E: ServiceName cannot be evaluated before deployment",
            p(file)
        )
    };
    vec![
        row(
            "malformed YAML",
            "Resources: [unclosed\n",
            format!(
                "{}: line 1: unclosed bracket '[' at line 1, column 12",
                p("malformed YAML")
            ),
        ),
        row(
            "malformed JSON",
            "{\"Resources\": {\"E\": ",
            format!(
                "{}: not a JSON template: EOF while parsing a value at line 1 column 20",
                p("malformed JSON")
            ),
        ),
        row(
            "a list",
            "- Resources\n",
            format!("{}: a template is a mapping with `Resources:`", p("a list")),
        ),
        row(
            "no Resources",
            "AWSTemplateFormatVersion: \"2010-09-09\"\nParameters: {}\n",
            format!("{}: no `Resources:` mapping", p("no Resources")),
        ),
        row(
            "resource not a mapping",
            "Resources:\n  E: 1\n",
            format!(
                "{}: resource `E` is not a mapping",
                p("resource not a mapping")
            ),
        ),
        row(
            "GetAtt service name",
            endpoint("", "!GetAtt Other.Name"),
            unevaluable("GetAtt service name"),
        ),
        row(
            "ImportValue service name",
            endpoint("", "!ImportValue SharedServiceName"),
            unevaluable("ImportValue service name"),
        ),
        row(
            "Sub with a missing variable",
            endpoint("", "!Sub com.amazonaws.${AWS::Region}.${Missing}"),
            unevaluable("Sub with a missing variable"),
        ),
        row(
            "Sub never closed",
            endpoint("", "!Sub com.amazonaws.${AWS::Region"),
            unevaluable("Sub never closed"),
        ),
        row(
            "Ref to a parameter without a default",
            endpoint(
                "Parameters:\n  Svc: { Type: String }\n",
                "!Sub com.amazonaws.${AWS::Region}.${Svc}",
            ),
            unevaluable("Ref to a parameter without a default"),
        ),
        row(
            "Select out of range",
            endpoint("", "!Select [5, [com.amazonaws.us-east-1.logs]]"),
            unevaluable("Select out of range"),
        ),
        // Fixed: said "ServiceName cannot be evaluated before deployment" when there is none.
        row(
            "no ServiceName",
            "Resources:\n  E:\n    Type: AWS::EC2::VPCEndpoint\n    Properties: { VpcEndpointType: Interface }\n",
            format!("{}: E: has no ServiceName", p("no ServiceName")),
        ),
        // Fixed: this and the next row overflowed the stack and aborted the process (the agent at
        // load or reload, `check-config`, `targets --from-template`); evaluation now nests at most
        // 64 deep.
        row(
            "parameter defined by itself",
            endpoint(
                "Parameters:\n  Svc: { Type: String, Default: !Ref Svc }\n",
                "!Sub com.amazonaws.${AWS::Region}.${Svc}",
            ),
            unevaluable("parameter defined by itself"),
        ),
        row(
            "condition defined by itself",
            endpoint(
                "Conditions:\n  C: !Equals [!If [C, a, b], a]\n",
                "!If [C, com.amazonaws.us-east-1.logs, com.amazonaws.us-east-1.sts]",
            ),
            unevaluable("condition defined by itself"),
        ),
        row(
            "JSON nested too deep",
            format!("{{\"Resources\": {}{}}}", "[".repeat(300), "]".repeat(300)),
            format!(
                "{}: not a JSON template: recursion limit exceeded at line 1 column 141",
                p("JSON nested too deep")
            ),
        ),
        row(
            "YAML nested too deep",
            format!("Resources: {}{}\n", "[".repeat(300), "]".repeat(300)),
            format!(
                "{}: line 1: recursion limit exceeded at line 1, column 267",
                p("YAML nested too deep")
            ),
        ),
        row(
            "non-UTF-8",
            "Resources:\n  E: \u{FFFD}\n",
            format!("{}: the template is not UTF-8 text", p("non-UTF-8")),
        ),
        row(
            "huge",
            "",
            format!(
                "{}: the template is 4194305 bytes, more than the 4194304 allowed",
                p("huge")
            ),
        ),
        row(
            "a directory",
            "",
            format!("{}: the template is a directory", p("a directory")),
        ),
        row(
            "missing",
            "",
            format!(
                "{}: cannot read: No such file or directory (os error 2)",
                p("missing")
            ),
        ),
        row(
            "a FIFO",
            "",
            format!(
                "{}: the template is not a regular file (a FIFO, socket or device)",
                p("a FIFO")
            ),
        ),
    ]
}

/// Writes every row's file: its content, or a file of the kind its name says.
fn write(dir: &Path, r: &Row) -> PathBuf {
    let path = dir.join(r.name);
    match r.name {
        "non-UTF-8" => std::fs::write(&path, b"Resources:\n  E: \xff\xfe\n").expect("write"),
        "huge" => {
            let f = std::fs::File::create(&path).expect("create");
            f.set_len(dualprobe::files::TEMPLATE_MAX + 1)
                .expect("set_len");
        }
        "a directory" => std::fs::create_dir(&path).expect("mkdir"),
        "missing" => {}
        "a FIFO" => crate::support::mkfifo(&path),
        _ => std::fs::write(&path, &r.input).expect("write"),
    }
    path
}

#[test]
fn template_rows_have_their_exact_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = rows(dir.path());
    for r in &rows {
        write(dir.path(), r);
    }
    check_table("templates", &rows, |r| discovered(&dir.path().join(r.name)));
}
