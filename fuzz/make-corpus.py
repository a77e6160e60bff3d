#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/corpus/TARGET/*) from the repository's own examples: the test
configs and README's, the CloudFormation templates, the EC2 XML and task metadata the tests use,
hand-made DNS responses and host/query forms. Run from anywhere; rewrites the seeds it owns."""

import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "corpus"


def put(target: str, name: str, data) -> None:
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# config: the valid example, a few invalid ones, README's blocks, alias bomb, deep nesting.
data = ROOT / "tests" / "data"
for p in sorted(data.glob("*.yaml")):
    if p.name == "valid-full.yaml" or p.name in {
        "invalid-duration.yaml", "invalid-family.yaml", "invalid-unknown-key.yaml",
        "invalid-yaml-syntax.yaml", "invalid-aws-region.yaml", "invalid-discovery-vpc-id.yaml",
        "invalid-nameserver.yaml", "invalid-status.yaml",
    }:
        put("config", p.name, p.read_bytes())
readme = (ROOT / "README.md").read_text()
for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", readme, re.S)):
    put("config", f"readme-{i}.yaml", block)
bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
for i, prev in zip("bcdefghij", "abcdefghi"):
    bomb += f"{i}: &{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
put("config", "alias-bomb.yaml", bomb + "targets: *j\n")
put("config", "deep-nesting.yaml", "targets: " + "[" * 200 + "]" * 200 + "\n")
put("config", "deep-maps.yaml", "targets:\n  - " + "{a: " * 100 + "1" + "}" * 100 + "\n")

# cloudformation: the endpoint-bearing templates and the evaluator's test templates.
put("cloudformation", "ipv6-vpc.yml", (ROOT / "cloudformation" / "ipv6-vpc.yml").read_bytes())
put("cloudformation", "cfn-unresolvable.yml", (data / "cfn-unresolvable.yml").read_bytes())
# The evaluator's own test templates live beside it (cloudformation_tests.rs).
src = "".join((ROOT / "src" / "discovery" / f).read_text()
              for f in ("cloudformation.rs", "cloudformation_tests.rs"))
m = re.search(r'const YAML: &str = r#"(.*?)"#;', src, re.S)
put("cloudformation", "intrinsics.yml", m.group(1))
m = re.search(r'let json = r#"(.*?)"#;', src, re.S)
put("cloudformation", "join.json", m.group(1))
put("cloudformation", "deep-if.yml",
    "Resources:\n  E:\n    Type: AWS::EC2::VPCEndpoint\n    Properties:\n      ServiceName: "
    + "!Join ['', [" * 40 + "x" + "]]" * 40 + "\n")

# The evaluator's regressions (tests/it/fuzz_regressions.rs): reference cycles.
put("cloudformation", "regression-self-ref.yml",
    "Parameters:\n  P: { Type: String, Default: !Ref P }\nResources:\n  E:\n    Type: AWS::EC2::VPCEndpoint\n"
    "    Properties: { ServiceName: !Ref P }\n")
put("cloudformation", "regression-cond-cycle.yml",
    "Conditions:\n  C: !Equals [!If [C, a, b], a]\nResources:\n  E:\n    Type: AWS::EC2::VPCEndpoint\n"
    "    Condition: C\n    Properties: { ServiceName: com.amazonaws.eu-west-1.s3 }\n")

# task metadata v4 and the EC2 answers (first byte 0: HTTP 200; 3: 400).
put("task_metadata", "ecs-task-metadata-v4.json", (data / "ecs-task-metadata-v4.json").read_bytes())
put("task_metadata", "minimal.json", '{"TaskARN": "arn:aws:ecs:eu-west-1:1:task/c/abc", "Cluster": "arn:aws:ecs:eu-west-1:1:cluster/c"}')
for name in ("ec2-describe-vpc-endpoints.xml", "ec2-describe-vpcs.xml"):
    put("ec2_responses", name, b"\x00" + (data / name).read_bytes())
put("ec2_responses", "error-unauthorized.xml", b"\x03" + b"""<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>1-2-3</RequestID></Response>""")

# DNS responses: header, one question, answers (A, AAAA, CNAME, an embedded metadata address).
def name(n: str) -> bytes:
    return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\x00"

def rr(rtype: int, rdata: bytes, owner: bytes = b"\xc0\x0c") -> bytes:
    return owner + struct.pack(">HHIH", rtype, 1, 60, len(rdata)) + rdata

def response(qtype: int, answers, rcode: int = 0) -> bytes:
    head = struct.pack(">HHHHHH", 0x1234, 0x8180 | rcode, 1, len(answers), 0, 0)
    return head + name("app.example.test") + struct.pack(">HH", qtype, 1) + b"".join(answers)

a = lambda *o: rr(1, bytes(o))
aaaa = lambda hexs: rr(28, bytes.fromhex(hexs))
put("dns_answer", "a.bin", response(1, [a(192, 0, 2, 1), a(169, 254, 169, 254)]))
put("dns_answer", "aaaa.bin", response(28, [aaaa("20010db8000000000000000000000001"),
                                            aaaa("00000000000000000000ffffa9fea9fe"),
                                            aaaa("0064ff9b0000000000000000a9fea9fe")]))
put("dns_answer", "cname.bin", response(1, [rr(5, name("lb.example.test")), a(198, 51, 100, 7)]))
put("dns_answer", "nxdomain.bin", response(1, [], rcode=3))

# Host forms and redirect Locations.
for i, s in enumerate([
    "169.254.169.254", "0xa9fea9fe", "2852039166", "0251.0376.0251.0376", "169.254.43518",
    "[::ffff:169.254.169.254]", "[fd00:ec2::254]:80", "fe80::1%eth0", "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1", "http://169.254.170.2/v2/credentials", "//0x7f.1/x", "https://a.test:8443/p?q#f",
    "app.example.test.", "s3.dualstack.eu-west-1.amazonaws.com:443", "http://[::1]:80/", "\\\\evil.test\\x",
    "http://xn--nxasmq6b.test/", "/relative/path", "https://user@a.test/",
]):
    put("host_guard", f"{i:02}", s)

# /probe queries (a second line is the scrape timeout header).
for i, s in enumerate([
    "target=app.amazonaws.com&check=dns&check=tcp&family=ipv4&timeout=2s",
    "target=web", "target=literal&family=ipv6", "target=192.0.2.1:22&module=tcp_v4",
    "target=169.254.169.254", "target=https://s3.eu-west-1.amazonaws.com/bucket&debug=1\n3.5",
    "target=%5B2001:db8::1%5D:443&check=tcp,tls&format=json", "target=x.test&module=http_2xx&timeout=250ms\n0.5",
    "target=0xa9fea9fe&check=tcp", "target=fe80::1%25eth0&check=tcp",
]):
    put("probe_query", f"{i:02}", s)
