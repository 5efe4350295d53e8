"""The worker's HTTP client: `kickoff.client.AsyncClient`'s interface and error mapping,
without its per-request cost.

httpx (URL merging, header models, anyio, h11) costs 0.5-1 ms of CPU per request here, ten
times the server's whole answer to a claim; the worker makes two requests per task, and
shares the machine with the server and the tasks. This client speaks plain HTTP/1.1 with
keep-alive over asyncio streams to one server, parses JSON with orjson, caps the size of
an answer, and raises the same errors as AsyncClient: error bodies become the
KickoffError with that code (`client.error_from`), transport failures ServerUnreachable
(`client.map_exceptions`, with the httpx exception as the cause).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from kickoff import auth
from kickoff.client import DEFAULT_TIMEOUT_S, base_url, error_from, map_exceptions, resolve_token
from kickoff.errors import InvalidInput, KickoffError

IDLE_S = 2.0  # reuse a kept-alive connection only this long (uvicorn drops them after 5 s)
MAX_HEAD_BYTES = 64 * 1024
CHUNK_BYTES = 64 * 1024


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used_at = time.monotonic()

    def usable(self) -> bool:
        return (
            time.monotonic() - self.used_at < IDLE_S
            and not self.writer.is_closing()
            and not self.reader.at_eof()
            and self.reader.exception() is None
        )

    def close(self) -> None:
        self.writer.close()


def _parse_head(head: bytes) -> tuple[int, dict[bytes, bytes]]:
    status_line, *lines = head[:-4].split(b"\r\n")
    version, status, *_ = status_line.split(b" ", 2)
    if not version.startswith(b"HTTP/1.") or not status.isdigit():
        raise ValueError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
    fields = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError(f"malformed header line {line[:80]!r}")
        fields[name.strip().lower()] = value.strip()
    return int(status), fields


class LeanClient:
    """Asynchronous HTTP/1.1 client for one server, one kept-alive connection per
    concurrent request."""

    def __init__(
        self,
        server: str | None = None,
        *,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_answer_bytes: int = 16 << 20,
    ) -> None:
        self.server = auth.normalize_server(server)
        try:
            url = httpx.URL(base_url(self.server))
        except (httpx.InvalidURL, ValueError):
            raise InvalidInput(f"server {self.server[:200]!r}: expected HOST[:PORT]") from None
        self.host = url.host
        self.port = url.port or 80
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes
        headers = f"host: {url.netloc.decode()}\r\nuser-agent: kickoff-worker\r\n".encode()
        secret = resolve_token(self.server, token)
        if secret is not None:
            if not (secret.isascii() and secret.isprintable()):
                raise InvalidInput("the token holds characters no token can have")
            headers += f"authorization: Bearer {secret}\r\n".encode()
        self._headers = headers
        self._idle: list[_Connection] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The decoded JSON answer.

        Raises:
            KickoffError: the error the server answered (by its code), or ServerUnreachable.
        """
        target = f"{path}?{urlencode(params)}" if params else path
        body = b"" if json is None else orjson.dumps(json)
        head = f"{method} {target} HTTP/1.1\r\n".encode() + self._headers
        if json is not None:
            head += b"content-type: application/json\r\n"
        head += b"content-length: %d\r\n\r\n" % len(body)
        with map_exceptions(self.server):
            status, content = await self._exchange(head + body, timeout or self.timeout_s)
        if status >= 400:
            raise error_from(httpx.Response(status, content=content))
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            raise KickoffError(f"the server's answer to {method} {path} is not JSON") from None

    async def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return await self.request("GET", path, params=clean)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return await self.request("POST", path, json=body, **kwargs)

    async def _connect(self, timeout_s: float) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.close()
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, limit=MAX_HEAD_BYTES
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("connect timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        return _Connection(reader, writer)

    async def _exchange(self, data: bytes, timeout_s: float) -> tuple[int, bytes]:
        conn = await self._connect(timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                conn.writer.write(data)
                status, content, keep = await self._answer(conn.reader)
        except BaseException as exc:
            conn.close()  # its state is unknown: never reuse it
            if isinstance(exc, TimeoutError):
                raise httpx.ReadTimeout("no answer in time") from exc
            if isinstance(exc, asyncio.IncompleteReadError | ConnectionError | OSError):
                raise httpx.ReadError(f"connection lost: {exc!r}") from exc
            if isinstance(exc, asyncio.LimitOverrunError | ValueError):
                raise httpx.RemoteProtocolError(f"malformed answer: {exc}") from exc
            raise
        if keep:
            conn.used_at = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return status, content

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        status, fields = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        keep = fields.get(b"connection", b"").lower() != b"close"
        if status in (204, 304) or status < 200:
            return status, b"", keep
        if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            return status, await self._chunked(reader), keep
        if b"content-length" in fields:
            length = int(fields[b"content-length"])
            self._check_size(length)
            return status, await reader.readexactly(length), keep
        chunks: list[bytes] = []  # no length: the answer ends when the server closes
        size = 0
        while chunk := await reader.read(CHUNK_BYTES):
            size += len(chunk)
            self._check_size(size)
            chunks.append(chunk)
        return status, b"".join(chunks), False

    async def _chunked(self, reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            length = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if length == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return b"".join(chunks)
            size += length
            self._check_size(size)
            chunks.append((await reader.readexactly(length + 2))[:-2])

    def _check_size(self, size: int) -> None:
        if size < 0 or size > self.max_answer_bytes:
            raise ValueError(f"an answer of {size} bytes is over the {self.max_answer_bytes} limit")

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
