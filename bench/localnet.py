"""The bench's local network: a workdir, dnsmasq and the TCP+HTTP peer (peer.py), loopback only.

dnsmasq listens on 127.0.0.1:P and [::1]:P and answers A (127.0.0.1) and AAAA (::1) for
t0..t{N-1}.bench.test from an --addn-hosts file, with --cache-size=0 (hosts entries are answered
from dnsmasq's own table either way; its answer cache is simply off) and no upstream.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from common import LOOP4, LOOP6, Procs, dual_port, http_get, log

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer.py")


class Env:
    def __init__(self, args) -> None:
        self.args = args
        self.procs = Procs()
        self.dir = tempfile.mkdtemp(prefix="dualprobe-bench-")
        os.chmod(self.dir, 0o755)  # dnsmasq drops privileges and must read the hosts file
        self.names = 0
        self.dns_port = 0
        self.peer_port = 0
        self.dnsmasq = None
        self.peer = None

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def start_peers(self, names: int) -> None:
        hosts = self.path("hosts")
        with open(hosts, "w") as f:
            for i in range(names):
                f.write(f"{LOOP4} t{i}.bench.test\n{LOOP6} t{i}.bench.test\n")
        os.chmod(hosts, 0o644)
        self.names = names
        for attempt in range(5):
            self.dns_port = dual_port(socket.SOCK_DGRAM)
            self.dnsmasq = self.procs.start("dnsmasq", [
                "dnsmasq", "--no-daemon", f"--port={self.dns_port}",
                f"--listen-address={LOOP4},{LOOP6}", "--bind-interfaces", "--no-resolv",
                "--no-hosts", f"--addn-hosts={hosts}", "--cache-size=0", "--pid-file=",
                f"--log-facility={self.path('dnsmasq.log')}",
            ], self.path("dnsmasq.out"))
            if self._dns_ok():
                break
            self.procs.stop(self.dnsmasq)
        else:
            raise RuntimeError("dnsmasq did not start (see dnsmasq.out)")
        self.peer = self.procs.start("peer", [sys.executable, "-B", PEER],
                                     self.path("peer.log"), stdout=subprocess.PIPE)
        line = self.peer.stdout.readline().strip()
        if not line:
            raise RuntimeError("peer did not start (see peer.log)")
        self.peer_port = int(line)
        log(f"peers: dnsmasq :{self.dns_port} ({names} names), tcp/http :{self.peer_port} "
            f"on {LOOP4} and [{LOOP6}]; workdir {self.dir}")

    def _dns_ok(self) -> bool:
        q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02t0\x05bench\x04test\x00\x00\x01\x00\x01"
        for _ in range(30):
            if self.dnsmasq.poll() is not None:
                return False
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.2)
                try:
                    s.sendto(q, (LOOP4, self.dns_port))
                    d = s.recv(512)
                    if d[:2] == b"\x12\x34" and d[3] & 15 == 0 and d[7] >= 1:
                        return True
                except OSError:
                    pass
            time.sleep(0.1)
        return False

    def dns_queries(self) -> tuple:
        """(total queries dnsmasq answered, when asked): SIGUSR1 makes it log its statistics."""
        if not self.dnsmasq or self.dnsmasq.poll() is not None:
            return None, None
        logf = self.path("dnsmasq.log")
        size = os.path.getsize(logf) if os.path.exists(logf) else 0
        t = time.monotonic()
        os.kill(self.dnsmasq.pid, signal.SIGUSR1)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            time.sleep(0.1)
            with open(logf, errors="replace") as f:
                f.seek(size)
                m = re.findall(r"queries answered locally (\d+)", f.read())
            if m:
                return int(m[-1]), t
        return None, None

    def peer_stats(self) -> dict:
        try:
            t = time.monotonic()
            _, body = http_get(self.peer_port, "/__stats")
            return {**json.loads(body), "t": t}
        except Exception:
            return {}

    def close(self) -> None:
        self.procs.stop_all()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            log(f"kept {self.dir}")
