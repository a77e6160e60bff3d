#!/usr/bin/env python3
"""Regenerates scripts/symbol-order.txt: the functions dualprobe runs, in the order the release
link should place them (scripts/link-with-symbol-order.sh).

Why: the kernel maps a binary's code in 64 KiB (or whole large-folio) windows, so an idle
agent's RSS follows how spread out the code it ran is, not how much of it ran. Startup, the
idle loop and one scrape run about 1 MB of functions, spread over 9.4 MB of code: the agent
mapped 6.7 MiB of its file; with those functions placed together, 2.6 MiB (docs/benchmarks.md,
"Code layout").

How: an unstripped release binary (`DUALPROBE_UNSTRIPPED=1 scripts/build-release.sh`, the
same code as the shipped one) runs under valgrind's callgrind against local peers only: the
bench's dnsmasq and HTTP server (bench/run.py), an HTTPS server, and moto for the S3 and EC2
APIs behind the real dual-stack endpoint names, all on 127.0.0.1 and [::1]. In phases:
  1. idle         start with no targets and serve one /metrics scrape (the bench's idle RSS)
  2. probes       reload to targets that use every check (dns, tcp, tls, http, s3, ec2; passing
                  and failing), scrape both formats, one ad-hoc /probe, the status page
  3. exit         SIGTERM
  4. healthcheck  `dualprobe healthcheck`, the container HealthCheck's process
Each phase's functions follow the ones before, so what an idle agent runs comes first.

Needs valgrind, dnsmasq, openssl and moto_server (scripts/install-test-deps.sh installs all but
valgrind). Run it after changing dependencies or the toolchain; build-release.sh says when the
file has gone stale:
    python3 bench/symbol_order.py     # builds, profiles (~1 min), writes scripts/symbol-order.txt
"""

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (bench/run.py: dnsmasq, the HTTP peer, helpers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "scripts", "symbol-order.txt")
VALGRIND_START_S = 120  # callgrind runs the agent ~50x slower
S3_DUALSTACK, EC2_DUALSTACK = "s3.dualstack.us-east-1.amazonaws.com", "ec2.us-east-1.api.aws"


def build_unstripped() -> str:
    env = dict(os.environ, DUALPROBE_UNSTRIPPED="1")
    env.pop("CI", None)  # a stale ordering file must not stop the build that replaces it
    out = subprocess.run([os.path.join(ROOT, "scripts", "build-release.sh")], cwd=ROOT, env=env,
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return os.path.join(ROOT, out.strip().splitlines()[-1])


class TlsPeer:
    """HTTPS on 127.0.0.1 and [::1] (one port) for t1.bench.test, with a certificate from its own
    CA that also names the AWS dual-stack endpoints (moto serves with it)."""

    def __init__(self, workdir: str) -> None:
        self.ca = os.path.join(workdir, "ca.pem")
        ca_key = os.path.join(workdir, "ca.key")
        self.cert, self.key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
        sans = ",".join(f"DNS:{n}" for n in ("t1.bench.test", S3_DUALSTACK, EC2_DUALSTACK))
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"]
        for cmd in (["-keyout", ca_key, "-out", self.ca, "-subj", "/CN=dualprobe profile CA"],
                    ["-CA", self.ca, "-CAkey", ca_key, "-keyout", self.key, "-out", self.cert,
                     "-subj", "/CN=t1.bench.test", "-addext", f"subjectAltName={sans}",
                     "-addext", "basicConstraints=critical,CA:FALSE"]):
            subprocess.run(["openssl", "req", "-x509", *ec, *cmd], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(self.cert, self.key)
        self.port = bench.dual_port()
        self.socks = []
        for fam, host in ((socket.AF_INET, bench.LOOP4), (socket.AF_INET6, bench.LOOP6)):
            s = socket.socket(fam, socket.SOCK_STREAM)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, self.port))
            s.listen(64)
            self.socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


def start_moto(env, tls: TlsPeer) -> int:
    """moto (S3 and EC2 APIs) over HTTPS on 127.0.0.1 and [::1], one port; the AWS dual-stack
    endpoint names resolve to them through the bench's dnsmasq."""
    port = bench.dual_port()
    for host in (bench.LOOP4, bench.LOOP6):
        env.procs.start("moto", ["moto_server", "-H", host, "-p", str(port), "-c", tls.cert, "-k", tls.key],
                        env.path(f"moto-{host}.log"),
                        env=dict(os.environ, S3_IGNORE_SUBDOMAIN_BUCKETNAME="true",
                                 AWS_EC2_METADATA_DISABLED="true"))
    with open(env.path("hosts"), "a") as f:
        for name in (S3_DUALSTACK, EC2_DUALSTACK):
            f.write(f"{bench.LOOP4} {name}\n{bench.LOOP6} {name}\n")
    env.dnsmasq.send_signal(signal.SIGHUP)  # re-reads its hosts file
    end = time.monotonic() + 60
    for host in (bench.LOOP4, bench.LOOP6):
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise RuntimeError(f"moto on [{host}]:{port} did not listen (see moto-*.log)")
                time.sleep(0.5)
    return port


def probes_config(env, tls: TlsPeer, moto_port: int, port: int) -> str:
    q, t = env.peer_port, tls.port
    refused = bench.dual_port()  # bound and closed again: nothing listens there
    text = f"""listen: "{bench.LOOP4}:{port}"
interval: 3s
timeout: 2s
families: [ipv4, ipv6]
resolver:
  nameservers: ["{bench.LOOP4}:{env.dns_port}", "[{bench.LOOP6}]:{env.dns_port}"]
probe: {{allow: ["*.bench.test"]}}
targets:
  - {{name: chain, host: t0.bench.test, port: {q}, checks: [dns, tcp, http], http: {{path: /health}}}}
  - name: tls
    host: t1.bench.test
    port: {t}
    checks: [dns, tcp, tls, http]
    tls: {{ca_file: "{tls.ca}"}}
  - {{name: literal4, host: "{bench.LOOP4}", port: {q}, checks: [tcp, http], families: [ipv4]}}
  - {{name: nxdomain, host: nx.bench.test, port: {q}, checks: [dns, tcp]}}
  - {{name: refused, host: t2.bench.test, port: {refused}, checks: [dns, tcp, http],
      expect: {{ipv4: unreachable, ipv6: any}}}}
"""
    for service in ("s3", "ec2"):  # through the real dual-stack endpoint names, to moto
        text += f"""  - name: {service}
    aws: {{service: {service}, region: us-east-1}}
    port: {moto_port}
    checks: [dns, tcp, tls, {service}]
    tls: {{ca_file: "{tls.ca}"}}
    interval: 20s
    timeout: 15s
"""
    path = env.path("profile-probes.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def functions(path: str) -> list[str]:
    """Function names callgrind saw run, in file order, without its recursion marks ('2)."""
    out, seen = [], set()
    with open(path, errors="replace") as f:
        for line in f:
            if not line.startswith("fn="):
                continue
            name = re.sub(r"^\(\d+\)\s*", "", line[3:].strip())
            name = re.sub(r"'\d+$", "", name)
            if not name or name.startswith("0x") or name.startswith("(") or name in seen:
                continue
            seen.add(name)
            out.append(name)
    return out


def post(port: int, path: str):
    """POST over loopback; (status, body)."""
    c = http.client.HTTPConnection(bench.LOOP4, port, timeout=60)
    try:
        c.request("POST", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_reported(port: int, last_checks: dict[str, tuple[str, int]], seconds: float) -> None:
    """Until each target's last check has a result on each of its families:
    `last_checks` = {target: (check, number of families)}."""
    end = time.monotonic() + seconds
    while True:
        _, body = bench.http_get(port, "/metrics", timeout=30)
        seen: dict[tuple[str, str], set] = {}
        for line in body.decode().splitlines():
            if line.startswith("dualprobe_probe_success{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                seen.setdefault((labels.get("target"), labels.get("check")), set()).add(labels.get("family"))
        missing = [t for t, (check, n) in last_checks.items() if len(seen.get((t, check), ())) < n]
        if not missing:
            return
        if time.monotonic() > end:
            raise RuntimeError(f"no results within {seconds:.0f}s for {missing}")
        time.sleep(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="an unstripped release binary (default: build one)")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--keep", action="store_true", help="keep the workdir (callgrind output, logs)")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "dnsmasq", "openssl", "moto_server"):
        if not shutil.which(tool):
            ap.error(f"{tool} not found (apt-get install valgrind dnsmasq-base openssl; "
                     "pip install 'moto[server]')")
    binary = os.path.abspath(args.bin) if args.bin else build_unstripped()
    if b".symtab" not in subprocess.run(["readelf", "-S", binary], capture_output=True).stdout:
        ap.error(f"{binary} has no symbol table (build it with DUALPROBE_UNSTRIPPED=1)")

    env = bench.Env(argparse.Namespace(keep=args.keep, nameservers=2, taskset=None, bin=binary))
    cg = os.path.join(env.dir, "callgrind.out")
    try:
        env.start_peers(3)
        tls = TlsPeer(env.dir)
        moto_port = start_moto(env, tls)
        port = bench.free_port4()
        idle = bench.dualprobe_config(env, "idle", 0, 15, 2, port)
        # The AWS checks' credentials: moto takes any; nothing asks the metadata endpoints.
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                          AWS_EC2_METADATA_DISABLED="true")
        agent = env.procs.start("dualprobe", [
            "valgrind", "--tool=callgrind", "--demangle=no", "--compress-strings=no",
            f"--callgrind-out-file={cg}", binary, "run", "--config", idle,
            "--listen", f"{bench.LOOP4}:{port}"], env.path("agent.log"))

        bench.log("phase 1: start and one scrape, no targets")
        bench.wait_http(port, "/-/healthy", VALGRIND_START_S, agent)
        bench.wait_http(port, "/metrics", 30, agent)
        subprocess.run(["callgrind_control", "--dump=idle", str(agent.pid)], check=True,
                       stdout=subprocess.DEVNULL)

        bench.log("phase 2: reload to probing targets; scrapes; /probe")
        shutil.copy(probes_config(env, tls, moto_port, port), idle)
        status, body = post(port, "/-/reload")
        if status != 200:
            raise RuntimeError(f"reload: {status} {body!r}")
        wait_reported(port, {"chain": ("http", 2), "tls": ("http", 2), "literal4": ("http", 1),
                             "nxdomain": ("tcp", 2), "refused": ("http", 2), "s3": ("s3", 2),
                             "ec2": ("ec2", 2)}, 120)
        time.sleep(5)  # more cycles, so repeated probes and state changes are seen
        for path, headers in (("/metrics", bench.OPENMETRICS), ("/metrics", None), ("/", None),
                              (f"/probe?target=t0.bench.test:{env.peer_port}&check=dns&check=tcp", None)):
            status, body = bench.http_get(port, path, timeout=30, headers=headers)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
        subprocess.run(["callgrind_control", "--dump=probes", str(agent.pid)], check=True,
                       stdout=subprocess.DEVNULL)

        bench.log("phase 3: healthcheck process, then SIGTERM")
        subprocess.run(["valgrind", "--tool=callgrind", "--demangle=no", "--compress-strings=no",
                        f"--callgrind-out-file={cg}.healthcheck", binary, "healthcheck",
                        "--url", f"http://{bench.LOOP4}:{port}/-/healthy"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=120)

        order, seen = [], set()
        for part in (f"{cg}.1", f"{cg}.2", cg, f"{cg}.healthcheck"):
            names = [n for n in functions(part) if n not in seen]
            seen.update(names)
            order += names
            bench.log(f"{os.path.basename(part)}: {len(names)} more functions")
        with open(args.out, "w") as f:
            f.write("# Functions in the order the release link places them; written by\n"
                    "# bench/symbol_order.py (how and why there). Do not edit by hand.\n")
            f.write("\n".join(order) + "\n")
        bench.log(f"wrote {len(order)} names to {os.path.relpath(args.out, ROOT)}")
        return 0
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
