"""A TCP proxy in a thread that holds back the server's answers to chosen requests, as a
slow link or a loaded server would: real sockets both ways, nothing of kickoff replaced.

Each client connection gets its own connection to the server (none while the server is
down: the client's connection is then closed, as a dead server's would be). Requests on a
connection go one at a time (the worker's client never pipelines), so the answer after a
request whose first line starts with one of `slow` is the one to hold back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from tests.conftest import free_port


class LatencyProxy:
    """Listens on 127.0.0.1:`port` and forwards to 127.0.0.1:`target`."""

    def __init__(self, target: int, *, slow: tuple[bytes, ...], delay_s: float) -> None:
        self.target = target
        self.slow = slow
        self.delay_s = delay_s
        self.port = free_port()
        self.delayed = 0  # answers held back so far
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.run_until_complete(server.wait_closed())
            self._loop.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            client_w.close()
            return
        slow_answers: list[bool] = []
        up = asyncio.ensure_future(self._requests(client_r, server_w, slow_answers))
        down = asyncio.ensure_future(self._answers(server_r, client_w, slow_answers))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for writer in (client_w, server_w):
            writer.close()

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: list[bool]
    ) -> None:
        head = b""
        while data := await reader.read(65536):
            if not slow or head:  # the start of a request: look at its first line
                head += data
                if b"\r\n" in head:
                    slow.append(head.startswith(self.slow))
                    head = b""
            writer.write(data)
            await writer.drain()

    async def _answers(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: list[bool]
    ) -> None:
        while data := await reader.read(65536):
            if slow and slow.pop():
                self.delayed += 1
                await asyncio.sleep(self.delay_s)
            slow.clear()  # the rest of this answer, until the next request
            writer.write(data)
            await writer.drain()

    @contextlib.contextmanager
    def running(self) -> Iterator[LatencyProxy]:
        self._thread.start()
        self._ready.wait(5)
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
