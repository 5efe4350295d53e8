"""The HTTP client of the command line (sync, `Client`), and what every client shares: the
server's address, the token, and the mapping of answers back to KickoffErrors.

Error bodies map back to the KickoffError with the same code; connection failures and
timeouts become ServerUnreachable naming the address tried. `Client` speaks HTTP/1.1 over
one kept-alive socket, reads answers with `read_head` and `read_body` (what a kickoff
server sends: a length, or chunks for the event stream), and JSON with the standard
library: httpx, httptools (it imports typing) and orjson (dataclasses, inspect, uuid)
each cost more to import than a whole `kickoff new` may take (docs/cli.md, "Start-up").
`AsyncClient` (httpx) serves the worker's tests.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import os
import socket
import time
from collections.abc import Iterator

from kickoff import client_config
from kickoff.errors import ERRORS_BY_CODE, InvalidInput, KickoffError, ServerUnreachable

TYPE_CHECKING = False  # typing is for the type checker: its import slows `kickoff new`
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    import httpx

DEFAULT_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
IDLE_S = 2.0  # reuse a kept-alive connection only this long (uvicorn drops them after 5 s)
MAX_LINE_BYTES = 64 * 1024
MAX_HEADERS = 100
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def base_url(server: str) -> str:
    host, port = _host_port(server)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _host_port(server: str) -> tuple[str, int]:
    """`host:port` (as normalized) -> (host, port).

    Raises:
        InvalidInput: no valid port.
    """
    host, _, port = client_config.normalize_server(server).rpartition(":")
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536) or not host:
        raise InvalidInput(f"server {server[:200]!r}: expected HOST[:PORT]")
    return host, int(port)


def resolve_token(server: str, token: str | None) -> str | None:
    """--token, else $KICKOFF_TOKEN, else the token this user's config has for the server."""
    return (
        token
        or os.environ.get("KICKOFF_TOKEN")
        or client_config.find_token(client_config.normalize_server(server))
    )


def error_from_body(status: int, content: bytes) -> KickoffError:
    """The KickoffError an error answer (`{"error": {"code", "message"}}`) stands for."""
    try:
        body = jsonlib.loads(content)["error"]
        code, message = str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        text = content[:200].decode("utf-8", "replace")
        code, message = "error", f"HTTP {status}: {text}"
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        cls = next(
            (c for c in ERRORS_BY_CODE.values() if c.http_status == status),
            KickoffError,
        )
    return cls(message)


def error_from(response: httpx.Response) -> KickoffError:
    """The KickoffError an httpx error response stands for."""
    return error_from_body(response.status_code, response.content)


def _unreachable(server: str, exc: BaseException) -> ServerUnreachable:
    if isinstance(exc, TimeoutError):
        return ServerUnreachable(f"kickoff server at {server} did not answer in time")
    return ServerUnreachable(
        f"cannot reach a kickoff server at {server} ({exc.__class__.__name__}); "
        "start one with `kickoff server` (or `kickoff up`), or pass --server HOST:PORT"
    )


@contextlib.contextmanager
def map_exceptions(server: str) -> Iterator[None]:
    """Translate httpx's transport errors into ServerUnreachable (for httpx clients)."""
    import httpx

    try:
        yield
    except httpx.TimeoutException as exc:
        raise _unreachable(server, TimeoutError()) from exc
    except httpx.TransportError as exc:
        raise _unreachable(server, exc) from exc


def _quote(value: str) -> str:
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in value.encode())


def query(params: dict[str, Any]) -> str:
    """`?a=1&b=x&b=y` from the parameters that are set (a list repeats its name)."""
    pairs = []
    for name, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None:
                pairs.append(f"{_quote(name)}={_quote(str(item))}")
    return "?" + "&".join(pairs) if pairs else ""


class Malformed(ValueError):
    """An answer that is not the HTTP/1.1 a kickoff server sends."""


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE_BYTES + 1)
    if not line:
        raise ConnectionResetError("the server closed the connection")
    if len(line) > MAX_LINE_BYTES or not line.endswith(b"\n"):
        raise Malformed("a line of the answer is too long")
    return line


def read_head(reader: BinaryIO) -> tuple[int, dict[str, str]]:
    """An answer's status and headers (names lower-case).

    Raises:
        Malformed: not an HTTP/1.x answer.
        OSError: the connection failed or closed.
    """
    version, _, rest = _line(reader).partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or not (code.isdigit() and len(code) == 3):
        raise Malformed("not an HTTP/1.1 answer")
    headers: dict[str, str] = {}
    while (line := _line(reader).rstrip(b"\r\n")) != b"":
        name, colon, value = line.partition(b":")
        if not colon or len(headers) >= MAX_HEADERS:
            raise Malformed("a malformed header")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return int(code), headers


def read_body(reader: BinaryIO, headers: dict[str, str]) -> Iterator[bytes]:
    """The body's pieces as they arrive: chunked, by content-length, or up to the close.

    Raises:
        Malformed: a bad chunk size or length.
        OSError: the connection failed or closed before the end.
    """
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while size := _size(_line(reader).split(b";")[0].strip(), base=16):
            yield _exactly(reader, size)
            if _line(reader).strip():
                raise Malformed("a chunk longer than its size")
        while _line(reader).strip():  # trailers
            pass
    elif "content-length" in headers:
        yield _exactly(reader, _size(headers["content-length"].encode(), base=10))
    else:
        yield reader.read()


def _size(text: bytes, *, base: int) -> int:
    try:
        size = int(text, base)
    except ValueError:
        raise Malformed(f"a bad size {text[:20]!r}") from None
    if size < 0:
        raise Malformed("a negative size")
    return size


def _exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise ConnectionResetError("the server closed the connection mid-answer")
    return data


class Client:
    """Synchronous client, for the command line: one kept-alive connection."""

    def __init__(
        self,
        server: str | None = None,
        *,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.server = client_config.normalize_server(server)
        self.host, self.port = _host_port(self.server)
        self.timeout_s = timeout_s
        netloc = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        head = f"host: {netloc}\r\nuser-agent: kickoff\r\n"
        secret = resolve_token(self.server, token)
        if secret is not None:
            if not (secret.isascii() and secret.isprintable()):
                raise InvalidInput("the token holds characters no token can have")
            head += f"authorization: Bearer {secret}\r\n"
        self._head = head.encode()
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None
        self._used_at = 0.0

    def _request_bytes(self, method: str, target: str, body: bytes | None) -> bytes:
        start = f"{method} {target} HTTP/1.1\r\n".encode() + self._head
        if body is None:
            return start + b"content-length: 0\r\n\r\n"
        return b"%scontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
            start,
            len(body),
            body,
        )

    def _connect(self, timeout_s: float) -> tuple[socket.socket, BinaryIO]:
        if self._sock and self._reader and time.monotonic() - self._used_at < IDLE_S:
            self._sock.settimeout(timeout_s)
            return self._sock, self._reader
        self.close()
        # an ASCII name as bytes: getaddrinfo need not load the idna codec for it
        host = self.host.encode() if self.host.isascii() else self.host
        try:
            address = (host, self.port)  # getaddrinfo takes bytes; typeshed says str only
            sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT_S)  # type: ignore[arg-type]
        except OSError as exc:
            raise _unreachable(self.server, exc) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout_s)
        self._sock, self._reader = sock, sock.makefile("rb")
        return sock, self._reader

    def request(
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
        body = None if json is None else jsonlib.dumps(json, separators=(",", ":")).encode()
        data = self._request_bytes(method, path + query(params or {}), body)
        sock, reader = self._connect(timeout or self.timeout_s)
        try:
            sock.sendall(data)
            status, headers = read_head(reader)
            content = b"".join(read_body(reader, headers))
        except (OSError, Malformed) as exc:
            self.close()
            raise _unreachable(self.server, exc) from exc
        if headers.get("connection", "").lower() == "close":
            self.close()
        else:
            self._used_at = time.monotonic()
        if status >= 400:
            raise error_from_body(status, content)
        try:
            return jsonlib.loads(content)
        except ValueError:
            raise KickoffError(f"the server's answer to {method} {path} is not JSON") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def stream_lines(self, path: str, **params: Any) -> Iterator[str]:
        """Lines of a streaming response (server-sent events), as they arrive.

        Raises:
            KickoffError: the error the server answered, or ServerUnreachable.
        """
        self.close()  # a stream has its connection to itself, for as long as it lasts
        sock, reader = self._connect(CONNECT_TIMEOUT_S)
        try:
            sock.sendall(self._request_bytes("GET", path + query(params), None))
            status, headers = read_head(reader)
            if status >= 400:
                raise error_from_body(status, b"".join(read_body(reader, headers)))
            sock.settimeout(None)  # events may be minutes apart
            pending = b""
            for chunk in read_body(reader, headers):
                *lines, pending = (pending + chunk).split(b"\n")
                yield from (line.rstrip(b"\r").decode() for line in lines)
        except (OSError, Malformed) as exc:
            raise _unreachable(self.server, exc) from exc
        finally:
            self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """Asynchronous httpx client (the worker's hot path uses kickoff/worker/_http.py; its
    tests drive the worker loop through this one with httpx's MockTransport)."""

    def __init__(
        self,
        server: str | None = None,
        *,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        import httpx

        self.server = client_config.normalize_server(server)
        secret = resolve_token(self.server, token)
        self.http = httpx.AsyncClient(
            base_url=base_url(self.server),
            headers={"Authorization": f"Bearer {secret}"} if secret else {},
            timeout=timeout_s,
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with map_exceptions(self.server):
            response = await self.http.request(method, path, **kwargs)
        if response.is_error:
            raise error_from(response)
        return response.json()

    async def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return await self.request("GET", path, params=clean)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return await self.request("POST", path, json=body, **kwargs)

    async def aclose(self) -> None:
        await self.http.aclose()
