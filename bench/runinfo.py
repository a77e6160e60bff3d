"""What a bench run was (binary, tree, machine, command) and the --report file: stdout is copied
as it is printed (Tee), then summary.markdown() turns the table, this and the copy into the
markdown section for docs/benchmarks.md."""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import subprocess
import sys
import time

import summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Tee(io.TextIOBase):
    """Replaces sys.stdout: writes through and keeps a copy."""

    def __init__(self) -> None:
        self.out = sys.stdout
        self.buf = io.StringIO()
        sys.stdout = self

    def write(self, s: str) -> int:
        self.buf.write(s)
        return self.out.write(s)

    def flush(self) -> None:
        self.out.flush()

    def text(self) -> str:
        return self.buf.getvalue()

    def close(self) -> None:
        if sys.stdout is self:
            sys.stdout = self.out


def _cmd(argv: list, cwd: str | None = None) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=cwd).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _version(binary: str) -> str:
    """First line of `BINARY --version` (blackbox_exporter prints it on stderr)."""
    try:
        p = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return ((p.stdout or p.stderr).strip().splitlines() or ["?"])[0]


def meta(results: dict, args) -> dict:
    h = hashlib.sha256()
    with open(args.bin, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    head = _cmd(["git", "rev-parse", "--short", "HEAD"], REPO)
    dirty = _cmd(["git", "status", "--porcelain", "--untracked-files=no"], REPO)
    argv = [os.path.relpath(sys.argv[0], os.getcwd())] + sys.argv[1:]
    return {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "version": _cmd([args.bin, "--version"]) or "?", "bin": args.bin, "sha256": h.hexdigest(),
            "blackbox": _version(args.blackbox),
            "git": (head + (" (uncommitted changes)" if dirty else "")) if head else "?",
            "command": "python3 " + shlex.join(argv), "cpus": os.cpu_count(),
            "load_start": results["machine"]["loadavg_start"][0],
            "load_end": results["machine"]["loadavg_end"][0], "elapsed_s": results.get("elapsed_s", 0)}


def write_report(path: str, rows: list, results: dict, raw: str, args) -> None:
    text = summary.markdown(rows, meta(results, args), raw)
    with open(path, "w") as f:
        f.write(text)
