"""The command line's HTTP/1.1 reading (kickoff/client.py): what a kickoff server sends,
and what no server should (a clear error, never a hang or a wrong answer)."""

from __future__ import annotations

import io

import pytest

from kickoff.client import Malformed, query, read_body, read_head


def answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader = io.BufferedReader(io.BytesIO(raw))  # type: ignore[arg-type]
    status, headers = read_head(reader)
    return status, headers, b"".join(read_body(reader, headers))


def test_a_length() -> None:
    raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    assert answer(raw) == (200, {"content-type": "application/json", "content-length": "2"}, b"{}")


def test_chunks_with_an_extension_and_trailers() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;x=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n"
    )
    assert answer(raw)[2] == b"hello, world"


def test_two_answers_on_one_connection() -> None:
    raw = (
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nno!"
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1"
    )
    reader = io.BufferedReader(io.BytesIO(raw))  # type: ignore[arg-type]
    for status, body in ((404, b"no!"), (200, b"1")):
        code, headers = read_head(reader)
        assert (code, b"".join(read_body(reader, headers))) == (status, body)


def test_up_to_the_close() -> None:
    assert answer(b"HTTP/1.0 200 OK\r\n\r\nall of it")[2] == b"all of it"


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: " + b"y" * 70_000 + b"\r\n\r\n",
    ],
)
def test_what_no_kickoff_server_sends_is_malformed(raw: bytes) -> None:
    with pytest.raises(Malformed):
        answer(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
    ],
)
def test_a_cut_answer_is_a_closed_connection(raw: bytes) -> None:
    with pytest.raises(ConnectionResetError):
        answer(raw)


def test_query() -> None:
    assert query({}) == ""
    assert query({"state": ["pending", "failed"], "after": None, "limit": 5}) == (
        "?state=pending&state=failed&limit=5"
    )
    assert query({"worker": "box 1/ä&x=y"}) == "?worker=box%201%2F%C3%A4%26x%3Dy"


def test_submit_batches_stay_under_the_body_limit_and_the_batch_size() -> None:
    from kickoff import client

    big = [{"command": "x" * (1 << 20)} for _ in range(40)]  # 40 MiB of commands
    assert [len(b) for b in client.batches(big)] == [15, 15, 10]
    small = [{"command": "true"} for _ in range(25_001)]
    assert [len(b) for b in client.batches(small)] == [10_000, 10_000, 5_001]
