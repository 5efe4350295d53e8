"""The worker's HTTP client: `kickoff.client.AsyncClient`'s interface and error mapping,
without its per-request cost.

httpx (URL merging, header models, anyio, h11) costs 0.5-1 ms of CPU per request here, ten
times the server's whole answer to a claim; the worker makes about one request per task,
and shares the machine with the server and the tasks. This client speaks plain HTTP/1.1
with keep-alive to one server, parses JSON with orjson, caps the size of an answer, and
raises the same errors as AsyncClient: error bodies become the KickoffError with that code
(`client.error_from`), transport failures ServerUnreachable (`client.map_exceptions`, with
the httpx exception as the cause).

Each connection is an `asyncio.Protocol` that feeds the answer's bytes to an httptools
(llhttp) parser as they arrive and resolves one future with it: no stream reader, no task,
one timer per request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast
from urllib.parse import urlencode

import httptools
import httpx
import orjson

from kickoff import client_config, defaults
from kickoff.client import DEFAULT_TIMEOUT_S, base_url, error_from, map_exceptions, resolve_token
from kickoff.errors import InvalidInput, KickoffError, NotLeader, ServerUnreachable

# reuse a kept-alive connection only this long: well before the server drops it
IDLE_S = defaults.KEEP_ALIVE_S * 0.4
MAX_HEAD_BYTES = 64 * 1024  # of an answer: the server's are a few hundred bytes

Answer = tuple[int, bytes, bool]  # status, body, whether the connection may be reused


class _Connection(asyncio.Protocol):
    """One kept-alive connection: at most one request in flight (`send`), its answer fed
    to httptools as the bytes arrive (`data_received`; the parser calls the `on_*`
    methods) and handed to the request's future whole (`_done`) or as an error (`_fail`).

    A parser callback that raises stops the parser: feed_data raises
    HttpParserCallbackError, with the callback's exception as its __context__."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_answer_bytes: int) -> None:
        self.loop = loop
        self.max_answer_bytes = max_answer_bytes
        self.transport: asyncio.Transport | None = None
        self.used_at = time.monotonic()
        self.broken = False  # lost, closed, or its state is unknown: never reuse it
        self._waiter: asyncio.Future[Answer] | None = None
        # one parser for the connection's life: after a whole answer it waits for the next
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self._head_read = 0  # bytes of the reads that ended inside the head
        self._head_size = 0  # bytes of the header lines parsed
        self._framed = False  # the body has a length or is chunked; else it ends at EOF
        self._in_body = False
        self._chunks: list[bytes] = []
        self._size = 0
        self._answer: Answer | None = None

    def usable(self) -> bool:
        return not self.broken and time.monotonic() - self.used_at < IDLE_S

    def send(self, data: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self._reset()
        waiter = self._waiter = self.loop.create_future()
        self.transport.write(data)
        return waiter

    def close(self) -> None:
        self.broken = True
        if self.transport is not None:
            self.transport.close()

    def time_out(self) -> None:
        self._fail(httpx.ReadTimeout("no answer in time"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            self._parser.feed_data(data)
            if not self._in_body:  # the parser keeps a partial header line: bound it
                self._head_read += len(data)
                if self._head_read > MAX_HEAD_BYTES:
                    raise ValueError("the answer's head is too long")
        except (httptools.HttpParserError, httptools.HttpParserUpgrade, ValueError) as exc:
            if self._answer is None:
                reason = exc.__context__ if isinstance(exc.__context__, ValueError) else exc
                self._fail(httpx.RemoteProtocolError(f"malformed answer: {reason}"))
                return
            self.broken = True  # more than the answer: the connection is out of step
        if self._answer is not None:
            self._done(self._answer)

    def eof_received(self) -> bool | None:
        if self._in_body and not self._framed and self._answer is None:
            self._done((self._parser.get_status_code(), b"".join(self._chunks), False))
        self.broken = True
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = True
        self._fail(httpx.ReadError(f"connection lost: {exc!r}"))

    def on_message_begin(self) -> None:
        if self._answer is not None:
            raise ValueError("more than one answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD_BYTES:
            raise ValueError("the answer's head is too long")
        name = name.lower()
        if name == b"content-length":
            self._framed = True
            self._check_size(int(value))  # the parser checked it is a number
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            self._framed = True

    def on_headers_complete(self) -> None:
        self._in_body = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        self._check_size(self._size)
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        self._answer = (
            parser.get_status_code(),
            b"".join(self._chunks),
            parser.should_keep_alive(),
        )

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def _done(self, answer: Answer) -> None:
        waiter = self._waiter
        self._waiter = None
        status, content, keep = answer
        if self.broken:
            keep = False
        if not keep:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((status, content, keep))

    def _check_size(self, size: int) -> None:
        if size > self.max_answer_bytes:
            raise ValueError(f"an answer of {size} bytes is over the {self.max_answer_bytes} limit")


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
        self.servers = client_config.servers(server)  # several: one leads (SPEC §14)
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes
        self._token = token
        self._idle: list[_Connection] = []
        self._use(0)

    def _use(self, index: int) -> None:
        """Talk to the index-th address from now on (its connections: new ones)."""
        self._index = index % len(self.servers)
        self.server = self.servers[self._index]
        try:
            url = httpx.URL(base_url(self.server))
        except (httpx.InvalidURL, ValueError):
            raise InvalidInput(f"server {self.server[:200]!r}: expected HOST[:PORT]") from None
        self.host = url.host
        self.port = url.port or 80
        headers = f"host: {url.netloc.decode()}\r\nuser-agent: kickoff-worker\r\n".encode()
        secret = resolve_token(self.server, self._token)
        if secret is not None:
            if not (secret.isascii() and secret.isprintable()):
                raise InvalidInput("the token holds characters no token can have")
            headers += f"authorization: Bearer {secret}\r\n".encode()
        self._headers = headers
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    def _next(self, tried_from: int) -> bool:
        """Move on to the next address; False once every one was tried since `tried_from`."""
        if len(self.servers) == 1 or (self._index + 1) % len(self.servers) == tried_from:
            self._use(self._index + 1)
            return False
        self._use(self._index + 1)
        return True

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        content: bytes | None = None,
    ) -> Any:
        """The decoded JSON answer; the body is `json`, or the bytes of `content`.

        Raises:
            KickoffError: the error the server answered (by its code), or ServerUnreachable.
        """
        first = self._index
        while True:  # a standby or a dead server: the next address (nothing was done there)
            try:
                return await self._request(method, path, json, params, timeout, content)
            except (NotLeader, ServerUnreachable):
                if not self._next(first):
                    raise

    async def _request(
        self,
        method: str,
        path: str,
        json: Any,
        params: dict[str, Any] | None,
        timeout: float | None,
        content: bytes | None,
    ) -> Any:
        target = f"{path}?{urlencode(params)}" if params else path
        head = f"{method} {target} HTTP/1.1\r\n".encode() + self._headers
        if content is not None:
            data = b"%scontent-type: application/octet-stream\r\ncontent-length: %d\r\n\r\n" % (
                head,
                len(content),
            )
            data += content
        elif json is None:
            data = head + b"content-length: 0\r\n\r\n"
        else:
            body = orjson.dumps(json)
            data = b"%scontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
                head,
                len(body),
                body,
            )
        try:
            status, content = await self._exchange(data, timeout or self.timeout_s)
        except httpx.TransportError:
            with map_exceptions(self.server):
                raise
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
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                transport, conn = await loop.create_connection(
                    lambda: _Connection(loop, self.max_answer_bytes), self.host, self.port
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("connect timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        conn.transport = transport  # uvloop calls connection_made only later
        return conn

    async def _exchange(self, data: bytes, timeout_s: float) -> tuple[int, bytes]:
        conn = await self._connect(timeout_s)
        waiter = conn.send(data)
        timer = conn.loop.call_later(timeout_s, conn.time_out)
        try:
            status, content, keep = await waiter
        except BaseException:
            conn.close()  # its state is unknown: never reuse it
            raise
        finally:
            timer.cancel()
        if keep:
            conn.used_at = time.monotonic()
            self._idle.append(conn)
        return status, content

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
