#!/usr/bin/env python3
"""End-to-end fault tests of dualprobe in a dual-stack "VPC" made of network namespaces.

    sudo tests/netns/run.py --bin target/release/dualprobe      (docs/netns-suite.md)

Two namespaces, named with this process's PID so runs never collide:
  task  the dualprobe binary; default routes for both families
  aws   the services: dnsmasq (the VPC resolver), HTTP/HTTPS listeners on both families,
        moto (S3, EC2) when installed
and three veth links between them:
  vpc   the VPC subnet: the resolver, and IPv4's default route (the VPC router)
  egw   the egress-only internet gateway: IPv6's default route, to the public IPv6 services
  pl    the PrivateLink path: IPv4 only, to the interface endpoints' addresses
Addresses come only from 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32, and an nftables guard
in each namespace counts (and drops) anything sent elsewhere. Nothing leaves the namespaces.

Each scenario applies one fault, asserts the per-family metrics the agent exports on /metrics
within two probe intervals, undoes the fault and asserts recovery. It prints one line of what it
saw; the last line is `N passed, M failed`. Exit status: 0 all passed, 1 a scenario failed (or the
topology could not be built: counted as one failure), 2 no binary at --bin. Without root, `ip netns`,
nft or dnsmasq it prints `SKIPPED: reason` and exits 0 (1 when the environment variable CI is set).
The topology is always torn down, also on failure, Ctrl-C or SIGTERM; logs are kept on failure.

Python 3 standard library only.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ next to the suite
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from promcheck import Prom  # noqa: E402
from scenarios import Scenarios  # noqa: E402
from topology import REPO, Suite, SuiteError, log  # noqa: E402


SCENARIOS = [
    (1, "healthy", "healthy"),
    (2, "ipv6-egress-route-removed", "v6_route_removed"),
    (3, "ipv6-blackholed", "v6_blackholed"),
    (4, "privatelink-ipv4-dropped", "privatelink_dropped"),
    (5, "aaaa-withdrawn", "aaaa_withdrawn"),
    (6, "dns-server-down", "dns_down"),
    (7, "ipv6-delay", "delay"),
    (8, "expectation-flip", "expectation_flip"),
    (9, "flapping", "flapping"),
    (10, "egress-guard", "guard"),
]


def skip(reason):
    log(f"SKIPPED: {reason}")
    sys.exit(1 if os.environ.get("CI") else 0)


def preflight(args):
    if os.geteuid() != 0:
        skip("the netns suite needs root (network namespaces, veth, nftables): run it with sudo")
    if shutil.which("ip") is None:
        skip("`ip` (iproute2) is not installed")
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if p.returncode != 0:
        skip(f"`ip netns` does not work here: {p.stderr.strip()}")
    missing = [t for t in ("nft", "dnsmasq") if shutil.which(t) is None]
    if missing:
        skip(f"{' and '.join(missing)} not installed (apt-get install nftables dnsmasq)")
    if not os.path.exists("/dev/net/tun"):
        log("NOTE: /dev/net/tun is missing: scenario 7 (delay) will fail")
    if not (os.path.isfile(args.bin) and os.access(args.bin, os.X_OK)):
        profile = "--release " if "release" in args.bin else ""
        log(f"error: no dualprobe binary at {args.bin}; build it with `cargo build {profile}--bin dualprobe` "
            f"(or pass --bin target/debug/dualprobe)")
        sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description="dualprobe end-to-end fault tests in network namespaces "
                                             "(docs/netns-suite.md)")
    ap.add_argument("--bin", default=os.path.join(REPO, "target/release/dualprobe"),
                    help="the dualprobe binary (default: target/release/dualprobe)")
    ap.add_argument("--quick", action="store_true", help="short flapping (30 s) and measuring windows")
    ap.add_argument("--flap-seconds", type=float, help="how long scenario 9 toggles faults (default 120, --quick 30)")
    ap.add_argument("--flap-step", type=float, default=4.0, help="seconds between fault toggles in scenario 9")
    ap.add_argument("--interval", type=int, default=2, help="probe interval, seconds (default 2)")
    ap.add_argument("--timeout", type=int, default=1, help="probe timeout, seconds (default 1)")
    ap.add_argument("--delay-ms", type=float, default=200.0, help="round-trip delay added in scenario 7")
    ap.add_argument("--delay-window", type=float, default=None,
                    help="intervals measured before/with the delay (default 4, --quick 3)")
    ap.add_argument("--deadline-margin", type=float, default=0.25,
                    help="how far past its timeout a blackholed check may end (seconds)")
    ap.add_argument("--fd-slack", type=int, default=4, help="open fds allowed above the start after flapping")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds to wait for the first healthy state")
    ap.add_argument("--only", help="comma-separated scenario numbers to run (1 always runs first)")
    ap.add_argument("--no-moto", action="store_true", help="leave out the moto (S3/EC2) targets")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, config) also on success")
    args = ap.parse_args()
    if args.flap_seconds is None:
        args.flap_seconds = 30.0 if args.quick else 120.0
    if args.delay_window is None:
        args.delay_window = 3 if args.quick else 4
    if not os.path.isabs(args.bin):
        args.bin = os.path.abspath(args.bin)
    preflight(args)

    wanted = None
    if args.only:
        wanted = {int(x) for x in args.only.split(",") if x.strip()} | {1}

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    # SIGINT too: a shell may start the suite with SIGINT ignored (a background job), and the
    # topology must go away however the run ends.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    suite = Suite(args)
    passed = failed = 0
    keep = args.keep
    started = time.monotonic()
    try:
        log(f"netns suite: binary {args.bin}, interval {args.interval}s, timeout {args.timeout}s, "
            f"namespaces {suite.ns_t} / {suite.ns_a}")
        suite.setup()
        log(f"topology up in {time.monotonic() - started:.1f}s: tls={'yes' if suite.tls else 'NO'}, "
            f"moto={'yes' if suite.moto else 'NO'}, targets: "
            + ", ".join(f"{t.name}[{'/'.join(t.families)}]" for t in suite.targets))
        # A real Prometheus in the task namespace: the alert expressions under each fault.
        prom = None
        if shutil.which("prometheus") or os.environ.get("CI"):
            prom = Prom(suite)
            prom.start()
            log(f"prometheus in {suite.ns_t} scrapes the agent; {len(prom.alerts)} alert expressions")
        else:
            log("NOTE: prometheus is not installed: the alert expressions are not evaluated")
        sc = Scenarios(suite, prom)
        for num, name, method in SCENARIOS:
            if wanted is not None and num not in wanted and num != 10:
                continue
            t0 = time.monotonic()
            try:
                ok, line = getattr(sc, method)()
            except SuiteError as e:
                ok, line = False, f"suite error: {e}"
            if not suite.procs["agent"].alive():
                ok, line = False, line + f"; AGENT EXITED with {suite.procs['agent'].p.returncode}"
            log(f"[{num}] {name}: {'PASS' if ok else 'FAIL'} ({time.monotonic() - t0:.0f}s): {line}")
            if ok:
                passed += 1
            else:
                failed += 1
                keep = True
            if not suite.procs["agent"].alive():
                break
    except SuiteError as e:
        log(f"error: the suite could not run: {e}")
        failed += 1
        keep = True
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'Ctrl-C'}): tearing down")
        failed += 1
        keep = True
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        suite.teardown(keep)
    log(f"suite took {time.monotonic() - started:.0f}s")
    log(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
