"""A small raw HTTP/1.1 load generator for the benchmarks (asyncio streams, keep-alive).

httpx costs more CPU per request than the server under test on a 2-core machine; this
client only writes prepared bytes and reads a Content-Length body.
"""

from __future__ import annotations

import asyncio
import time


def request_bytes(method: str, path: str, body: bytes, token: str, host: str) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        return await read_response(self.reader)

    def close(self) -> None:
        self.writer.close()


async def hammer(
    host: str, port: int, raw: bytes, *, clients: int, seconds: float
) -> tuple[int, float, list[float]]:
    """`clients` connections sending `raw` back to back for `seconds`.

    Returns (successful requests, elapsed seconds, per-request latencies).
    """
    conns = [await Connection(host, port).open() for _ in range(clients)]
    latencies: list[float] = []
    ok = 0
    deadline = time.perf_counter() + seconds

    async def loop(conn: Connection) -> None:
        nonlocal ok
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status, _ = await conn.send(raw)
            latencies.append(time.perf_counter() - started)
            if status < 300:
                ok += 1
            else:
                raise RuntimeError(f"HTTP {status}")

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return ok, elapsed, latencies
