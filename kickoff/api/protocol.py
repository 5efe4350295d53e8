"""The server's HTTP/1.1 connections: uvicorn's httptools protocol with kickoff's limits.

Everything a peer can do before its token is looked at is bounded here, below the ASGI app,
at a cost linear in what it sends:

- a request head (request line and headers) over MAX_HEAD_BYTES, or with more than
  MAX_HEADERS headers, is answered 431 and the connection closed; no more of it is
  buffered (httptools joins the pieces of a header with `bytes +=`, uncapped);
- a connection that sends nothing is closed after the keep-alive timeout, also before its
  first request; a head must be complete HEAD_TIMEOUT_S after its first byte, and a body
  keep arriving at MIN_BODY_RATE (slowloris): else 408 and close;
- at most `max_connections` are open: at the limit a new connection closes the one that
  has waited longest for its next request (an idle or half-sent one), so idle sockets can
  never lock out a worker or client; when every connection is busy, it is refused with 503.

Writes made in one turn of the event loop also leave in one send (_OneSend). The ASGI app
(auth, body limits, routes) lives in api/app.py; running uvicorn in kickoff/server.py.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from kickoff import defaults

logger = logging.getLogger(__name__)

# A refusal's answer is sent, then the peer's further bytes are read and dropped for up
# to this long before closing: closing with unread input would reset the connection and
# could destroy the answer before the peer reads it.
LINGER_S = 1.0
LOG_EVERY_S = 10.0  # connection-limit lines: the first at once, then one per interval


class _OneSend:
    """A transport whose writes made in one turn of the event loop leave in one send.

    uvicorn writes a response's head and body separately: two system calls, and about
    half the time the client wakes up twice (once per piece). Everything else is the
    wrapped transport's.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@dataclass
class Guard:
    """One server's connection limit and the connections waiting for their next request,
    longest-waiting first (the ones closed first when the limit is reached)."""

    max_connections: int
    waiting: dict[KickoffProtocol, None] = field(default_factory=dict)
    lingering: dict[KickoffProtocol, None] = field(default_factory=dict)  # closed first
    closed: int = 0  # since the last log line
    refused: int = 0
    logged_at: float | None = None
    flush_pending: bool = False

    def wait(self, protocol: KickoffProtocol) -> None:
        self.waiting.pop(protocol, None)
        self.waiting[protocol] = None

    def busy(self, protocol: KickoffProtocol) -> None:
        self.waiting.pop(protocol, None)

    def linger(self, protocol: KickoffProtocol) -> None:
        self.waiting.pop(protocol, None)
        self.lingering[protocol] = None

    def forget(self, protocol: KickoffProtocol) -> None:
        self.waiting.pop(protocol, None)
        self.lingering.pop(protocol, None)

    def admit(self, protocol: KickoffProtocol, open_now: int) -> bool:
        """Make room for a new connection; False if it must be refused."""
        if open_now <= self.max_connections:
            return True
        victim = next(iter(self.lingering), None) or next(iter(self.waiting), None)
        if victim is None:
            self.refused += 1
        else:
            self.forget(victim)
            victim.transport.close()
            self.closed += 1
        self._log(protocol.loop, open_now)
        return victim is not None

    def _log(self, loop: asyncio.AbstractEventLoop, open_now: int) -> None:
        now = loop.time()
        if self.logged_at is not None and now - self.logged_at < LOG_EVERY_S:
            if not self.flush_pending:
                self.flush_pending = True
                loop.call_at(self.logged_at + LOG_EVERY_S, self._log_later, loop)
            return
        self.logged_at = now
        logger.warning(
            "connection limit reached (%d open, limit %d): %d idle closed, "
            "%d new refused (every connection busy)",
            open_now - 1,
            self.max_connections,
            self.closed,
            self.refused,
        )
        self.closed = self.refused = 0

    def _log_later(self, loop: asyncio.AbstractEventLoop) -> None:
        self.flush_pending = False
        if self.closed or self.refused:
            self.logged_at = None
            self._log(loop, self.max_connections + 1)


class KickoffProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module docstring."""

    guard: Guard  # set on the subclass protocol_class() makes

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head_bytes = 0
        self._headers = 0
        self._in_head = True  # between requests or reading a head
        self._refusal: tuple[int, str, str] | None = None
        self._lingering = False
        self._timer: asyncio.TimerHandle | None = None
        self._body_started = 0.0
        self._body_bytes = 0

    # -- connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        super().connection_made(cast(asyncio.Transport, _OneSend(cast(Any, transport))))
        if not self.guard.admit(self, len(self.connections)):
            # no lingering: under a flood of connections, each would hold a descriptor
            self._refuse(503, "unavailable", "too many connections; try again later", linger=False)
            return
        self.guard.wait(self)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        self._unset_keepalive_if_required()
        if not self._in_head:
            self._body_bytes += len(data)
            self._feed(data)
        else:
            room = defaults.MAX_HEAD_BYTES - self._head_bytes
            self._head_bytes += min(len(data), room)
            self._feed(data[:room] if len(data) > room else data)
            if self._in_head and self._head_bytes >= defaults.MAX_HEAD_BYTES:
                self._refuse(
                    431,
                    "too_large",
                    f"request line and headers are over the {defaults.MAX_HEAD_BYTES} byte limit",
                )
                return
            if len(data) > room and not self.transport.is_closing():
                self._feed(data[room:])
        if self._lingering or self.transport.is_closing():
            return
        if self._in_head and self._head_bytes and self._timer is None:
            self._timer = self.loop.call_later(defaults.HEAD_TIMEOUT_S, self._head_timed_out)
        elif not self._in_head and self.cycle.more_body and self._timer is None:
            self._body_started = self.loop.time()
            self._timer = self.loop.call_later(defaults.BODY_TIMEOUT_S, self._body_timed_out)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            logger.debug("upgrade requested from %s: not supported", self.client)
        except httptools.HttpParserError as exc:
            refusal = self._refusal or (400, "malformed_request", "invalid HTTP request")
            logger.debug("refused a request from %s: %s (%s)", self.client, refusal[2], exc)
            self._refuse(*refusal)

    # -- parser callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._headers > defaults.MAX_HEADERS:
            self._refusal = (431, "too_large", f"more than {defaults.MAX_HEADERS} headers")
            raise ValueError(self._refusal[2])  # stops the parser: see _feed
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._body_bytes = 0
        self._cancel_timer()
        self.guard.busy(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._cancel_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self.guard.wait(self)

    # -- time-outs and refusals ----------------------------------------------------

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._in_head and not self.transport.is_closing():
            logger.debug("request head from %s timed out", self.client)
            self._refuse(408, "timeout", "the request head did not arrive in time")

    def _body_timed_out(self) -> None:
        """The body must arrive at MIN_BODY_RATE after a grace of BODY_TIMEOUT_S."""
        self._timer = None
        if self._in_head or self.transport.is_closing() or not self.cycle.more_body:
            return
        due = (
            self._body_started + defaults.BODY_TIMEOUT_S + self._body_bytes / defaults.MIN_BODY_RATE
        )
        if self.loop.time() < due:
            self._timer = self.loop.call_at(due, self._body_timed_out)
            return
        logger.debug("request body from %s timed out", self.client)
        self._refuse(408, "timeout", "the request body did not arrive in time")

    def _refuse(self, status: int, code: str, message: str, *, linger: bool = True) -> None:
        """Answer with an error (unless a response has begun) and close the connection."""
        cycle = self.cycle
        # a response has begun (or, for this request's body, even ended): no second one
        answered = (
            cycle is not None
            and cycle.response_started
            and (not cycle.response_complete or not self._in_head)
        )
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() ends, its send() is dropped
            cycle.message_event.set()
        self._cancel_timer()
        self._unset_keepalive_if_required()
        if not answered:
            body = orjson.dumps({"error": {"code": code, "message": message}})
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        b"content-type: application/json\r\n",
                        b"content-length: %d\r\n" % len(body),
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        self._lingering = True
        self.guard.linger(self)
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()


def protocol_class(max_connections: int) -> type[asyncio.Protocol]:
    """The protocol class for one server, with its own connection limit."""
    return type("Protocol", (KickoffProtocol,), {"guard": Guard(max_connections)})
