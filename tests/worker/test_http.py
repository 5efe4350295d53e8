"""The worker's lean HTTP client against a scripted socket server: framing, keep-alive,
size caps, and the same errors as kickoff.client.AsyncClient."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from kickoff.errors import InvalidInput, KickoffError, NotFound, ServerUnreachable, StaleAttempt
from kickoff.worker._http import LeanClient

Reply = Callable[[bytes], Awaitable[bytes | None]]


def answer(body: bytes, *, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status.encode(),
        len(body),
        extra,
        body,
    )


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _against(
    handle: Handler, scenario: Callable[[LeanClient], Awaitable[Any]], **kw: Any
) -> Any:
    """Run scenario with a LeanClient against a loopback server whose connections
    `handle` serves; both are closed afterwards."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = LeanClient(f"127.0.0.1:{port}", token="sekrit", timeout_s=5, **kw)
    try:
        return await scenario(client)
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def serve(
    reply: Reply,
    scenario: Callable[[LeanClient], Awaitable[Any]],
    *,
    close_after: bool = False,
    **kw: Any,
) -> Any:
    """Run scenario against a server whose every request is answered by reply(request)."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                data = await reply(request)
                if data is None:
                    break
                writer.write(data)
                await writer.drain()
                if close_after or b"connection: close" in data.split(b"\r\n\r\n")[0]:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await _against(handle, scenario, **kw), len(connections)


def run(reply: Reply, scenario: Callable[[LeanClient], Awaitable[Any]], **kw: Any) -> Any:
    return asyncio.run(serve(reply, scenario, **kw))


def test_request_shape_and_keep_alive() -> None:
    seen: list[bytes] = []

    async def reply(request: bytes) -> bytes:
        seen.append(request)
        return answer(b'{"ok": true}')

    async def scenario(client: LeanClient) -> list[Any]:
        return [
            await client.request("POST", "/v1/workers/w1/claim", json={"max_tasks": 1}),
            await client.request("GET", "/v1/tasks", params={"worker": "w1", "limit": 5}),
        ]

    results, connections = run(reply, scenario)
    assert results == [{"ok": True}, {"ok": True}]
    assert connections == 1  # the second request reused the connection
    post, get = seen
    assert post.startswith(b"POST /v1/workers/w1/claim HTTP/1.1\r\n")
    assert b"authorization: Bearer sekrit\r\n" in post
    assert b"content-type: application/json\r\n" in post
    assert post.endswith(b'\r\n\r\n{"max_tasks":1}')
    assert get.startswith(b"GET /v1/tasks?worker=w1&limit=5 HTTP/1.1\r\n")


def test_chunked_and_close_delimited_answers() -> None:
    replies = iter(
        [
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b'4\r\n{"a"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n',
            b'HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{"b": 2}',
        ]
    )

    async def reply(request: bytes) -> bytes | None:
        data = next(replies)
        return data

    async def scenario(client: LeanClient) -> list[Any]:
        first = await client.request("GET", "/x")
        second = await client.request("GET", "/y")
        return [first, second]

    (first, second), _ = run(reply, scenario)
    assert (first, second) == ({"a": 1}, {"b": 2})


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        ("404 Not Found", "not_found", NotFound),
        ("409 Conflict", "stale_attempt", StaleAttempt),
        ("503 Service Unavailable", "unavailable", KickoffError),
    ],
)
def test_error_bodies_map_to_their_kickoff_error(
    status: str, code: str, cls: type[KickoffError]
) -> None:
    body = b'{"error": {"code": "%s", "message": "nope"}}' % code.encode()

    async def reply(request: bytes) -> bytes:
        return answer(body, status=status)

    async def scenario(client: LeanClient) -> KickoffError:
        with pytest.raises(KickoffError) as info:
            await client.request("GET", "/x")
        return info.value

    error: KickoffError = run(reply, scenario)[0]
    assert isinstance(error, cls) and error.code == code and error.message == "nope"


def test_an_answer_that_is_not_json_is_an_error() -> None:
    async def reply(request: bytes) -> bytes:
        return answer(b"<html>")

    async def scenario(client: LeanClient) -> None:
        with pytest.raises(KickoffError, match="not JSON"):
            await client.request("GET", "/x")

    run(reply, scenario)


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (None, httpx.ReadError),  # the server hangs up without answering
        (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{}", httpx.ReadError),  # cut short
        (b"SMTP ready\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nx: " + b"y" * 100_000 + b"\r\n\r\n", httpx.RemoteProtocolError),
    ],
)
def test_broken_answers_are_server_unreachable(data: bytes | None, cause: type) -> None:
    async def reply(request: bytes) -> bytes | None:
        return data

    async def scenario(client: LeanClient) -> ServerUnreachable:
        with pytest.raises(ServerUnreachable) as info:
            await client.request("GET", "/x")
        return info.value

    error, _ = run(reply, scenario, close_after=True, max_answer_bytes=1 << 20)
    assert isinstance(error.__cause__, cause)


def test_an_answer_over_the_cap_is_refused_without_reading_it() -> None:
    async def reply(request: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"400\r\n" + b"x" * 1024

    async def scenario(client: LeanClient) -> None:
        with pytest.raises(ServerUnreachable):
            await client.request("GET", "/x")

    run(reply, scenario, max_answer_bytes=100)


def test_no_answer_in_time() -> None:
    async def reply(request: bytes) -> bytes:
        await asyncio.sleep(5)
        return answer(b"{}")

    async def scenario(client: LeanClient) -> ServerUnreachable:
        with pytest.raises(ServerUnreachable) as info:
            await client.request("GET", "/x", timeout=0.1)
        return info.value

    error, _ = run(reply, scenario)
    assert isinstance(error.__cause__, httpx.ReadTimeout)


def test_nothing_listening_is_a_connect_error() -> None:
    async def scenario() -> ServerUnreachable:
        client = LeanClient("127.0.0.1:9", token="t")  # the discard port: nothing listens
        with pytest.raises(ServerUnreachable) as info:
            await client.request("GET", "/healthz")
        return info.value

    error = asyncio.run(scenario())
    assert isinstance(error.__cause__, httpx.ConnectError)
    assert "sekrit" not in error.message


def test_a_token_that_could_inject_headers_is_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        LeanClient("127.0.0.1:1", token="abc\r\nx-evil: 1")
    assert "evil" not in info.value.message


def test_an_answer_without_length_ends_when_the_server_closes() -> None:
    async def reply(request: bytes) -> bytes:
        return b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"c": [1, 2, 3]}'

    async def scenario(client: LeanClient) -> list[Any]:
        return [await client.request("GET", "/x"), await client.request("GET", "/y")]

    results, connections = run(reply, scenario, close_after=True)
    assert results == [{"c": [1, 2, 3]}, {"c": [1, 2, 3]}]
    assert connections == 2  # such an answer never leaves the connection reusable


async def serve_pieces(
    pieces: list[bytes | float], scenario: Callable[[LeanClient], Awaitable[Any]], **kw: Any
) -> Any:
    """Run scenario against a server that answers each connection's first request with
    pieces (bytes to send, or seconds to wait), then hangs up."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await reader.readuntil(b"\r\n\r\n")
            for piece in pieces:
                if isinstance(piece, float):
                    await asyncio.sleep(piece)
                else:
                    writer.write(piece)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await _against(handle, scenario, **kw), len(connections)


def test_an_answer_in_pieces_without_length() -> None:
    pieces: list[bytes | float] = [b"HTTP/1.1 200 OK\r\n", 0.02, b'\r\n{"a": ', 0.02, b"[1, 2]}"]

    async def scenario(client: LeanClient) -> Any:
        return await client.request("GET", "/x")

    assert asyncio.run(serve_pieces(pieces, scenario))[0] == {"a": [1, 2]}


def test_an_answer_without_length_over_the_cap_is_refused() -> None:
    pieces: list[bytes | float] = [b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 60, 0.02, b"x" * 60]

    async def scenario(client: LeanClient) -> ServerUnreachable:
        with pytest.raises(ServerUnreachable) as info:
            await client.request("GET", "/x")
        return info.value

    error, _ = asyncio.run(serve_pieces(pieces, scenario, max_answer_bytes=100))
    assert isinstance(error.__cause__, httpx.RemoteProtocolError)
    assert "over the 100 limit" in str(error.__cause__)


@pytest.mark.parametrize(
    ("pieces", "reason"),
    [
        ([b"HTTP/1.1 abc OK\r\n\r\n"], "status"),
        ([b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}"], "Content"),
        ([b"HTTP/1.1 200 OK\r\ncontent-length: 2000\r\n\r\n"], "over the 1000 limit"),
        ([b"HTTP/1.1 200 OK\r\nx: ", *[b"y" * 30_000, 0.01] * 3], "head is too long"),
    ],
)
def test_malformed_answers_say_why(pieces: list[bytes | float], reason: str) -> None:
    async def scenario(client: LeanClient) -> ServerUnreachable:
        with pytest.raises(ServerUnreachable) as info:
            await client.request("GET", "/x")
        return info.value

    error, _ = asyncio.run(serve_pieces(pieces, scenario, max_answer_bytes=1000))
    assert isinstance(error.__cause__, httpx.RemoteProtocolError)
    assert reason in str(error.__cause__)


def test_bytes_after_the_answer_spoil_the_connection_not_the_answer() -> None:
    async def reply(request: bytes) -> bytes:
        return answer(b'{"ok": 1}') + b"HTTP/1.1 200 OK\r\n"

    async def scenario(client: LeanClient) -> list[Any]:
        return [await client.request("GET", "/x"), await client.request("GET", "/y")]

    results, connections = run(reply, scenario)
    assert results == [{"ok": 1}, {"ok": 1}]
    assert connections == 2


def test_bytes_nobody_asked_for_close_an_idle_connection() -> None:
    pieces: list[bytes | float] = [answer(b'{"ok": 1}'), 0.02, answer(b'{"ok": 2}'), 1.0]

    async def scenario(client: LeanClient) -> list[Any]:
        first = await client.request("GET", "/x")
        await asyncio.sleep(0.2)  # the unasked-for answer arrives meanwhile
        return [first, await client.request("GET", "/y")]

    results, connections = asyncio.run(serve_pieces(pieces, scenario))
    assert results == [{"ok": 1}, {"ok": 1}]  # the second answer is not taken for the first
    assert connections == 2
