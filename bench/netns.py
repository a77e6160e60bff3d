"""Network namespaces for the bench's root-only scenarios (`fidelity`, `newkinds`): create them,
link them with veth pairs, enter one from this process, read a link's byte counters, remove them.

The namespaces have no link to the host's namespace, so nothing a scenario sends can leave them;
inside, only documentation prefixes are used (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
2001:db8::/32). Names are `dpb<PID>-<role>`; namespaces of a run whose PID is gone are removed
first with the netns suite's own cleanup (tests/netns/topology.py), which this module reuses
together with its `setns` and `run`.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import re
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _suite_topology():
    """tests/netns/topology.py, loaded by path: putting tests/netns on sys.path would shadow the
    bench's own modules (both have a `scenarios`)."""
    path = os.path.join(os.path.dirname(HERE), "tests", "netns", "topology.py")
    spec = importlib.util.spec_from_file_location("netns_suite_topology", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


_topo = _suite_topology()
remove_stale_namespaces, run, setns = _topo.remove_stale_namespaces, _topo.run, _topo.setns

STALE = re.compile(r"^dpb(\d+)-")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def available() -> str | None:
    """None when the netns scenarios can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root: network namespaces"
    for tool in ("ip",):
        if not any(os.access(os.path.join(d, tool), os.X_OK) for d in os.environ.get("PATH", "").split(":")):
            return f"needs `{tool}`"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun: the delay relay"
    return None


class Netns:
    """A set of namespaces `dpb<PID>-<role>`, lo up and no duplicate address detection in each
    (a tentative address holds neighbour discovery back for about two seconds)."""

    def __init__(self, roles: list[str]) -> None:
        remove_stale_namespaces(STALE)
        self.prefix = f"dpb{os.getpid()}"
        self.roles: list[str] = []
        try:
            for r in roles:
                run(["ip", "netns", "add", self.name(r)])
                self.roles.append(r)
                self.ip(r, "link", "set", "lo", "up")
                self.sysctl(r, "net.ipv6.conf.all.accept_dad", "0")
                self.sysctl(r, "net.ipv6.conf.default.accept_dad", "0")
        except Exception:
            self.close()
            raise

    def name(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def ip(self, role: str, *args: str) -> str:
        return run(["ip", "-n", self.name(role), *args])

    def sysctl(self, role: str, key: str, value: str) -> None:
        run(["ip", "netns", "exec", self.name(role), "sysctl", "-qw", f"{key}={value}"])

    def argv(self, role: str, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace (for a child process)."""
        return ["ip", "netns", "exec", self.name(role), *argv]

    def veth(self, a: str, dev_a: str, b: str, dev_b: str, addrs_a: list[str], addrs_b: list[str],
             mtu: int = 1500) -> None:
        """A veth pair between namespaces a and b, up, with the given CIDR addresses."""
        run(["ip", "link", "add", dev_a, "netns", self.name(a), "type", "veth", "peer", "name", dev_b,
             "netns", self.name(b)])
        for role, dev, addrs in ((a, dev_a, addrs_a), (b, dev_b, addrs_b)):
            self.ip(role, "link", "set", dev, "mtu", str(mtu), "up")
            for cidr in addrs:
                self.ip(role, "addr", "add", cidr, "dev", dev, *(["nodad"] if ":" in cidr else []))

    def link_bytes(self, role: str, dev: str) -> dict:
        """{"tx": bytes, "rx": bytes, "tx_packets": n} of one link, from the kernel's counters."""
        st = json.loads(self.ip(role, "-s", "-j", "link", "show", "dev", dev))[0]["stats64"]
        return {"tx": st["tx"]["bytes"], "rx": st["rx"]["bytes"], "tx_packets": st["tx"]["packets"]}

    @contextlib.contextmanager
    def entered(self, role: str):
        """This thread in the namespace for the block: the sockets it opens, the threads it starts
        and the child processes it spawns there live in that namespace (loopback included)."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            setns(self.name(role))
            try:
                yield
            finally:
                if _libc.setns(home, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns(back home): {os.strerror(err)}")
        finally:
            os.close(home)

    def close(self) -> None:
        """Kills what still runs in the namespaces, then deletes them."""
        for r in reversed(self.roles):
            ns = self.name(r)
            for pid in run(["ip", "netns", "pids", ns], check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", ns], check=False)
        self.roles = []
