"""Task output on the server: what workers send is kept in `<db>.output` (store/output.py)
by one thread of its own, outside the event log and its writer; readers following an
attempt are woken by each append.

Back-pressure: a request that sends output is answered once its bytes are stored, and a
worker sends the next only after that answer (one at a time per worker, at most
MAX_CHUNK_BYTES each), so a task writing faster than the server stores waits in the
worker's log file, not in the server's memory; and each attempt keeps at most `cap` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from kickoff import defaults
from kickoff.dblocation import Location
from kickoff.errors import StaleAttempt, Unavailable
from kickoff.state import decide
from kickoff.state.fold import State
from kickoff.state.task_state import TaskState
from kickoff.store.output import OutputFile, Stored, output_path

logger = logging.getLogger(__name__)

Key = tuple[int, int]  # task id, attempt
RUNNING = (TaskState.RUNNING, TaskState.CANCELLING)


def check_running(state: State, task_id: int, attempt: int, worker_id: str) -> None:
    """Output is taken only from the attempt a task runs now, from its worker.

    Raises:
        NotFound: no such task.
        StaleAttempt: that attempt is over (or is another worker's).
    """
    task = decide.find_task(state, task_id)
    if task is None or task.state not in RUNNING:
        raise StaleAttempt(f"task {task_id} is not running: output of attempt {attempt} refused")
    if task.attempt != attempt or task.worker_id != worker_id:
        raise StaleAttempt(
            f"task {task_id} attempt {attempt} on {worker_id} is stale: the current attempt "
            f"is {task.attempt} on {task.worker_id or 'no worker'}"
        )


def attempt_over(state: State, task_id: int, attempt: int) -> bool:
    """Whether the attempt can write no more (the task moved on, or ended)."""
    task = state.tasks.get(task_id)
    return task is None or task.attempt != attempt or task.state not in RUNNING


class Output:
    """One server's task output (see the module docstring)."""

    def __init__(
        self,
        db_path: Location,
        *,
        cap: int = defaults.OUTPUT_CAP_BYTES,
        budget: int = defaults.OUTPUT_BUDGET_BYTES,
        live: Callable[[int], bool] = lambda task_id: False,
    ) -> None:
        self.path = output_path(db_path)
        self.cap = cap
        self.budget = budget
        self.live = live  # a live task's output is never pruned (it may still be writing)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kickoff-output")
        self._file: OutputFile | None = None
        self._last: dict[Key, asyncio.Future[Stored]] = {}  # each key's last append queued
        self._watchers: dict[Key, list[asyncio.Future[None]]] = {}
        self._pruning = False

    @property
    def kept(self) -> int:
        """Bytes of output kept, all tasks together."""
        return 0 if self._file is None else self._file.kept

    async def start(self) -> None:
        """Raises: DatabaseRefused: the output file cannot be used."""
        loop = asyncio.get_running_loop()
        self._file = await loop.run_in_executor(self._pool, OutputFile, self.path)

    async def stop(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, file.close)
        self._pool.shutdown(wait=True)
        for watchers in self._watchers.values():
            for waiter in watchers:
                if not waiter.done():
                    waiter.set_result(None)

    def append(
        self, task_id: int, attempt: int, offset: int, data: bytes
    ) -> asyncio.Future[Stored]:
        """Queue bytes of an attempt's output (see OutputFile.append); the future gives
        what is stored once they are. Appends run in the order they were queued.

        Raises (from the future):
            Conflict: bytes before `offset` never arrived.
        """
        file = self._file
        if file is None:
            raise Unavailable("the server is shutting down")
        key = (task_id, attempt)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._pool, lambda: file.append(task_id, attempt, offset, data, cap=self.cap)
        )
        self._last[key] = future
        future.add_done_callback(lambda f: self._appended(key, f))
        return future

    def _appended(self, key: Key, future: asyncio.Future[Stored]) -> None:
        if self._last.get(key) is future:
            del self._last[key]
        for waiter in self._watchers.pop(key, ()):
            if not waiter.done():
                waiter.set_result(None)
        if not future.cancelled() and future.exception() is None:
            self._maybe_prune()

    def _maybe_prune(self) -> None:
        file = self._file
        if file is None or self._pruning or file.kept <= self.budget:
            return
        self._pruning = True

        def prune() -> int:
            try:
                return file.prune(self.budget, keep=self.live)
            finally:
                self._pruning = False

        future = asyncio.get_running_loop().run_in_executor(self._pool, prune)
        future.add_done_callback(self._pruned)

    def _pruned(self, future: asyncio.Future[int]) -> None:
        if future.exception() is not None:
            logger.error("pruning task output failed: %s", future.exception())
        elif future.result():
            logger.info(
                "deleted the output of the %d oldest task(s): all output is kept within %d bytes",
                future.result(),
                self.budget,
            )

    async def settled(self, task_id: int, attempt: int) -> None:
        """Return once every append queued for the attempt so far is stored."""
        last = self._last.get((task_id, attempt))
        if last is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(last)

    async def read(
        self, task_id: int, attempt: int, offset: int, limit: int
    ) -> tuple[int, bytes, Stored]:
        """Up to `limit` kept bytes from `offset` on (a negative offset counts back from
        the end): where they start, the bytes, and what is stored of the attempt."""
        file = self._file
        if file is None:
            raise Unavailable("the server is shutting down")

        def read() -> tuple[int, bytes, Stored]:
            stored = file.stored(task_id, attempt)
            start = max(0, stored.size + offset) if offset < 0 else offset
            return start, file.read(task_id, attempt, start, limit), stored

        return await asyncio.get_running_loop().run_in_executor(self._pool, read)

    def watch(self, task_id: int, attempt: int) -> asyncio.Future[None]:
        """A future that resolves at the attempt's next append (or `wake`): take it before
        reading, so that nothing stored between the read and the wait is missed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault((task_id, attempt), []).append(waiter)
        return waiter

    def unwatch(self, task_id: int, attempt: int, waiter: asyncio.Future[None]) -> None:
        watchers = self._watchers.get((task_id, attempt))
        if watchers is not None and waiter in watchers:
            watchers.remove(waiter)
            if not watchers:
                del self._watchers[(task_id, attempt)]

    def wake(self, task_id: int, attempt: int) -> None:
        """Wake the attempt's followers (it ended: they look once more and stop)."""
        for waiter in self._watchers.pop((task_id, attempt), ()):
            if not waiter.done():
                waiter.set_result(None)
