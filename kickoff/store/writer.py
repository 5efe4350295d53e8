"""Group commit: concurrent appends share one transaction and one fsync.

Callers hand over records (already applied in memory) and await a future that resolves
once the batch holding them is durable. While the writer thread commits one batch, the
next one gathers. A failed batch fails every record queued behind it too: their seqs
followed the lost ones, so the owner must rebuild its state from the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from kickoff.errors import Unavailable
from kickoff.store.database import Database
from kickoff.store.log import Recorded, Row

logger = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 50_000


class GroupWriter:
    """The one task that writes to the database."""

    def __init__(
        self,
        db: Database,
        *,
        on_commit: Callable[[list[Row]], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.db = db
        self._on_commit = on_commit
        self._on_failure = on_failure
        self._queue: deque[tuple[list[Recorded], asyncio.Future[None]]] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kickoff-writer")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0
        self.records = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="kickoff-writer")

    def submit(self, records: list[Recorded]) -> asyncio.Future[None]:
        """Queue records for the next batch; the future resolves when they are durable."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closing:
            future.set_exception(Unavailable("the server is shutting down"))
            return future
        self._queue.append((records, future))
        self._wakeup.set()
        return future

    def _take(self) -> list[tuple[list[Recorded], asyncio.Future[None]]]:
        taken, count = [], 0
        while self._queue and count < MAX_BATCH_RECORDS:
            item = self._queue.popleft()
            taken.append(item)
            count += len(item[0])
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            taken = self._take()
            records = [r for recs, _ in taken for r in recs]
            try:
                rows = await loop.run_in_executor(self._executor, self.db.write, records)
            except BaseException as exc:  # storage failed: nothing of this batch is durable
                logger.error("write failed, %d records refused: %s", len(records), exc)
                failed = taken + list(self._queue)
                self._queue.clear()
                for _, future in failed:
                    if not future.done():
                        future.set_exception(
                            exc if isinstance(exc, Unavailable) else Unavailable(str(exc))
                        )
                if self._on_failure is not None:
                    self._on_failure(exc)
                continue
            self.batches += 1
            self.records += len(records)
            for _, future in taken:
                if not future.done():
                    future.set_result(None)
            if self._on_commit is not None:
                self._on_commit(rows)

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)
