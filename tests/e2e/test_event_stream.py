"""The live event stream against a real server, over raw sockets: a reader that stops
reading costs bounded memory and still gets every event once it reads again; a reader that
leaves is gone at once; a reconnecting reader resumes from Last-Event-ID."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable

import httpx

from tests.conftest import ServerProcess, wait_until
from tests.e2e.test_connections import MiB, rss_bytes

MakeServer = Callable[..., ServerProcess]
BATCHES = 15  # of 10,000 tasks: 150,000 events
IDS = re.compile(rb"^id: (\d+)$", re.MULTILINE)


def open_stream(server: ServerProcess, query: str = "", headers: str = "") -> socket.socket:
    """A stream whose reader reads nothing more once it is live (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(
        f"GET /v1/events/stream{query} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {server.token}\r\n{headers}\r\n".encode()
    )
    got = b""
    while b": live" not in got:
        chunk = sock.recv(4096)
        assert chunk, got
        got += chunk
    return sock


def submit_batches(server: ServerProcess) -> int:
    """BATCHES bulk submits; the last seq."""
    with server.client(timeout_s=120) as client:
        for b in range(BATCHES):
            tasks = [{"command": f"echo {b}-{i}"} for i in range(10_000)]
            client.post("/v1/tasks", {"tasks": tasks})
        return int(client.get("/v1/stats")["last_seq"])


def last_seq_of(server: ServerProcess) -> int:
    with server.client() as client:
        return int(client.get("/v1/stats")["last_seq"])


def streams_open(server: ServerProcess) -> int:
    headers = {"Authorization": f"Bearer {server.token}"}
    text = httpx.get(f"{server.url}/metrics", headers=headers, timeout=10).text
    found = re.search(r"^kickoff_event_streams (\d+)$", text, re.MULTILINE)
    assert found is not None, text
    return int(found.group(1))


def test_a_stalled_reader_costs_bounded_memory_and_misses_nothing(
    make_server: MakeServer,
) -> None:
    """150,000 events with a reader that does not read, beside the same without one: the
    memory differs by little; once it reads, it gets every seq once, in order."""
    alone, watched = make_server(), make_server()
    start_seq = last_seq_of(watched)
    with open_stream(watched) as stalled:
        grown = {}
        for server in (alone, watched):
            before = rss_bytes(server)
            submit_batches(server)
            grown[server.port] = rss_bytes(server) - before
        assert grown[watched.port] - grown[alone.port] < 24 * MiB, grown
        last_seq = last_seq_of(watched)
        seen: list[int] = []
        data = b""
        while not seen or seen[-1] < last_seq:
            chunk = stalled.recv(1 << 20)
            assert chunk, seen[-1:]
            data += chunk
            cut = data.rfind(b"\n\n") + 2
            seen += [int(n) for n in IDS.findall(data[:cut])]
            data = data[cut:]
    assert seen == list(range(start_seq + 1, last_seq + 1))


def test_a_reader_that_leaves_is_gone_at_once(server: ServerProcess) -> None:
    """It left with a backlog of 150,000 events: its stream ends, not drains."""
    with open_stream(server):
        assert streams_open(server) == 1
        submit_batches(server)
    wait_until(lambda: streams_open(server) == 0, timeout=5, what="the stream to end")


def test_a_reconnecting_reader_resumes_from_last_event_id(server: ServerProcess) -> None:
    """What an EventSource sends when it reconnects: the id of the last event it saw."""
    with server.client() as client:
        client.post("/v1/tasks", {"tasks": [{"command": "true"}] * 3})
        seq = int(client.get("/v1/stats")["last_seq"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"GET /v1/events/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {seq - 2}\r\n"
            f"Authorization: Bearer {server.token}\r\n\r\n".encode()
        )
        got = b""
        while b": live" not in got:
            chunk = sock.recv(4096)
            assert chunk, got
            got += chunk
    assert [int(n) for n in IDS.findall(got)] == [seq - 1, seq]
