//! Unit tests of the CloudFormation evaluator (apart, to keep `cloudformation.rs` under the
//! 700-line limit).

use super::*;

const YAML: &str = r#"
Parameters:
  Enable: { Type: String, Default: "true" }
  Svc: { Type: String, Default: kms }
Conditions:
  IsOn: !Equals [!Ref Enable, "true"]
  IsOff: !Not [!Condition IsOn]
Resources:
  A:
    Type: AWS::EC2::VPCEndpoint
    Properties:
      ServiceName: !Sub com.amazonaws.${AWS::Region}.logs
      VpcEndpointType: Interface
      PrivateDnsEnabled: true
      IpAddressType: dualstack
      DnsOptions: { DnsRecordIpType: !If [IsOn, service-defined, dualstack] }
  B:
    Type: AWS::EC2::VPCEndpoint
    Condition: IsOn
    Properties:
      ServiceName: !Join ["", ["com.amazonaws.", !Ref "AWS::Region", ".", !Ref Svc]]
      VpcEndpointType: Interface
      PrivateDnsEnabled: true
  C:
    Type: AWS::EC2::VPCEndpoint
    Condition: IsOff
    Properties:
      ServiceName: !If [IsOn, !Sub "com.amazonaws.${AWS::Region}.s3", "com.amazonaws.x.y"]
  D:
    Type: AWS::EC2::VPCEndpoint
    Properties:
      ServiceName: { "Fn::Sub": [ "com.amazonaws.${R}.sts", { R: !Ref "AWS::Region" } ] }
      VpcEndpointType: Interface
  Other:
    Type: AWS::EC2::VPC
    Properties: { CidrBlock: !Select [0, !Cidr [10.0.0.0/16, 4, 14]] }
"#;

#[test]
fn short_and_long_forms_evaluate() {
    let t = parse_template(YAML).unwrap();
    let eps = endpoints(&t, "eu-west-1").unwrap();
    let names: Vec<&str> = eps.iter().map(|e| e.service_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "com.amazonaws.eu-west-1.logs",
            "com.amazonaws.eu-west-1.kms",
            "com.amazonaws.eu-west-1.s3",
            "com.amazonaws.eu-west-1.sts"
        ]
    );
    assert_eq!(eps[0].families, vec![Family::Ipv4, Family::Ipv6]);
    assert_eq!(eps[1].condition.as_deref(), Some("IsOn"));
    assert_eq!(eps[1].condition_default, Some(true));
    assert_eq!(eps[2].condition_default, Some(false));
    assert_eq!(eps[2].kind, EndpointKind::Gateway);
    assert!(!eps[3].private_dns);

    let found = discover_in_template(YAML, "eu-west-1").unwrap();
    let hosts: Vec<&str> = found.iter().map(|d| d.host.as_str()).collect();
    // D has private DNS off: no name a task would use.
    assert_eq!(
        hosts,
        [
            "logs.eu-west-1.amazonaws.com",
            "kms.eu-west-1.amazonaws.com",
            "s3.eu-west-1.amazonaws.com"
        ]
    );
    assert_eq!(found[2].families, vec![Family::Ipv4]);
    assert!(!found[2].check_private);
    // A: dual-stack with service-defined records: its private DNS name has A only. B: an IPv4
    // endpoint (the default), so no AAAA is expected.
    use crate::model::target::Expect::{Nodata, Reachable};
    assert_eq!(
        eps[0].dns_record_ip_type.as_deref(),
        Some("service-defined")
    );
    assert_eq!(found[0].families, vec![Family::Ipv4, Family::Ipv6]);
    assert_eq!(
        (found[0].expect.ipv4, found[0].expect.ipv6),
        (Reachable, Nodata)
    );
    assert_eq!(
        (found[1].expect.ipv4, found[1].expect.ipv6),
        (Reachable, Nodata)
    );
}

#[test]
fn json_templates_parse() {
    let json = r#"{"Resources": {"E": {"Type": "AWS::EC2::VPCEndpoint", "Properties": {
            "ServiceName": {"Fn::Join": ["", ["com.amazonaws.", {"Ref": "AWS::Region"}, ".ecr.api"]]},
            "VpcEndpointType": "Interface", "PrivateDnsEnabled": true}}}}"#;
    let found = discover_in_template(json, "us-west-2").unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].host, "api.ecr.us-west-2.amazonaws.com");
    assert_eq!(found[0].name, "vpce-ecr-api");
}

#[test]
fn bad_templates_are_errors_not_panics() {
    assert!(parse_template("Resources: [1, 2]").is_err());
    assert!(parse_template("a: [unclosed").is_err());
    assert!(parse_template("{\"x\": 1").is_err());
    assert!(parse_template("Foo: 1").is_err());
    let unknown = "Resources:\n  E:\n    Type: AWS::EC2::VPCEndpoint\n    Properties:\n      ServiceName: !ImportValue Other\n";
    assert!(discover_in_template(unknown, "us-east-1").is_err());
}
