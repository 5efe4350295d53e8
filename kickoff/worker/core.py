"""What the parts of one worker share: what it was told (`WorkerConfig`), its mode, its
registration, its running jobs and undelivered reports, the ledger, the log files, one
signal for "something changed", and the one way it sends a request (`call`).

No behaviour beyond slot accounting and waiting lives here: the registration and lease
are `session.py`'s, claiming `claims.py`'s, running and reporting `jobs.py`'s, heartbeats
`heartbeat.py`'s, reconciliation `reconcile.py`'s, the tags file `tags.py`'s, and starting
and stopping the whole `worker.py`'s and `stopping.py`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from kickoff import defaults
from kickoff.errors import IllegalTransition, KickoffError, NotFound
from kickoff.tags import check_tags
from kickoff.worker import _retry, logfiles
from kickoff.worker._retry import Requester
from kickoff.worker.ledger import Key, Ledger
from kickoff.worker.outbox import Outbox
from kickoff.worker.process import Job
from kickoff.worker.replies import Registration

T = TypeVar("T")

LOST = (NotFound, IllegalTransition)  # what a request gets once the worker was lost


class Mode(StrEnum):
    RUNNING = "running"  # claiming
    DRAINING = "draining"  # no more claims; running tasks finish and are reported
    ABORTING = "aborting"  # running tasks are killed and reported cancelled


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """Everything `kickoff worker` was told."""

    name: str
    log_dir: Path
    tags: frozenset[str] = frozenset()
    slots: int = defaults.SLOTS
    tags_file: Path | None = None
    burst: bool = False
    grace_s: float = defaults.CANCEL_GRACE_S
    claim_wait_s: float = defaults.WORKER_CLAIM_WAIT_S
    host: str | None = None
    keep_logs: int = defaults.KEEP_LOGS  # task log files kept per server; 0 keeps them all
    warden: bool = True  # a warden process stops the tasks if this worker dies or freezes
    exit_with_fd: int | None = None  # end of file on it: who started the worker is gone
    resources: tuple[tuple[str, int], ...] = ()  # declared amounts (gpus.py filled in `gpu`)
    gpu_ids: tuple[int, ...] = ()  # the devices it hands out


class Core:
    """The state one worker's parts share, and the little every part does with it: count
    free slots, signal and await a change (every wait goes through one signal, so a mode
    change or a freed slot wakes whoever waits), and send a request (`call`)."""

    def __init__(self, client: Requester, config: WorkerConfig) -> None:
        self.client = client
        self.config = config
        self.mode = Mode.RUNNING
        self.registration: Registration | None = None
        self.lost_ids: set[str] = set()  # registrations the server no longer knows
        self.jobs: dict[int, Job] = {}  # by task id
        self.outbox = Outbox()
        self.ledger = Ledger()
        self.file_tags: frozenset[str] = frozenset()
        self.log_files = logfiles.LogFiles(config.log_dir)
        self.log_dir = config.log_dir  # this server's directory in it, once registered
        self.claim_request: asyncio.Task[int] | None = None  # the long-poll in flight
        self.reconcile_at: float | None = None  # look for lost claim answers from then on
        self.abort_deadline: float | None = None  # set by a second Ctrl-C
        self.loop: asyncio.AbstractEventLoop | None = None  # set by Worker.run
        self._change = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def free_slots(self) -> int:
        return self.config.slots - len(self.jobs) - len(self.outbox)

    def busy(self) -> bool:
        return bool(self.jobs or self.outbox)

    def heard_of(self, key: Key, mark: int) -> bool:
        """Whether this worker holds the attempt, or let go of it since it asked the
        question `mark`: then an answer naming it is old news, never a task to start."""
        return key[0] in self.jobs or key in self.outbox or self.ledger.ended_since(key, mark)

    def tags(self, file_tags: frozenset[str] | None = None) -> frozenset[str]:
        """The tags to register with: --have plus the tags file's.

        Raises:
            InvalidInput: more tags than a worker may have.
        """
        extra = self.file_tags if file_tags is None else file_tags
        return check_tags(self.config.tags | extra, field="tags", limit=defaults.MAX_WORKER_TAGS)

    def changed(self) -> None:
        """Wake everything waiting for a slot, a report, or a mode change."""
        self._change.set()
        self._change = asyncio.Event()

    async def wait_change(self, timeout_s: float | None = None) -> None:
        change = self._change
        if timeout_s is None:
            await change.wait()
            return
        # asyncio.timeout, not wait_for: 3.11's wait_for loses a cancel that arrives as
        # the awaited thing finishes, and a stopping worker then waits for that task forever
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await change.wait()

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        self.changed()

    def time_left(self) -> float | None:
        if self.abort_deadline is None:
            return None
        return max(0.0, self.abort_deadline - time.monotonic())

    def deadline_passed(self) -> bool:
        return self.abort_deadline is not None and time.monotonic() >= self.abort_deadline

    async def race(self, aw: Awaitable[T], stop: Callable[[], bool]) -> bool:
        """Await aw unless stop() turns true first (then aw is cancelled); True if it ended.

        Raises:
            whatever aw raises.
        """
        task = asyncio.ensure_future(aw)
        try:
            while not task.done():
                if stop():
                    return False
                change = asyncio.ensure_future(self.wait_change(self.time_left()))
                await asyncio.wait({task, change}, return_when=asyncio.FIRST_COMPLETED)
                change.cancel()
            task.result()
            return True
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run coro beside the loops (cancelled when the worker shuts down)."""
        task = (self.loop or asyncio.get_running_loop()).create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        retry: Callable[[KickoffError], bool] = _retry.unreachable,
        give_up: Callable[[], bool] | None = None,
        on_maybe_sent: Callable[[], None] | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> Any:
        """One request, tried again while `retry` says so (see `_retry.call`); the
        back-off never waits longer than a heartbeat interval.

        Raises:
            KickoffError: any other error answer (the caller decides what it means).
            GaveUp: give_up() turned true.
        """
        reg = self.registration
        return await _retry.call(
            self.client,
            method,
            path,
            what=what,
            max_delay_s=reg.heartbeat_interval_s if reg else defaults.BACKOFF_MAX_S,
            json=json,
            params=params,
            timeout_s=timeout_s,
            retry=retry,
            give_up=give_up,
            on_maybe_sent=on_maybe_sent,
            on_send=on_send,
        )

    def reconcile_soon(self) -> None:
        """A claim's answer may have been lost: the next heartbeat looks."""
        self.reconcile_at = time.monotonic()

    def interrupt_claim(self) -> bool:
        """Cancel the long-poll in flight; True if there was one."""
        request = self.claim_request
        if request is None or request.done():
            return False
        request.cancel()
        return True
