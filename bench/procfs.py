"""/proc readings of one process: CPU clock, RSS split by kind, PSS; a background memory sampler."""

from __future__ import annotations

import os
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

# /proc/PID/status: resident pages by kind. RssAnon is heap, stacks and other private memory the
# kernel can only swap (Fargate has no swap), so it is what a task's memory limit really holds;
# RssFile is mapped files (the binary), clean and reclaimable; RssShmem is shared memory.
STATUS_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")
# /proc/PID/smaps_rollup: the same pages, each divided by the number of processes mapping it.
ROLLUP_FIELDS = ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem")
MEM_FIELDS = STATUS_FIELDS + ROLLUP_FIELDS


def cpu_ns(pid: int) -> int:
    """CPU time (user+sys, all threads incl. exited ones) of `pid`, in ns."""
    # Linux encodes a process CPU clock as ((~pid) << 3) | CPUCLOCK_SCHED.
    return time.clock_gettime_ns(((~pid) << 3) | 2)


def stat_cpu_ns(pid: int) -> int:
    """utime+stime from /proc/PID/stat (USER_HZ granularity), in ns."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK


def _kb_fields(path: str, names: tuple) -> dict:
    out = {}
    with open(path) as f:
        for line in f:
            k, sep, v = line.partition(":")
            if sep and k in names:
                out[k] = int(v.split()[0]) * 1024
    return out


def mem(pid: int) -> dict:
    """VmRSS, VmHWM, RssAnon, RssFile and RssShmem of `pid` (/proc/PID/status), in bytes."""
    return _kb_fields(f"/proc/{pid}/status", STATUS_FIELDS)


def mem_full(pid: int) -> dict:
    """mem() plus Pss, Pss_Anon, Pss_File, Pss_Shmem from /proc/PID/smaps_rollup, in bytes.
    A field the kernel does not report (or that cannot be read) is missing from the dict."""
    out = mem(pid)
    try:
        out.update(_kb_fields(f"/proc/{pid}/smaps_rollup", ROLLUP_FIELDS))
    except OSError:
        pass  # needs ptrace-read access to the process; the report shows n/a
    return out


class CpuWindow:
    """CPU of one process between start() and stop()."""

    def start(self, pid: int) -> None:
        self.pid = pid
        self.t0 = time.monotonic()
        self.c0 = cpu_ns(pid)
        self.s0 = stat_cpu_ns(pid)

    def stop(self) -> dict:
        c1, s1, t1 = cpu_ns(self.pid), stat_cpu_ns(self.pid), time.monotonic()
        return {"cpu_ns": c1 - self.c0, "stat_cpu_ns": s1 - self.s0, "wall_s": t1 - self.t0}


class MemSampler:
    """Samples mem_full() of named pids in a thread: every `every` s, and every 2 ms while a
    burst is on (around a scrape, whose render buffer lives only for milliseconds)."""

    def __init__(self, pids: dict, every: float = 0.25) -> None:
        self.pids, self.every = pids, every
        self.peak: dict = {k: {} for k in pids}
        self.samples: dict = {k: [] for k in pids}  # slow samples only
        self._stopping = False
        self._bursting = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            try:
                m = mem_full(pid)
            except OSError:
                continue
            if not self._bursting:  # samples: the steady level between scrapes
                self.samples[name].append(m)
            peak = self.peak[name]
            for k, v in m.items():
                peak[k] = max(peak.get(k, 0), v)

    def _run(self) -> None:
        while not self._stopping:
            self._sample()
            self._wake.wait(0.002 if self._bursting else self.every)
            self._wake.clear()
        self._sample()

    def start(self) -> None:
        self._thread.start()

    def burst(self, on: bool) -> None:
        self._bursting = on
        self._wake.set()  # start the fast sampling now, not after the current slow wait

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(10)
