#!/usr/bin/env python3
"""The "services" of the netns suite's `aws` namespace: HTTP and HTTPS listeners on both families.

Listens on the wildcard addresses (0.0.0.0 and [::], the IPv6 socket v6-only), so every service
address the suite puts on the namespace's loopback answers, including one added at run time.
GET /healthz answers 200 "ok", anything else 404. HTTP/1.1 keep-alive like a real server (idle
connections are closed after --idle seconds). TLS uses the certificate the suite made with the
openssl CLI; without --cert only plain HTTP runs.

Stdlib only. Bounded: --max-seconds of life, header size and per-connection request limits.
Stops on SIGTERM/SIGINT or when stdin closes (the suite holds the other end of a pipe).
"""
import argparse
import asyncio
import signal
import ssl
import sys

MAX_HEADER = 16 * 1024
MAX_REQUESTS_PER_CONN = 100


async def handle(reader, writer, idle):
    try:
        for _ in range(MAX_REQUESTS_PER_CONN):
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
            parts = line.split()
            path = parts[1] if len(parts) >= 2 else ""
            close = b"connection: close" in head.lower()
            if path.split("?", 1)[0] == "/healthz":
                status, body = "200 OK", b"ok\n"
            else:
                status, body = "404 Not Found", b"not found\n"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            if close:
                return
    except (ConnectionError, ssl.SSLError, OSError):
        return
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - closing a broken transport
            pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--http-port", type=int, default=80)
    ap.add_argument("--https-port", type=int, default=443)
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    args = ap.parse_args()

    def handler(r, w):
        return handle(r, w, args.idle)

    servers = [
        await asyncio.start_server(handler, host=["0.0.0.0", "::"], port=args.http_port,
                                   limit=MAX_HEADER, reuse_address=True)
    ]
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.cert, args.key)
        servers.append(
            await asyncio.start_server(handler, host=["0.0.0.0", "::"], port=args.https_port,
                                       ssl=ctx, limit=MAX_HEADER, reuse_address=True,
                                       ssl_handshake_timeout=5)
        )
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))

    def stdin_ready():
        try:
            data = sys.stdin.buffer.raw.read(4096)
        except OSError:
            data = b""
        if not data and not stop.done():
            stop.set_result(None)

    loop.add_reader(sys.stdin.fileno(), stdin_ready)
    print("ready", flush=True)
    try:
        await asyncio.wait_for(stop, args.max_seconds)
    except asyncio.TimeoutError:
        pass
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
