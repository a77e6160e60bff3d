#!/usr/bin/env python3
"""A user-space delaying link between two network namespaces (this kernel has no netem).

It opens one TUN device in each namespace (IFF_TUN | IFF_NO_PI: whole IP packets, no link
layer) and copies every packet read from one to the other after `--delay-ms` milliseconds. Routes
sending a family's traffic into the TUN devices (set up by the suite once this prints `ready`)
make that family's path slower by the delay in each direction: a TCP connect, one round trip,
then takes 2 x delay longer. The devices vanish when this process exits, and so do their routes.

Stdlib only. Bounded: at most --max-queue packets in flight (more are dropped and counted) and
at most --max-seconds of life. Stops on SIGTERM/SIGINT or when stdin closes.
"""
import argparse
import ctypes
import fcntl
import heapq
import os
import select
import signal
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

_libc = ctypes.CDLL(None, use_errno=True)


def setns(name):
    """Moves this (single-threaded) process into the named network namespace."""
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tun(ns, dev):
    """A TUN device named `dev` created in namespace `ns`; returns its non-blocking fd."""
    setns(ns)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    ifr = struct.pack("16sH22x", dev.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


class Stop(Exception):
    """Raised by the signal handler, so a blocking select() ends at once."""


def relay(queue, peer, watch, delay, end, stop, max_queue, counts):
    seq = 0
    while not stop and time.monotonic() < end:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, pkt = heapq.heappop(queue)
            try:
                os.write(out, pkt)
                counts["relayed"] += 1
            except OSError:
                counts["dropped"] += 1
        wait = min(1.0, max(0.0, queue[0][0] - now)) if queue else 1.0
        try:
            readable, _, _ = select.select(watch, [], [], wait)
        except InterruptedError:
            continue
        got = time.monotonic()
        for fd in readable:
            if fd == sys.stdin.fileno():
                if not os.read(fd, 4096):
                    stop.append(1)
                continue
            for _ in range(64):  # drain, bounded
                try:
                    pkt = os.read(fd, 65535)
                except BlockingIOError:
                    break
                if len(queue) >= max_queue:
                    counts["dropped"] += 1
                    continue
                seq += 1
                heapq.heappush(queue, (got + delay, seq, peer[fd], pkt))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns-a", required=True)
    ap.add_argument("--dev-a", required=True)
    ap.add_argument("--ns-b", required=True)
    ap.add_argument("--dev-b", required=True)
    ap.add_argument("--delay-ms", type=float, required=True, help="added delay per direction")
    ap.add_argument("--max-queue", type=int, default=4096)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--ignore-stdin", action="store_true", help="do not stop when stdin closes")
    args = ap.parse_args()

    fd_a = open_tun(args.ns_a, args.dev_a)
    fd_b = open_tun(args.ns_b, args.dev_b)
    peer = {fd_a: fd_b, fd_b: fd_a}
    delay = args.delay_ms / 1000.0
    stop = []

    def on_signal(*_):
        stop.append(1)
        raise Stop()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("ready", flush=True)

    queue = []  # (due, seq, out_fd, packet)
    counts = {"relayed": 0, "dropped": 0}
    end = time.monotonic() + args.max_seconds
    watch = [fd_a, fd_b] + ([] if args.ignore_stdin else [sys.stdin.fileno()])
    try:
        relay(queue, peer, watch, delay, end, stop, args.max_queue, counts)
    except Stop:
        pass
    print(f"relay stopped: {counts['relayed']} packets relayed, {counts['dropped']} dropped", flush=True)


if __name__ == "__main__":
    main()
