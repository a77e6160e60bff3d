#!/usr/bin/env python3
"""The bench's TCP+HTTP peer, run as a child process by localnet.Env.

Listens on 127.0.0.1:Q and [::1]:Q (the same port on both families; it prints Q on stdout once
both listen; `peer.py ADDR4 ADDR6 [PORT]` listens there instead, e.g. 0.0.0.0 and :: in a bench
namespace), answers any request with "200 ok" and closes; a connection that sends nothing (a
bare `tcp` check) is just closed. Counts connections per family, served via GET /__stats.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys

from common import LOOP4, LOOP6


def peer_main(addr4: str = LOOP4, addr6: str = LOOP6, want_port: int = 0) -> None:
    stats = {"conn_ipv4": 0, "conn_ipv6": 0, "requests": 0, "no_request": 0}
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        stats["conn_ipv6" if peer and ":" in peer[0] else "conn_ipv4"] += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError, OSError):
            stats["no_request"] += 1
            writer.close()
            return
        if head.startswith(b"GET /__stats"):
            body = json.dumps(stats).encode()
            out = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                   b"Connection: close\r\n\r\n" % len(body)) + body
        else:
            stats["requests"] += 1
            out = resp
        try:
            writer.write(out)
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        writer.close()

    async def main() -> None:
        for _ in range(50):
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                for s in (s4, s6):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s6.bind((addr6, want_port))
                port = s6.getsockname()[1]
                s4.bind((addr4, port))
                break
            except OSError:
                s4.close()
                s6.close()
        else:
            raise SystemExit("peer: no free port")
        servers = [await asyncio.start_server(handle, sock=s, backlog=4096) for s in (s4, s6)]
        print(port, flush=True)
        await asyncio.gather(*(s.serve_forever() for s in servers))

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(main())


if __name__ == "__main__":
    a = sys.argv[1:]
    peer_main(*(a[:2] + [int(x) for x in a[2:3]]) if a else ())
