"""Group commit: concurrent appends share one transaction and one fsync.

Callers hand over records (already applied in memory) and await a future that resolves
once the batch holding them is durable. A dedicated thread writes big batches: while it
commits one, the next one gathers and the event loop parses the next request. A small
batch queued while that thread is idle is committed on the event loop at the end of the
turn that queued it (everything queued in that turn shares the commit), which spares the
hand-off to the thread and back. Never both at once: one batch is written at a time, in
seq order.

A failed batch fails every record queued behind it too: their seqs followed the lost
ones, so the owner must rebuild its state from the log. Nothing more is written until
the event loop has failed those records and the owner has rebuilt its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

from kickoff.errors import Unavailable
from kickoff.store.chain import Encoded, Recorded, Row, joined

logger = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 50_000
# A batch up to this size, queued while the writer thread is idle, is written on the event
# loop at the end of its turn instead: no hand-off to the thread and back (two context
# switches and a GIL hand-over, a tenth of the server's CPU per task in a drain, and
# 0.1 ms of a submit's latency). Bigger batches go to the thread, which inserts them while
# the loop parses the next.
INLINE_MAX_RECORDS = 256

Queued = tuple[list[Recorded], Encoded | None, asyncio.Future[None]]


class Batches(Protocol):
    """Where batches go: one durable transaction each (kickoff/database.py's Database)."""

    def write(self, records: list[Recorded], encoded: Encoded | None = None) -> list[Row]:
        """Raises: Unavailable: nothing of the batch was written."""
        ...


class GroupWriter:
    """The one thread that writes to the database."""

    def __init__(
        self,
        db: Batches,
        *,
        on_commit: Callable[[list[Row]], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.db = db
        self._on_commit = on_commit
        # a database server's commit is round trips away: never on the loop (its thread)
        self._inline_max = INLINE_MAX_RECORDS if getattr(db, "local", True) else -1
        self._on_failure = on_failure
        self._queue: deque[Queued] = deque()
        self._ready = threading.Condition()  # guards all the fields below it
        self._queued_records = 0
        self._writing = False  # a batch is being written, by the thread or on the loop
        self._flush_scheduled = False  # an inline write is due at the end of the turn
        self._held = False  # a failed batch is being handled on the event loop
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None
        self.batches = 0
        self.records = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="kickoff-writer", daemon=True)
        self._thread.start()

    def submit(
        self, records: list[Recorded], encoded: Encoded | None = None
    ) -> asyncio.Future[None]:
        """Queue records (and their rows, if encoded already) for the next batch; the
        future resolves when they are durable."""
        assert self._loop is not None, "start() first"
        future: asyncio.Future[None] = self._loop.create_future()
        with self._ready:
            if self._closing:
                future.set_exception(Unavailable("the server is shutting down"))
                return future
            self._queue.append((records, encoded, future))
            self._queued_records += len(records)
            if self._writing or self._queued_records > self._inline_max:
                self._ready.notify()
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._write_inline)
        return future

    def _take(self) -> list[Queued]:
        taken, count = [], 0
        while self._queue and count < MAX_BATCH_RECORDS:
            item = self._queue.popleft()
            taken.append(item)
            count += len(item[0])
        self._queued_records -= count
        self._writing = True
        return taken

    def _run(self) -> None:
        """The writer thread: take what is queued, write it, tell the event loop."""
        while True:
            with self._ready:
                while self._held or self._writing or not (self._queue or self._closing):
                    self._ready.wait()
                if not self._queue:  # closing, and everything is written
                    break
                taken = self._take()
            try:
                rows = self._write(taken)
            except BaseException as exc:  # storage failed: nothing of this batch is durable
                self._call(self._failed, taken, exc)
                continue
            self._call(self._committed, taken, rows)
        self._call(self._finished)

    def _write(self, taken: list[Queued]) -> list[Row]:
        """Write a taken batch (by the thread or on the loop, never both at once).

        On a failure nothing more is taken until _failed has run on the event loop.
        """
        records = [r for recs, _, _ in taken for r in recs]
        try:
            rows = self.db.write(records, _encoded(taken))
        except BaseException as exc:
            logger.error("write failed, %d records refused: %s", len(records), exc)
            with self._ready:
                self._writing = False
                self._held = True
            raise
        with self._ready:
            self._writing = False
            self.batches += 1
            self.records += len(records)
            if self._queue:  # queued during the write: the thread takes it
                self._ready.notify()
        return rows

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self._loop.call_soon_threadsafe(callback, *args)

    # -- on the event loop ---------------------------------------------------------

    def _write_inline(self) -> None:
        """At the end of the turn that queued a small batch: write it here, unless the
        thread got busy meanwhile (then the thread takes it next)."""
        with self._ready:
            self._flush_scheduled = False
            if self._writing or self._held or not self._queue:
                return
            taken = self._take()
        try:
            rows = self._write(taken)
        except BaseException as exc:
            self._failed(taken, exc)
            return
        self._committed(taken, rows)

    def _committed(self, taken: list[Queued], rows: list[Row]) -> None:
        for _, _, future in taken:
            if not future.done():
                future.set_result(None)
        if self._on_commit is not None:
            self._on_commit(rows)

    def _failed(self, taken: list[Queued], exc: BaseException) -> None:
        with self._ready:
            failed = taken + list(self._queue)
            self._queue.clear()
            self._queued_records = 0
        for _, _, future in failed:
            if not future.done():
                future.set_exception(exc if isinstance(exc, Unavailable) else Unavailable(str(exc)))
        try:
            if self._on_failure is not None:
                self._on_failure(exc)
        finally:
            with self._ready:
                self._held = False
                self._ready.notify()

    def _finished(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self._stopped is not None:
            await self._stopped
        if self._thread is not None:
            self._thread.join()


def _encoded(taken: list[Queued]) -> Encoded | None:
    """The batch's rows, if every part came encoded (else the log encodes them all)."""
    parts = [encoded for _, encoded, _ in taken if encoded is not None]
    if len(parts) < len(taken):
        return None
    return parts[0] if len(parts) == 1 else joined(parts)
