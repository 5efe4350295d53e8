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

import builtins
import contextlib
import json as jsonlib
import os
import socket
import time
from collections.abc import Iterator

from kickoff import client_config
from kickoff.errors import (
    ERRORS_BY_CODE,
    InvalidInput,
    KickoffError,
    NotFound,
    NotLeader,
    ServerUnreachable,
)

TYPE_CHECKING = False  # typing is for the type checker: its import slows `kickoff new`
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any, BinaryIO, overload

    import httpx
else:

    def overload(function):  # typing.overload, without importing typing
        return function


FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
MAX_BATCH = 10_000  # tasks per submit request (the server's limit)
BATCH_BYTES = 32 * 1024 * 1024  # half the server's body limit: headroom for JSON escaping
MAX_PAGE = 10_000
WAIT_FIRST_S = 0.02  # wait() looks again after this, then 1.5 times as long, up to
WAIT_MAX_S = 1.0
FOLLOW_RECONNECT_S = 60.0  # logs(follow=True) tries to reconnect this long
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


class Task(dict[str, "Any"]):
    """A task as the server answers it (docs/api.md lists the fields): a dict, whose
    fields also read as attributes (`task.state`, `task.exit_code`)."""

    id: int
    state: str
    command: str
    attempt: int
    exit_code: int | None
    worker: str | None
    output_tail: str
    require: builtins.list[str]
    want: builtins.list[str]
    priority: int
    cwd: str | None
    reason: str | None

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def finished(self) -> bool:
        """Succeeded, failed or cancelled: nothing more will happen to it."""
        return self["state"] in FINAL_STATES

    @property
    def exit_status(self) -> int:
        """The exit code to end with for it, as `kickoff new --wait` does: 0 when it
        succeeded, its own code when it failed with one (128+N after signal N), else 1."""
        if self["state"] == "succeeded":
            return 0
        code = self.get("exit_code")
        if self["state"] != "failed" or not isinstance(code, int) or code == 0:
            return 1
        if code < 0:  # killed by a signal, as a shell reports it
            return min(128 - code, 255)
        return code if code <= 255 else 1


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
        self.servers = client_config.servers(server)  # several: one leads (SPEC §14)
        self.timeout_s = timeout_s
        self._token = token
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None
        self._used_at = 0.0
        self._use(0)

    def _use(self, index: int) -> None:
        """Talk to the index-th address from now on."""
        self._index = index % len(self.servers)
        self.server = self.servers[self._index]
        self.host, self.port = _host_port(self.server)
        netloc = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        head = f"host: {netloc}\r\nuser-agent: kickoff\r\n"
        secret = resolve_token(self.server, self._token)
        if secret is not None:
            if not (secret.isascii() and secret.isprintable()):
                raise InvalidInput("the token holds characters no token can have")
            head += f"authorization: Bearer {secret}\r\n"
        self._head = head.encode()

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
        first, failure = self._index, None
        for step in range(len(self.servers)):  # from the one that answered last
            self._use(first + step)
            # an ASCII name as bytes: getaddrinfo need not load the idna codec for it
            host = self.host.encode() if self.host.isascii() else self.host
            try:
                address = (host, self.port)  # getaddrinfo takes bytes; typeshed says str only
                sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT_S)  # type: ignore[arg-type]
                break
            except OSError as exc:
                failure = failure or _unreachable(self.server, exc)
        else:
            self._use(first)
            assert failure is not None
            raise failure
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
        for _ in range(len(self.servers) - 1):
            try:
                return self._request(method, path, body, params, timeout)
            except NotLeader:  # a standby: nothing was done there; the next address
                self.close()
                self._use(self._index + 1)
        return self._request(method, path, body, params, timeout)

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        params: dict[str, Any] | None,
        timeout: float | None,
    ) -> Any:
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

    @overload
    def get(self, what: int) -> Task: ...
    @overload
    def get(self, what: str, **params: Any) -> Any: ...  # noqa: F811 (overloads)
    def get(self, what: int | str, **params: Any) -> Any:  # noqa: F811
        """`get(ID)`: the task (404 NotFound for no such task); `get(PATH, **params)`: the
        JSON answer of `GET PATH?params` (for the rest of docs/api.md)."""
        if isinstance(what, int):
            return Task(self.request("GET", f"/v1/tasks/{what}"))
        return self.request("GET", what, params=params)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def stream_lines(self, path: str, **params: Any) -> Iterator[str]:
        """Lines of a streaming response (server-sent events), as they arrive.

        Raises:
            KickoffError: the error the server answered, or ServerUnreachable.
        """
        pending = b""
        for chunk in self.stream_bytes(path, **params):
            *lines, pending = (pending + chunk).split(b"\n")
            yield from (line.rstrip(b"\r").decode() for line in lines)

    def stream_bytes(self, path: str, **params: Any) -> Iterator[bytes]:
        """The body of a streaming response (chunked), piece by piece as it arrives.

        Raises:
            KickoffError: the error the server answered, or ServerUnreachable.
        """
        self.close()  # a stream has its connection to itself, for as long as it lasts
        sock, reader = self._connect(CONNECT_TIMEOUT_S)
        try:
            sock.sendall(self._request_bytes("GET", path + query(params), None))
            status, headers = read_head(reader)
            if status >= 400:
                error = error_from_body(status, b"".join(read_body(reader, headers)))
                if isinstance(error, NotLeader):  # a standby: the next address, next time
                    self._use(self._index + 1)
                raise error
            sock.settimeout(None)  # events may be minutes apart
            yield from read_body(reader, headers)
        except (OSError, Malformed) as exc:
            raise _unreachable(self.server, exc) from exc
        finally:
            self.close()

    def get_bytes(self, path: str, **params: Any) -> tuple[bytes, dict[str, str]]:
        """A non-JSON answer (task output): its body and headers (names lower-case).

        Raises:
            KickoffError: the error the server answered, or ServerUnreachable.
        """
        data = self._request_bytes("GET", path + query(params), None)
        sock, reader = self._connect(self.timeout_s)
        try:
            sock.sendall(data)
            status, headers = read_head(reader)
            content = b"".join(read_body(reader, headers))
        except (OSError, Malformed) as exc:
            self.close()
            raise _unreachable(self.server, exc) from exc
        self._used_at = time.monotonic()
        if status >= 400:
            raise error_from_body(status, content)
        return content, headers

    # -- the Python API (docs/python.md) -------------------------------------------

    def submit(
        self,
        command: str | Sequence[str],
        *,
        require: Iterable[str] = (),
        want: Iterable[str] = (),
        priority: int = 0,
        max_attempts: int | None = None,
        timeout_s: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        after: Iterable[int] = (),
        after_any: Iterable[int] = (),
        retries: int = 0,
        retry_delay_s: float = 0.0,
        idempotency_key: str | None = None,
        group: str | None = None,
        resources: Mapping[str, int | str] | None = None,
    ) -> int:
        """Queue one command (a shell string, or words quoted into one); its task id.

        It runs in `cwd` (default: this process's directory) with `env` set on top of
        the worker's environment, as `kickoff new` does; only where the `resources` it
        asks for are free (`{"gpu": 2, "mem": "16G"}`), holding them while it runs.

        Raises:
            InvalidInput, TooLarge: a field breaks a rule (the message names it).
            NotFound: an `after` id is no task.
        """
        task = task_spec(
            command,
            require=require,
            want=want,
            priority=priority,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            cwd=cwd,
            env=env,
            after=after,
            after_any=after_any,
            retries=retries,
            retry_delay_s=retry_delay_s,
            idempotency_key=idempotency_key,
            resources=resources,
        )
        return self.submit_many([task], group=group)[0]

    def submit_many(
        self,
        tasks: Iterable[str | Mapping[str, Any]],
        *,
        group: str | None = None,
        max_running: int | None = None,
    ) -> list[int]:
        """Queue many tasks (commands, or task objects as docs/api.md lists their fields,
        `task_spec` makes one) in batches of up to 10,000; their ids, in order.

        With `group` or `max_running`, they join one group (a new one the server names
        when `group` is None), at most `max_running` of them running at once.

        Raises:
            InvalidInput, TooLarge, NotFound: a batch was refused (the ones before it
                were queued: see `submitted` on the exception).
        """
        specs = [task_spec(t) if isinstance(t, str) else dict(t) for t in tasks]
        wanted: dict[str, Any] | None = None
        if group is not None or max_running is not None:
            wanted = {k: v for k, v in (("name", group), ("max_running", max_running)) if v}
        return self.submit_batches(specs, group=wanted)[0]

    def submit_batches(
        self,
        specs: builtins.list[dict[str, Any]],
        *,
        group: dict[str, Any] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> tuple[builtins.list[int], str | None]:
        """Task objects in batches (`batches`); their ids in order, and the name of the
        group they joined. `group` is the first batch's (`{}`: a new one the server
        names); the later ones join the group it was given. `on_batch(n)` after each.

        Raises:
            KickoffError: a batch was refused; `submitted` on it holds the ids before it.
        """
        ids: builtins.list[int] = []
        label: str | None = None
        for batch in batches(specs):
            body: dict[str, Any] = batch[0] if len(specs) == 1 else {"tasks": batch}
            if group is not None:
                body = {**body, "group": group if label is None else {"name": label}}
            try:
                answer = self.post("/v1/tasks", body)
            except KickoffError as exc:
                exc.submitted = ids  # type: ignore[attr-defined]
                raise
            ids.extend(answer["ids"])
            label = answer.get("group", label)
            if on_batch is not None:
                on_batch(len(batch))
        return ids, label

    def list(
        self,
        *,
        state: str | Iterable[str] | None = None,
        group: str | None = None,
        limit: int = 50,
        after: int = 0,
    ) -> builtins.list[Task]:
        """A page of tasks by id: the live ones unless `state` says (`"all"`, `"failed"`,
        or several), the first `limit` (at most 10,000) after id `after`."""
        states = [state] if isinstance(state, str) else builtins.list(state or [])
        page = self.request(
            "GET",
            "/v1/tasks",
            params={"state": states, "group": group, "limit": limit, "after": after or None},
        )
        return [Task(task) for task in page["tasks"]]

    def wait(
        self,
        task_id: int,
        *,
        timeout_s: float | None = None,
        on_poll: Callable[[builtins.list[Task]], None] | None = None,
    ) -> Task:
        """Block until the task finished (succeeded, failed or cancelled); the task.

        Raises:
            NotFound: no such task.
            KickoffError: timeout_s passed first.
        """
        return self.wait_all([task_id], timeout_s=timeout_s, on_poll=on_poll)[0]

    def wait_all(
        self,
        ids: Iterable[int],
        *,
        timeout_s: float | None = None,
        on_poll: Callable[[builtins.list[Task]], None] | None = None,
    ) -> builtins.list[Task]:
        """Block until every task finished; the tasks, in the order given. `on_poll` sees
        the latest of each after every look (a progress bar, say).

        Raises:
            NotFound: an id is no task.
            KickoffError: timeout_s passed first (the message says how many are left).
        """
        wanted = builtins.list(dict.fromkeys(ids))
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        done: dict[int, Task] = {}
        delay = WAIT_FIRST_S
        while True:
            latest = self.get_many([i for i in wanted if i not in done])
            done.update((i, t) for i, t in latest.items() if t.finished)
            if on_poll is not None:
                on_poll([done.get(i) or latest[i] for i in wanted])
            if len(done) == len(wanted):
                return [done[i] for i in wanted]
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                left = [i for i in wanted if i not in done]
                states = [latest[i]["state"] for i in left]
                counts = " · ".join(
                    f"{states.count(s)} {s}" for s in dict.fromkeys(sorted(states, key=_rank))
                )
                # the base class, not a new one: every error code is one the API can send
                raise KickoffError(
                    f"timed out after {timeout_s:g}s: {len(left)} of {len(wanted)} tasks "
                    f"not finished ({counts}; first: {left[0]})"
                )
            time.sleep(delay if deadline is None else min(delay, deadline - now))
            delay = min(delay * 1.5, WAIT_MAX_S)

    def get_many(self, ids: Iterable[int]) -> dict[int, Task]:
        """The tasks by id: one by one, or a page of 10,000 at a time over their range.

        Raises:
            NotFound: an id is no task.
        """
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        low, high = wanted[0], wanted[-1]
        if (high - low) // MAX_PAGE + 1 >= len(wanted):
            return {task_id: self.get(task_id) for task_id in wanted}
        found: dict[int, Task] = {}
        after: int | None = low - 1
        while after is not None and after < high:
            page = self.request(
                "GET", "/v1/tasks", params={"state": "all", "after": after, "limit": MAX_PAGE}
            )
            found.update((t["id"], Task(t)) for t in page["tasks"] if t["id"] <= high)
            after = page["next_after"]
        missing = [task_id for task_id in wanted if task_id not in found]
        if missing:
            more = f" (and {len(missing) - 1} more)" if missing[1:] else ""
            raise NotFound(f"no task {missing[0]}{more}")
        return {task_id: found[task_id] for task_id in wanted}

    def why(self, task_id: int) -> dict[str, Any]:
        """Why the task is where it is (`kickoff why`): its `summary` line, and for a pending
        task the workers that could run it and what each took first, by which rule; for a
        waiting one its dependencies or retry; each attempt and why it ended (docs/cli.md
        lists the fields).

        Raises:
            NotFound: no such task.
        """
        return dict(self.request("GET", f"/v1/tasks/{task_id}/why"))

    def cancel(self, task_id: int) -> str:
        """Cancel a task (and what waits on it); its state now: `cancelled`, or
        `cancelling` while its worker stops it.

        Raises:
            NotFound: no such task.
            Conflict: it has already finished.
        """
        answer = self.request("POST", f"/v1/tasks/{task_id}/cancel")
        return str(answer["state"])

    def logs(
        self,
        task_id: int,
        *,
        attempt: int | None = None,
        follow: bool = False,
        offset: int = 0,
        on_attempt: Callable[[int], None] | None = None,
        from_first: bool = False,
    ) -> Iterator[bytes]:
        """The output of the task's latest attempt (or of `attempt`), from byte `offset`
        (negative: that many bytes before the end), as the server keeps it.

        With `follow`, new output as it arrives, until the task ended: through its
        retries when no attempt is named (`on_attempt(N)` is told when attempt N begins;
        with `from_first`, from its first attempt on, however far it got already),
        reconnecting while the server restarts. Then `get(task_id)` says how it ended.

        Raises:
            NotFound: no such task or attempt.
        """
        if not follow:
            yield from self._read_output(task_id, attempt, offset)
            return
        follower = _Follower(self, task_id, attempt, offset, on_attempt)
        if from_first and attempt is None:
            follower.ended = 0  # as if attempt 0 had been shown: attempt 1 is next
        yield from follower.chunks()

    def _read_output(self, task_id: int, attempt: int | None, offset: int) -> Iterator[bytes]:
        path = f"/v1/tasks/{task_id}/output"
        while True:
            data, headers = self.get_bytes(path, attempt=attempt, offset=offset)
            if data:
                yield data
            attempt = int(headers["x-kickoff-attempt"])
            offset = int(headers["x-kickoff-next-offset"])
            if offset >= int(headers["x-kickoff-size"]):
                return

    def output_info(self, task_id: int, attempt: int | None = None) -> dict[str, int | bool]:
        """What the server keeps of an attempt's output: `attempt`, `size` (bytes kept),
        `total` (bytes the task wrote, as far as it heard), `cap`, `running`."""
        _, headers = self.get_bytes(
            f"/v1/tasks/{task_id}/output", attempt=attempt, offset=-1, limit=1
        )
        info: dict[str, int | bool] = {
            name: int(headers[f"x-kickoff-{name}"]) for name in ("attempt", "size", "total", "cap")
        }
        info["running"] = headers.get("x-kickoff-running") == "1"
        return info

    def events(
        self,
        *,
        task_id: int | None = None,
        types: Iterable[str] = (),
        after: int = 0,
        limit: int = 1000,
        follow: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Events of the log after seq `after` (of one task, of some types), as JSON
        objects; with `follow`, then live ones as they are recorded, until the server
        stops (or the loop breaks)."""
        params: dict[str, Any] = {"task": task_id, "type": builtins.list(types) or None}
        if follow:
            for line in self.stream_lines("/v1/events/stream", after=after, **params):
                if line.startswith("data: "):
                    yield jsonlib.loads(line[6:])
            return
        while True:
            page = self.request(
                "GET", "/v1/events", params={**params, "after": after, "limit": limit}
            )
            yield from page["events"]
            if len(page["events"]) < limit:
                return
            after = page["events"][-1]["seq"]

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


def batches(tasks: Sequence[dict[str, Any]]) -> Iterator[builtins.list[dict[str, Any]]]:
    """At most MAX_BATCH tasks, and well under the server's body limit, per request."""
    batch: builtins.list[dict[str, Any]] = []
    size = 0
    for task in tasks:
        cost = len(task["command"]) * 2 + 200  # (JSON escaping, the other fields)
        if batch and (len(batch) >= MAX_BATCH or size + cost > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(task)
        size += cost
    if batch:
        yield batch


def _rank(state: str) -> int:
    order = ("pending", "waiting", "running", "cancelling", "succeeded", "failed", "cancelled")
    return order.index(state) if state in order else len(order)


def task_spec(
    command: str | Sequence[str],
    *,
    require: Iterable[str] = (),
    want: Iterable[str] = (),
    priority: int = 0,
    max_attempts: int | None = None,
    timeout_s: float | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    after: Iterable[int] = (),
    after_any: Iterable[int] = (),
    retries: int = 0,
    retry_delay_s: float = 0.0,
    idempotency_key: str | None = None,
    resources: Mapping[str, int | str] | None = None,
) -> dict[str, Any]:
    """A task object for `submit_many`, with the fields given (the others the server's
    defaults); `cwd` defaults to this process's directory, made absolute.

    Raises:
        InvalidInput: this process's directory cannot be read.
    """
    if not isinstance(command, str):
        import shlex

        command = command[0] if len(command) == 1 else shlex.join(command)
    try:
        where = os.path.abspath(cwd if cwd is not None else os.getcwd())
    except OSError as exc:
        raise InvalidInput(f"the current directory cannot be read ({exc.strerror})") from None
    fields: dict[str, Any] = {
        "command": command,
        "require": sorted(require),
        "want": sorted(want),
        "priority": priority,
        "max_attempts": max_attempts,
        "timeout_s": timeout_s,
        "cwd": where,
        "env": dict(env or {}),
        "after": builtins.list(after),
        "after_any": builtins.list(after_any),
        "retries": retries,
        "retry_delay_s": retry_delay_s,
        "idempotency_key": idempotency_key,
        "resources": dict(resources or {}),
    }
    return {name: value for name, value in fields.items() if value or name == "priority"}


class _Follower:
    """Client.logs(follow=True): stream an attempt's output until it ended; then, unless
    one was named, each next attempt's in turn, until the task is finished; through
    server restarts (from the byte it got to)."""

    def __init__(
        self,
        client: Client,
        task_id: int,
        attempt: int | None,
        offset: int,
        on_attempt: Callable[[int], None] | None,
    ) -> None:
        self.client, self.task_id, self.on_attempt = client, task_id, on_attempt
        self.fixed = attempt is not None
        self.current = attempt  # the attempt being streamed
        self.offset = offset  # the next byte of it
        self.ended: int | None = None  # the last attempt streamed to its end
        self.path = f"/v1/tasks/{task_id}/output"

    def chunks(self) -> Iterator[bytes]:
        delay = WAIT_FIRST_S
        away_since: float | None = None
        while True:
            try:
                task = self.client.get(self.task_id)
                if not self._choose(task):  # not started (again) yet
                    if task.finished:
                        return
                    time.sleep(delay)
                    delay = min(delay * 1.5, WAIT_MAX_S)
                    continue
                yield from self._stream()
                task = self.client.get(self.task_id)
                away_since = None
            except ServerUnreachable:
                now = time.monotonic()
                away_since = away_since or now
                if now - away_since > FOLLOW_RECONNECT_S:
                    raise
                time.sleep(WAIT_MAX_S)  # the server restarts, say: go on where it was
                continue
            assert self.current is not None
            if _runs(task, self.current):
                # the stream ended with the attempt still running (the server stopped),
                # or before what GET answers shows its end: look again shortly
                time.sleep(WAIT_FIRST_S)
                continue
            self.ended, delay = self.current, WAIT_FIRST_S
            if self.fixed or (task.finished and task["attempt"] == self.current):
                return

    def _choose(self, task: Task) -> bool:
        """Move on to the attempt to stream now; False if it has not started yet."""
        if self.fixed:
            return True
        latest: int = task["attempt"]
        wanted = latest if self.ended is None else self.ended + 1
        if wanted == 0 or wanted > latest:
            return False
        if wanted != self.current:
            if self.current is not None:  # the next attempt: from its start
                self.offset = 0
            self.current = wanted
            if self.on_attempt is not None:
                self.on_attempt(wanted)
        return True

    def _stream(self) -> Iterator[bytes]:
        client, attempt = self.client, self.current
        if self.offset < 0:  # so many bytes before the end: where that is now
            _, headers = client.get_bytes(self.path, attempt=attempt, offset=self.offset, limit=1)
            self.offset = int(headers["x-kickoff-offset"])
        for chunk in client.stream_bytes(self.path, attempt=attempt, offset=self.offset, follow=1):
            self.offset += len(chunk)
            yield chunk


def _runs(task: Task, attempt: int) -> bool:
    """Whether the attempt may still write output."""
    return task["attempt"] == attempt and task["state"] in ("running", "cancelling")


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
