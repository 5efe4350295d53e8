"""Claims: handing tasks to workers, at once or by long-poll.

A claim that finds nothing parks until a recorded batch makes work available; that batch
then stages the parked claims' TaskClaimed events too (recording.py's `on_queue`), so a
task submitted to an idle worker costs one fsync before it starts, and a completion shares
its commit with the worker's next claim. Also here: the commands of recent submissions,
kept so that a claim's answer rarely reads the log. Which task a worker gets is
state/matcher.py's and state/decide.py's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kickoff.errors import DatabaseRefused, KickoffError, Unavailable
from kickoff.events.model import (
    Event,
    TaskCancelled,
    TaskClaimed,
    TaskCompleted,
    TaskFailed,
    TaskReleased,
    TaskRequeued,
    TaskSubmitted,
    WorkerTagsChanged,
)
from kickoff.service.reads import Reads
from kickoff.service.recording import Batch, Commit, Recording
from kickoff.state import decide
from kickoff.state.decide import Completion

logger = logging.getLogger(__name__)

# Commands of recent submissions kept for their claims, bounded by their memory (not by
# count: a cluster's 50,000 short commands submitted before its workers claim all fit,
# where a bound of 20,000 sent 30,000 claims to read the log, a quarter of the server's
# CPU per task). An entry costs its strings plus ~300 bytes of tuple, key and dict slot.
RECENT_COMMAND_BYTES = 32 * 1024 * 1024
RECENT_COMMAND_CHARS = 1024
_ENTRY_BYTES = 300

# Events after which a parked claim may find a task: work appeared or a slot came free.
FREES_WORK = (
    TaskSubmitted,
    TaskReleased,
    TaskRequeued,
    TaskCompleted,
    TaskCancelled,
    TaskFailed,
    WorkerTagsChanged,
)


# A future that resolves when the worker hangs up, or a function that starts watching for
# that and returns such a future: called only if a claim has to wait (watching a
# connection costs a task per request, and most claims find a task at once).
Gone = asyncio.Future[None] | Callable[[], asyncio.Future[None]]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A task handed to a worker."""

    task_id: int
    attempt: int
    command: str
    timeout_s: float | None
    array_index: int | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    resources: tuple[tuple[str, int], ...] = ()  # what the attempt holds (its TaskClaimed)
    gpu_ids: tuple[int, ...] = ()


class ClaimRefused(Exception):
    """complete_and_claim: the completion counted, but the claim sent with it could not be
    made (`refused` says why: the worker was lost or stopped meanwhile)."""

    def __init__(self, refused: KickoffError) -> None:
        super().__init__(refused.message)
        self.refused = refused


@dataclass(slots=True)
class _Parked:
    """A long-poll claim waiting for work.

    `handed` resolves with the claims recorded for it and the commit they ride in, or with
    None: look again (its worker's situation changed, or the server is stopping).
    """

    worker_id: str
    max_tasks: int
    handed: asyncio.Future[tuple[list[TaskClaimed], Commit] | None]
    gone: asyncio.Future[None] | None


# What a claim hands out of a submission: command, timeout, array index, cwd, env.
_Runnable = tuple[str, float | None, int | None, str | None, tuple[tuple[str, str], ...]]


class Claims:
    """Claims at once and parked long-polls, over one server's recording."""

    def __init__(self, recording: Recording, reads: Reads) -> None:
        self.recording = recording
        self.reads = reads
        self.shutting_down = False
        self._parked: dict[int, _Parked] = {}  # by arrival: the longest waiting is served first
        self._recent_commands: OrderedDict[int, _Runnable] = OrderedDict()
        self._recent_bytes = 0  # what _recent_commands holds, by _size
        recording.on_queue = self._serve_parked
        recording.on_reload = self._forget_commands  # unwritten ids will be reused

    def remember_commands(self, events: list[Event]) -> None:
        """Keep short commands of new tasks for their claim (saves a read on the hot path)."""
        recent = self._recent_commands
        added = 0
        for event in events:
            if isinstance(event, TaskSubmitted) and len(event.command) <= RECENT_COMMAND_CHARS:
                runnable = (event.command, event.timeout_s, event.array_index, event.cwd, event.env)
                recent[event.task_id] = runnable
                added += _size(runnable)
        self._recent_bytes += added
        if self._recent_bytes > RECENT_COMMAND_BYTES:
            dropped = 0
            while self._recent_bytes - dropped > RECENT_COMMAND_BYTES and recent:
                dropped += _size(recent.popitem(last=False)[1])
            self._recent_bytes -= dropped

    def _forget_commands(self) -> None:
        self._recent_commands.clear()
        self._recent_bytes = 0

    def wake(self) -> None:
        """Make every parked claim look again (a worker stopped or was lost, shutdown)."""
        parked, self._parked = self._parked, {}
        for waiting in parked.values():
            if not waiting.handed.done():
                waiting.handed.set_result(None)

    async def claim(
        self,
        worker_id: str,
        *,
        max_tasks: int,
        wait_s: float,
        gone: Gone | None = None,
        recorded: Commit | None = None,
    ) -> list[Claimed]:
        """Up to max_tasks tasks for the worker, waiting up to wait_s for one to appear.

        `gone` resolves when the worker hangs up: a waiting claim then ends without taking
        anything. `recorded` is the commit of events recorded just before (a completion):
        the claim's own events share it.

        Raises:
            NotFound, IllegalTransition: see decide.claim.
            Unavailable: storage is failing.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        futures: list[Commit] = [recorded] if recorded is not None else []
        while True:
            future, claimed = self._claim_now(worker_id, max_tasks)
            if future is not None:
                futures.append(future)
            remaining = deadline - loop.time()
            if claimed or remaining <= 0 or self.shutting_down:
                break
            if callable(gone):
                gone = gone()
            if gone is not None and gone.done():
                break
            handed = await self._park(worker_id, max_tasks, remaining, gone)
            if handed is not None:
                claimed, commit = handed
                futures.append(commit)
                break
            if loop.time() >= deadline or (gone is not None and gone.done()):
                break
            # woken to look again
        if futures:
            await asyncio.gather(*futures)
        return await self._handed(claimed)

    async def complete_and_claim(
        self,
        report: Completion,
        *,
        max_tasks: int,
        wait_s: float,
        gone: Gone | None = None,
    ) -> list[Claimed]:
        """A completion and the worker's next claim, in one commit when a task is ready.

        Raises:
            StaleAttempt, NotFound, ...: the completion's (see decide.complete); nothing
                was recorded.
            ClaimRefused: the completion counted, but the claim could not be made.
            Unavailable: storage is failing.
        """
        events = decide.complete(self.recording.state, report)
        batch = self.recording.begin()
        self.recording.stage(batch, events)
        try:
            claimed = self._stage_claims(batch, report.worker_id, max_tasks)
        except KickoffError as exc:
            await _durable(self.recording.queue(batch))
            if isinstance(exc, Unavailable):
                raise
            raise ClaimRefused(exc) from exc
        future = self.recording.queue(batch)
        if not claimed and wait_s > 0:
            try:  # nothing ready: wait like a claim; the completion's commit comes along
                return await self.claim(
                    report.worker_id, max_tasks=max_tasks, wait_s=wait_s, gone=gone, recorded=future
                )
            except KickoffError as exc:
                await _durable(future)
                if isinstance(exc, Unavailable):
                    raise
                raise ClaimRefused(exc) from exc
        await _durable(future)
        return await self._handed(claimed)

    def _claim_now(self, worker_id: str, max_tasks: int) -> tuple[Commit | None, list[TaskClaimed]]:
        """Record up to max_tasks claims for the worker, if tasks are ready."""
        batch = self.recording.begin()
        try:
            claimed = self._stage_claims(batch, worker_id, max_tasks)
        finally:  # what was staged is applied already: it is recorded regardless
            future = self.recording.queue(batch)
        return future, claimed

    def _stage_claims(self, batch: Batch, worker_id: str, max_tasks: int) -> list[TaskClaimed]:
        """Raises: NotFound, IllegalTransition (see decide.claim), before staging anything
        for a claim that cannot be made."""
        claimed: list[TaskClaimed] = []
        for _ in range(max_tasks):
            events = decide.claim(self.recording.state, worker_id)
            if not events:
                break
            self.recording.stage(batch, events)
            assert isinstance(events[0], TaskClaimed)
            claimed.append(events[0])
        return claimed

    def _serve_parked(self, batch: Batch) -> Callable[[Commit], None] | None:
        """Claim for parked long-polls, oldest first, into a batch that frees work; what
        tells them of its commit."""
        if not self._parked or not any(isinstance(r.event, FREES_WORK) for r in batch.records):
            return None
        handed: list[tuple[_Parked, list[TaskClaimed]]] = []
        for key, parked in list(self._parked.items()):
            if parked.gone is not None and parked.gone.done():
                continue  # its worker hung up: it takes nothing
            try:
                claimed = self._stage_claims(batch, parked.worker_id, parked.max_tasks)
            except KickoffError:  # its worker was lost or stopped: let the claim find out
                del self._parked[key]
                parked.handed.set_result(None)
                continue
            if claimed:
                del self._parked[key]
                handed.append((parked, claimed))

        def hand(commit: Commit) -> None:
            for parked, theirs in handed:
                parked.handed.set_result((theirs, commit))

        return hand

    async def _park(
        self,
        worker_id: str,
        max_tasks: int,
        timeout_s: float,
        gone: asyncio.Future[None] | None,
    ) -> tuple[list[TaskClaimed], Commit] | None:
        """Wait until a record hands this claim tasks; None on a wake-up, time-out or hang-up."""
        loop = asyncio.get_running_loop()
        parked = _Parked(worker_id, max_tasks, loop.create_future(), gone)
        key = id(parked)
        self._parked[key] = parked
        try:
            watch: set[asyncio.Future[Any]] = {parked.handed}
            if gone is not None:
                watch.add(gone)
            await asyncio.wait(watch, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self._parked.get(key) is parked:
                del self._parked[key]
        # Handed tasks are recorded against this worker: they are answered even when it
        # hung up or the wait timed out in the same instant (a lease covers the rest).
        return parked.handed.result() if parked.handed.done() else None

    async def _handed(self, claimed: list[TaskClaimed]) -> list[Claimed]:
        """What the worker is told to run, for its committed claims."""
        handed = []
        for event in claimed:
            task = await self._claimed(event.task_id, event.attempt)
            if task is not None and event.resources:
                task = dataclasses.replace(task, resources=event.resources, gpu_ids=event.gpu_ids)
            if task is not None:
                handed.append(task)
        return handed

    async def _claimed(self, task_id: int, attempt: int) -> Claimed | None:
        """The claimed task with its command: submitted to this process, or read from the
        log and checked against the hash chain. A submission that does not verify is
        never handed out: the attempt fails instead (None)."""
        known = self._recent_commands.pop(task_id, None)
        if known is not None:
            self._recent_bytes -= _size(known)
            return Claimed(task_id, attempt, *known)
        try:
            submitted = await self.reads.query(self.reads.recorder.submission(task_id))
        except DatabaseRefused as exc:
            logger.error("damaged submission of task=%d: %s", task_id, exc.message)
            reason = f"its submission in the log is damaged: {exc.message}"
            failed = decide.fail_unreadable(self.recording.state, task_id, attempt, reason=reason)
            await self.recording.commit(failed)
            return None
        return Claimed(
            task_id,
            attempt,
            submitted.command,
            submitted.timeout_s,
            submitted.array_index,
            submitted.cwd,
            submitted.env,
        )


def _size(runnable: _Runnable) -> int:
    """What an entry of the recent commands costs, roughly (bytes)."""
    if runnable[3] is None and not runnable[4]:  # no cwd, no env: the common case
        return _ENTRY_BYTES + len(runnable[0])
    command, _, _, cwd, env = runnable
    size = _ENTRY_BYTES + len(command) + len(cwd or "")
    for name, value in env:
        size += 100 + len(name) + len(value)
    return size


async def _durable(commit: Commit | None) -> None:
    if commit is not None and not commit.done():
        await commit
