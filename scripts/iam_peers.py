"""Peers of scripts/check-iam.py: a throwaway CA, moto's server app on 127.0.0.1 and [::1]
sharing one state (moto_server binds one address; the IAM user must exist on both families),
logging each authorization decision moto makes, and dnsmasq answering the dual-stack endpoint
names with both loopback addresses. Nothing listens beyond loopback."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import threading
import time

REGION = "us-east-1"
S3_DUALSTACK = f"s3.dualstack.{REGION}.amazonaws.com"
EC2_DUALSTACK = f"ec2.{REGION}.api.aws"


class Fail(Exception):
    """A check failed; the message says what and where."""


def free_port_both() -> int:
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s4:
            s4.bind(("127.0.0.1", 0))
            port = s4.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                    s6.bind(("::1", port))
                    return port
            except OSError:
                continue
    raise Fail("no port free on both 127.0.0.1 and [::1]")


def make_pki(d: str) -> tuple[str, str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dualprobe IAM check CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, False, False, False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in (S3_DUALSTACK, EC2_DUALSTACK, "localhost")]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, S3_DUALSTACK)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = [os.path.join(d, n) for n in ("ca.pem", "server.pem", "server-key.pem")]
    for p, data in zip(paths, (ca.public_bytes(serialization.Encoding.PEM),
                               cert.public_bytes(serialization.Encoding.PEM),
                               key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))):
        with open(p, "wb") as f:
            f.write(data)
    return paths[0], paths[1], paths[2]


def serve_moto(cert: str, key: str, port: int, log_path: str) -> None:
    """(Child process) moto's server app on 127.0.0.1 and [::1], one backend state, logging
    every authorization decision moto makes (the IAM action it computed, allowed or not)."""
    from moto.iam import access_control
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    local = threading.local()
    lock = threading.Lock()
    log = open(log_path, "a", encoding="utf-8")
    original = access_control.IAMRequestBase.check_action_permitted

    def logged(self, resource):
        entry = {"action": self._action, "key": getattr(self._access_key, "_access_key_id", ""),
                 "remote": getattr(local, "remote", ""), "allowed": False}
        try:
            original(self, resource)
            entry["allowed"] = True
        finally:
            with lock:
                log.write(json.dumps(entry) + "\n")
                log.flush()

    access_control.IAMRequestBase.check_action_permitted = logged
    app = DomainDispatcherApplication(create_backend_app)

    def remembering(environ, start_response):
        local.remote = environ.get("REMOTE_ADDR", "")
        return app(environ, start_response)

    servers = [make_server(h, port, remembering, threaded=True, ssl_context=(cert, key))
               for h in ("127.0.0.1", "::1")]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    servers[0].serve_forever()


class Proc:
    def __init__(self, name: str, cmd: list[str], log: str, env: dict | None = None,
                 stdout=None):
        self.name, self.log = name, log
        self.err = open(log, "wb")
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                  stdout=stdout if stdout is not None else self.err,
                                  stderr=self.err, env=env)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.err.close()

    def tail(self) -> str:
        with open(self.log, "rb") as f:
            return f.read()[-3000:].decode(errors="replace")


def wait_tcp(host: str, port: int, proc: Proc, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.p.poll() is not None:
            raise Fail(f"{proc.name} exited with {proc.p.returncode}:\n{proc.tail()}")
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise Fail(f"{proc.name} did not listen on [{host}]:{port} within {seconds} s")


def start_dnsmasq(work: str) -> tuple[Proc, int]:
    if not shutil.which("dnsmasq"):
        raise Fail("dnsmasq not found: apt-get install dnsmasq-base (scripts/install-test-deps.sh)")
    for _ in range(8):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--pid-file=",
               "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}",
               "--local=/amazonaws.com/", "--local=/api.aws/", "--log-facility=-"]
        for name in (S3_DUALSTACK, EC2_DUALSTACK):
            cmd += [f"--address=/{name}/127.0.0.1", f"--address=/{name}/::1"]
        p = Proc("dnsmasq", cmd, os.path.join(work, "dnsmasq.log"))
        time.sleep(0.3)
        if p.p.poll() is None:
            return p, port
        p.stop()
    raise Fail(f"dnsmasq did not start:\n{p.tail()}")
