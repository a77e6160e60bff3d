#!/usr/bin/env python3
"""The fidelity scenario's reference: TCP connects to the delayed target timed by a process the
kernel runs ahead of everything else (fidelity.py starts it under `chrt -f`, where allowed), so
its figures are the path's own (delay relay included), not a loaded agent's.

usage: refprobe.py ADDR4 ADDR6 PORT EVERY_S SECONDS
Alternates the families, one connect every EVERY_S seconds for at most SECONDS; prints one line
per connect: `MONOTONIC_S FAMILY SECONDS` (SECONDS is -1 for a failed connect).
"""

from __future__ import annotations

import socket
import sys
import time


def main() -> None:
    a4, a6, port, every, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    start = time.monotonic()
    end, i = start + seconds, 0
    while time.monotonic() < end:
        fam, addr, name = ((socket.AF_INET, a4, "ipv4") if i % 2 == 0 else (socket.AF_INET6, a6, "ipv6"))
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(2.0)
        t0 = time.perf_counter()
        try:
            s.connect((addr, port))
            d = time.perf_counter() - t0
        except OSError:
            d = -1.0
        finally:
            s.close()
        print(f"{time.monotonic():.6f} {name} {d:.6f}", flush=True)
        i += 1
        time.sleep(max(0.0, start + i * every - time.monotonic()))


if __name__ == "__main__":
    main()
