"""Running the server: uvicorn around create_app(), start-up lines, graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, cast

import uvicorn

from kickoff import auth
from kickoff.api.app import create_app
from kickoff.errors import KickoffError
from kickoff.service import Service
from kickoff.state.task_state import LIVE_STATES
from kickoff.store.db import lock_exclusive

logger = logging.getLogger(__name__)


Drain = Callable[[int], None]


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

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _sending_once(protocol: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class, its transport wrapped in _OneSend."""

    class OneSendProtocol(protocol):  # type: ignore[misc,valid-type]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # uvloop's transports are not asyncio.Transport subclasses, but behave as one
            super().connection_made(_OneSend(cast(asyncio.Transport, transport)))

    return OneSendProtocol


class _Server(uvicorn.Server):
    """uvicorn, plus: on SIGINT/SIGTERM, release long-poll claims at once and exit 0.

    With a `drain` (kickoff up: pass the signal on to the local worker and wait for it),
    the first two signals run it in a thread while the server keeps serving, so the worker
    can report, requeue and deregister; the server stops once it returns. A third signal
    stops the server at once.
    """

    def __init__(self, config: uvicorn.Config, service: Service, drain: Drain | None) -> None:
        super().__init__(config)
        self.service = service
        self.drain = drain
        self.drains = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        loop = self.service.loop
        if self.drain is not None and self.drains < 2 and loop is not None:
            self.drains += 1
            drain = self.drain

            async def drain_then_stop() -> None:
                await asyncio.to_thread(drain, sig)
                self.drains = 2
                self.handle_exit(sig, None)

            loop.call_soon_threadsafe(lambda: loop.create_task(drain_then_stop()))
            return
        self.service.begin_shutdown()
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # a graceful stop is a normal exit, not a re-raise


def worker_hint(host: str, port: int, token: str) -> str:
    """The ready-to-paste command that starts a worker on another machine."""
    shown = (
        host if host not in ("0.0.0.0", "::", "127.0.0.1", "localhost") else socket.gethostname()
    )
    return f"kickoff worker --server {shown}:{port} --token {token} --have TAGS"


def startup_lines(service: Service, host: str, port: int, token: str) -> list[str]:
    counts = service.state.counts
    live = ", ".join(f"{counts[s]} {s}" for s in LIVE_STATES)
    return [
        f"kickoff server listening on http://{host}:{port}",
        f"database: {service.db_path}",
        f"replayed {service.replayed} events in {service.replay_s:.3f}s; tasks: {live}; "
        f"{len(service.state.workers)} workers known",
        f"start a worker elsewhere: {worker_hint(host, port, token)}",
        "(a worker on this machine needs no --token)",
    ]


def serve(
    *,
    db_path: Path,
    host: str,
    port: int,
    heartbeat_timeout_s: float,
    rotate_token: bool = False,
    on_ready: Callable[[Service, str], None] | None = None,
    drain: Drain | None = None,
    announce: Callable[[str], None] = lambda line: print(line, flush=True),
) -> None:
    """Run a server until SIGINT/SIGTERM.

    Raises:
        DatabaseRefused: the database cannot be used (reported before listening).
    """
    lock = lock_exclusive(db_path)  # held until this process ends
    token = auth.load_or_create_token(db_path, rotate=rotate_token)
    try:
        auth.remember_token(port, token, host=host)
    except KickoffError as exc:  # local clients will need --token; not a reason to stop
        logger.warning("%s; local clients need --token or KICKOFF_TOKEN", exc.message)
    service = Service(db_path, heartbeat_timeout_s=heartbeat_timeout_s)
    app = create_app(
        service, token=token, token_file=auth.token_path(db_path), manage_service=False
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        loop="uvloop" if _has("uvloop") else "asyncio",
        http=_sending_once(_http_protocol()),
        ws="none",
        timeout_graceful_shutdown=5,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is not to be trusted by default, and costs a layer
    )
    server = _Server(config, service, drain)

    async def main() -> None:
        await service.start()
        tune_runtime()
        try:
            serving = asyncio.get_running_loop().create_task(server.serve())
            while not server.started and not serving.done():
                await asyncio.sleep(0.005)
            if server.started:
                for line in startup_lines(service, host, port, token):
                    announce(line)
                if on_ready is not None:
                    on_ready(service, token)
            try:
                await serving
            except SystemExit:
                raise KickoffError(f"cannot listen on {host}:{port} (in use?)") from None
            if not server.started:
                raise KickoffError(f"cannot listen on {host}:{port} (in use?)")
        finally:
            await service.stop()

    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(main())
    finally:
        os.close(lock)


def tune_runtime() -> None:
    """Once the state is loaded: keep the interpreter's own costs off the hot paths.

    - The live state is long-lived: frozen, the cyclic garbage collector no longer rescans
      it. A bulk submit allocates a few objects per task and most live on (the tasks):
      with the default young generation of 700 the collector ran every few tasks; 50,000
      costs little memory and saves about a tenth of a bulk submit's CPU.
    - The writer thread gives up the GIL in every SQLite step and then waits for the event
      loop to give it back, by default up to 5 ms later: with both busy (a bulk submit:
      the loop parses and encodes the next batch while the writer inserts this one) the
      writer mostly waited. A 0.1 ms switch interval: bulk submits 88k -> 108k tasks/s
      over HTTP (bench/); an idle or lightly loaded server never contends.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    sys.setswitchinterval(0.0001)


def _http_protocol() -> type[asyncio.Protocol]:
    if _has("httptools"):
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return H11Protocol


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return sys.platform != "win32"
