"""The two dualprobe configs of scripts/check_dashboards_live.py (tasks a and b). Every name
resolves through the loopback dnsmasq that script starts; nothing leaves loopback. The NAT64
targets (`nat64`: those run only inside the script's private network namespace) use
nat64.test/natdown.test, whose AAAA answers are DNS64 addresses in 64:ff9b::/96."""

from __future__ import annotations

import json


def config_a(dns_port: int, ports: dict, ca: str, template: str, region: str, cert_days: int,
             nat64: bool) -> str:
    """Task a: passing and failing families, a violated expectation, a certificate near expiry,
    CloudFormation discovery, IPv6 paths native and (nat64) through NAT64, as asserted or not."""
    REGION, TEMPLATE, CERT_DAYS = region, template, cert_days  # noqa: N806 (the f-string's names)
    cfg = f"""\
interval: 1s
timeout: 500ms
resolver:
  nameservers: ["127.0.0.1:{dns_port}"]
  nat64_prefixes: ["2001:db8:6464::/96"]
  nat64_discovery: true
discovery:
  cloudformation: {{ template: {json.dumps(TEMPLATE)}, region: {REGION} }}
targets:
  # passes on both families, IPv6 natively as asserted
  - name: dual
    host: dual.test
    port: {ports['http']}
    checks: [dns, tcp, http]
    expect: {{ via: {{ ipv6: native }} }}
  # asserts NAT64 but the name answers AAAA: DualprobeIPv6PathNotAsAsserted (via native)
  - name: gained-aaaa
    host: dual.test
    port: {ports['http']}
    checks: [dns, tcp]
    families: [ipv6]
    expect: {{ via: {{ ipv6: nat64 }} }}
  # an IPv4-only name: no AAAA by design (nodata), no alert
  - name: ipv4only
    host: aonly.test
    port: {ports['http']}
    checks: [dns, tcp, http]
    expect: {{ ipv4: reachable, ipv6: nodata }}
  # ipv4 passes, ipv6 has no AAAA (nodata): DualprobeIPv6PathDown
  - name: aonly
    host: aonly.test
    port: {ports['http']}
    checks: [dns, tcp, http]
  # the service listens on ::1 only, ipv4 is refused: DualprobeIPv4PathDown
  - name: v6only
    host: v6only.test
    port: {ports['v6only']}
    checks: [dns, tcp, http]
  # ipv4 is expected unreachable but is reachable: DualprobeUnexpectedlyReachable
  - name: opened
    host: dual.test
    port: {ports['http']}
    checks: [dns, tcp]
    expect: {{ ipv4: unreachable, ipv6: reachable }}
  # a test CA's certificate that expires in {CERT_DAYS} days: DualprobeCertificateExpiringSoon
  - name: tls
    host: tls.test
    port: {ports['tls']}
    checks: [dns, tcp, tls, http, pmtu]
    http: {{ scheme: https, path: / }}
    tls: {{ ca_file: {json.dumps(ca)}, server_name: tls.test }}
  # the happy-eyeballs race: IPv6 wins on a healthy dual-stack name
  - name: he
    host: dual.test
    port: {ports['http']}
    checks: [dns, happy_eyeballs]
  # IPv6 refused, IPv4 listening: IPv4 wins after the fallback, DualprobeIPv6MaskedByFallback
  - name: he-masked
    host: dual.test
    port: {ports['v4only']}
    checks: [dns, happy_eyeballs]
"""
    if nat64:
        cfg += f"""\
  # DNS64 address, through the stand-in translator, as asserted
  - name: nat64
    host: nat64.test
    port: {ports['http']}
    checks: [dns, tcp, http]
    expect: {{ via: {{ ipv6: nat64 }} }}
  # asserts native, but the name answers only a DNS64 address: DualprobeIPv6PathNotAsAsserted
  - name: lost-aaaa
    host: nat64.test
    port: {ports['http']}
    checks: [dns, tcp, http]
    families: [ipv6]
    expect: {{ via: {{ ipv6: native }} }}
"""
    return cfg


def config_b(dns_port: int, ports: dict, empty_template: str, closed: int, region: str,
             nat64: bool) -> str:
    """Task b: every family it probes fails (DualprobeFamilyDown for ipv4 and ipv6; with nat64,
    natdown's DNS64 address has no route: DualprobeNat64PathDown), one discovery finds nothing,
    the other fails (vpc_endpoints against a closed port on 127.0.0.1)."""
    REGION, empty = region, empty_template  # noqa: N806
    cfg = f"""\
interval: 1s
timeout: 500ms
resolver:
  nameservers: ["127.0.0.1:{dns_port}"]
discovery:
  cloudformation: {{ template: {json.dumps(empty)}, region: {REGION} }}
  vpc_endpoints: {{ vpc_id: vpc-0123456789abcdef0, region: {REGION}, dual_stack: false,
                   endpoint_url: "http://127.0.0.1:{closed}", refresh: 1m }}
targets:
  - name: aonly
    host: aonly.test
    port: {ports['http']}
    families: [ipv6]
    checks: [dns, tcp, http]
  - name: v6only
    host: v6only.test
    port: {ports['v6only']}
    families: [ipv4]
    checks: [dns, tcp, http]
"""
    if nat64:  # no route to its DNS64 address: DualprobeNat64PathDown
        cfg += f"""\
  - name: natdown
    host: natdown.test
    port: {ports['http']}
    families: [ipv6]
    checks: [dns, tcp, http]
    expect: {{ via: {{ ipv6: nat64 }} }}
"""
    return cfg
