"""What a peer can do before authenticating, against a real server over raw sockets: huge
or countless headers, idle and slow connections, more connections than descriptors."""

from __future__ import annotations

import contextlib
import re
import resource
import select
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from kickoff import defaults
from tests.conftest import ServerProcess, free_port, kickoff_cmd, wait_until

MakeServer = Callable[..., ServerProcess]
MiB = 1024 * 1024


def rss_bytes(server: ServerProcess) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    kib = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert kib is not None
    return int(kib.group(1)) * 1024


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def send_until_answered(sock: socket.socket, head: bytes, piece: bytes, most: int) -> bytes:
    """Send `head`, then `piece` again and again (up to `most` bytes), stopping as soon as
    the server answers or closes; then the answer."""
    sock.sendall(head)
    sent = 0
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        while sent < most and not select.select([sock], [], [], 0)[0]:
            sock.sendall(piece)
            sent += len(piece)
        if sent >= most:
            sock.sendall(b"\r\n\r\n")
    return answer(sock)


def healthz(server: ServerProcess) -> int:
    return httpx.get(f"{server.url}/healthz", timeout=10).status_code


def test_huge_headers_are_refused_431_before_they_are_buffered(server: ServerProcess) -> None:
    """Four connections each feed a header 1 MiB at a time (up to 48 MiB): each is answered
    431 once it passes the head limit, memory stays put, /healthz keeps answering."""
    before = rss_bytes(server)
    answers: list[bytes] = []

    def attack() -> None:
        with connect(server) as sock:
            head = b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nX-Big: "
            answers.append(send_until_answered(sock, head, b"a" * MiB, 48 * MiB))

    attackers = [threading.Thread(target=attack) for _ in range(4)]
    for thread in attackers:
        thread.start()
    health = [healthz(server) for _ in range(20)]
    for thread in attackers:
        thread.join()
    assert health == [200] * 20
    assert len(answers) == 4
    for got in answers:
        assert got.startswith(b"HTTP/1.1 431 "), got[:200]
        assert b'"code":"too_large"' in got and b"16384 byte limit" in got
    assert rss_bytes(server) - before < 16 * MiB
    assert healthz(server) == 200


def test_a_million_headers_are_refused_431_at_the_101st(server: ServerProcess) -> None:
    with connect(server) as sock:
        head = b"GET /v1/stats HTTP/1.1\r\nHost: x\r\n"
        got = send_until_answered(sock, head, b"a: b\r\n" * 10_000, 1_000_000 * 6)
    assert got.startswith(b"HTTP/1.1 431 "), got[:200]
    assert b"more than 100 headers" in got
    assert healthz(server) == 200


def test_heads_up_to_the_limits_are_served(server: ServerProcess) -> None:
    start = (
        "GET /v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: Bearer {server.token}\r\n"
    ).encode()
    filler = defaults.MAX_HEAD_BYTES - len(start) - len(b"X-Big: \r\n\r\n")
    big = start + b"X-Big: " + b"a" * filler + b"\r\n\r\n"
    many = start + b"a: b\r\n" * (defaults.MAX_HEADERS - 3) + b"\r\n"
    assert len(big) == defaults.MAX_HEAD_BYTES
    for request in (big, many):
        with connect(server) as sock:
            sock.sendall(request)
            assert answer(sock).startswith(b"HTTP/1.1 200 "), len(request)


def test_idle_and_slow_connections_are_closed(server: ServerProcess) -> None:
    """Nothing sent: closed after the keep-alive time. A head or a body trickling in a
    byte a second (slowloris): 408 and closed."""
    idle = connect(server)
    slow_head = connect(server)
    slow_head.sendall(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\n")
    slow_body = connect(server)
    slow_body.sendall(
        b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {server.token}\r\nContent-Length: 1000\r\n\r\n".encode()
    )
    stop = threading.Event()

    def trickle() -> None:
        with contextlib.suppress(OSError):
            while not stop.wait(1.0):
                slow_head.sendall(b"X")
                slow_body.sendall(b" ")

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        with idle, slow_head, slow_body:
            assert answer(idle) == b""
            assert answer(slow_head).startswith(b"HTTP/1.1 408 ")
            assert answer(slow_body).startswith(b"HTTP/1.1 408 ")
    finally:
        stop.set()
        thread.join()
    assert "Traceback" not in server.output()
    assert healthz(server) == 200


def test_a_client_hanging_up_mid_body_is_not_an_error(make_server: MakeServer) -> None:
    """Not "unexpected error", no traceback: the request simply did not happen (both the
    routed path and the workers' direct one). --verbose: the server says it saw it."""
    server = make_server("--verbose")
    for n, path in enumerate(("/v1/tasks", "/v1/tasks/1/complete"), start=1):
        with connect(server) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {server.token}\r\nContent-Length: 1000\r\n\r\n"
                '{"command": "echo never'.encode()
            )

        def handled(n: int = n) -> bool:
            out = server.output()
            return out.count("client hung up during POST") + out.count("unexpected error") >= n

        wait_until(handled, what=f"the server to handle hang-up {n}")
    with server.client() as client:
        assert client.get("/v1/stats")["pending"] == 0
    assert server.stop() == 0
    output = server.output()
    assert "unexpected error" not in output and "Traceback" not in output, output
    assert "Exception in ASGI application" not in output


# -- more connections than descriptors ----------------------------------------------------

FILES = 256  # the server's descriptor limit, soft and hard: it cannot raise it


@pytest.fixture
def small_server(tmp_path: Path, isolated_env: dict[str, str]) -> Iterator[ServerProcess]:
    """A server started under `ulimit -n 256`."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))

    server = ServerProcess(
        db_path=tmp_path / "small" / "kickoff.db",
        port=free_port(),
        base_env=isolated_env,
        extra_args=[],
        log_path=tmp_path / "small.log",
        preexec=limit,
    )
    server.start()
    yield server
    server.stop()


def connection_limit(server: ServerProcess) -> int:
    """The limit the server logged at start-up (three quarters of its descriptors)."""
    found = re.search(r"at most (\d+) connections \(descriptor limit (\d+)\)", server.output())
    return int(found.group(1)) if found else FILES * 3 // 4


def test_idle_connections_cannot_lock_out_clients_and_workers(
    small_server: ServerProcess, tmp_path: Path
) -> None:
    """Twice as many idle sockets as the server has descriptors: the longest-waiting are
    closed to make room, /healthz, submits and a real worker get in, and the log says so."""
    server = small_server
    limit = connection_limit(server)
    idle = [connect(server) for _ in range(2 * FILES)]
    try:
        assert healthz(server) == 200
        with server.client() as client:
            task_id = client.post("/v1/tasks", {"command": "echo in"})["ids"][0]
        log = tmp_path / "worker.log"
        with log.open("ab") as out:
            worker = subprocess.Popen(
                [*kickoff_cmd(), "worker", "--server", server.address],
                env=server.env,
                stdout=out,
                stderr=out,
            )
        try:
            with server.client() as client:
                wait_until(
                    lambda: client.get(f"/v1/tasks/{task_id}")["state"] == "succeeded",
                    timeout=30,
                    what="the task to run",
                )
        finally:
            worker.terminate()
            worker.wait(timeout=15)
        closed = sum(1 for sock in idle if closed_by_server(sock))
        assert closed >= len(idle) - limit
    finally:
        for sock in idle:
            sock.close()
    assert f"at most {limit} connections (descriptor limit {FILES})" in server.output()
    assert f"connection limit reached ({limit} open, limit {limit})" in server.output()


def closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_when_every_connection_is_busy_a_new_one_is_refused_503(
    small_server: ServerProcess,
) -> None:
    """Event streams fill every connection: the next one gets a 503 saying why."""
    server = small_server
    limit = connection_limit(server)
    streams = []
    request = (
        f"GET /v1/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n\r\n"
    ).encode()
    try:
        for _ in range(limit):
            sock = connect(server)
            sock.sendall(request)
            streams.append(sock)
        for sock in streams:
            got = b""
            while b": live" not in got:
                chunk = sock.recv(4096)
                assert chunk, got
                got += chunk
        with connect(server) as extra:
            refused = answer(extra)
        assert refused.startswith(b"HTTP/1.1 503 "), refused[:200]
        assert b"too many connections" in refused
    finally:
        for sock in streams:
            sock.close()
    wait_until(lambda: healthz(server) == 200, what="room again")
    wait_until(lambda: "1 new refused" in server.output(), what="the log line")
