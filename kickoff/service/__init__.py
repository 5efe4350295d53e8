"""The only glue: validate -> decide -> record (apply + queue for group commit) -> answer.

Every change goes through `_record`: events get their seq and time, are applied to the
in-memory state at once (so concurrent requests see each other and never both claim one
task), and are queued for the group-commit writer. The request is answered only after its
batch is durable. A failed write fails every queued record and the state is rebuilt from
the log, so memory never keeps what the disk does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from kickoff import defaults
from kickoff.clock import Clock, utc_now
from kickoff.database import Database
from kickoff.errors import DatabaseRefused, KickoffError, NotFound, Unavailable
from kickoff.events.model import (
    Event,
    GroupCreated,
    TaskCancelled,
    TaskCancelRequested,
    TaskClaimed,
    TaskCompleted,
    TaskFailed,
    TaskReleased,
    TaskRequeued,
    TaskSubmitted,
    WorkerRegistered,
    WorkerTagsChanged,
)
from kickoff.projections import queries
from kickoff.service.output import Output
from kickoff.service.subscriptions import Subscribers
from kickoff.state import decide
from kickoff.state.decide import Completion, GroupRequest, NewTask
from kickoff.state.fold import State, apply
from kickoff.state.workflows import group_label
from kickoff.store.chain import Encoded, Recorded, Row
from kickoff.store.recorder import Recorder
from kickoff.store.writer import GroupWriter

logger = logging.getLogger(__name__)

RECENT_COMMANDS = 20_000  # commands kept for claims right after submit: at most ~20 MB
RECENT_COMMAND_CHARS = 1024


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


@dataclass(slots=True)
class _Parked:
    """A long-poll claim waiting for work.

    `handed` resolves with the claims recorded for it and the commit they ride in, or with
    None: look again (its worker's situation changed, or the server is stopping).
    """

    worker_id: str
    max_tasks: int
    handed: asyncio.Future[tuple[list[TaskClaimed], asyncio.Future[None]] | None]
    gone: asyncio.Future[None] | None


# What a claim hands out of a submission: command, timeout, array index, cwd, env.
_Runnable = tuple[str, float | None, int | None, str | None, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True, kw_only=True)
class StartUp:
    """How the server got its state: from the projections' checkpoint at `checkpoint_seq`
    plus the `folded` events after it (a full replay: checkpoint 0, every event folded)."""

    checkpoint_seq: int
    folded: int
    seconds: float


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


class Service:
    """One server's state, writer and reader over one database file."""

    def __init__(
        self,
        db_path: Path | str,
        *,
        clock: Clock = utc_now,
        heartbeat_timeout_s: float = defaults.HEARTBEAT_TIMEOUT_S,
        expire_every_s: float | None = None,
        full_replay: bool = False,
        output_cap: int = defaults.OUTPUT_CAP_BYTES,
        output_budget: int = defaults.OUTPUT_BUDGET_BYTES,
    ) -> None:
        self.db_path = Path(db_path)
        self.clock = clock
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.expire_every_s = expire_every_s or min(1.0, heartbeat_timeout_s / 4)
        self.full_replay = full_replay
        self.state = State()
        self.start_up = StartUp(checkpoint_seq=0, folded=0, seconds=0.0)
        self.log_id = ""  # the database's identity (set by start)
        self._db: Database | None = None
        self._writer: GroupWriter | None = None
        self._reader: aiosqlite.Connection | None = None
        self._seq = 0
        self._tail_hash = b""  # the hash of the last row encoded (seq self._seq)
        self._parked: dict[int, _Parked] = {}  # by arrival: the longest waiting is served first
        self.subscribers = Subscribers()
        self._expirer: asyncio.Task[None] | None = None
        self._retrier: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._recent_commands: OrderedDict[int, _Runnable] = OrderedDict()
        self._broken: KickoffError | None = None  # set while the state cannot be reloaded
        self._leases_stale = False  # set after a failed write: restart leases before expiry
        self._written_since_failure = True
        self.shutting_down = False
        self.output = Output(self.db_path, cap=output_cap, budget=output_budget)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the database, replay the log, record ServerStarted, start the loops.

        Raises:
            DatabaseRefused: the database cannot be used.
        """
        started = time.perf_counter()
        self.loop = asyncio.get_running_loop()
        self._db = await asyncio.to_thread(Database, self.db_path)
        await self.output.start()
        if self.full_replay:
            self.state = await asyncio.to_thread(self._db.replay)
            checkpoint, folded = 0, self.state.last_seq
        else:
            self.state, folded = await asyncio.to_thread(self._db.open_checked)
            checkpoint = self.state.last_seq - folded
        self.start_up = StartUp(
            checkpoint_seq=checkpoint, folded=folded, seconds=time.perf_counter() - started
        )
        self._seq, self._tail_hash = self._db.tail()
        assert self._seq == self.state.last_seq
        self.log_id = self._db.log_id()  # "" for a new database: its ServerStarted's, below
        self._writer = GroupWriter(self._db, on_commit=self._publish, on_failure=self._reload)
        self._writer.start()
        self._reader = await aiosqlite.connect(self.db_path)
        await self._reader.execute("PRAGMA query_only = 1")
        started_at = self._record(decide.server_started(self.heartbeat_timeout_s))
        if not self.log_id:  # its first row, just encoded: nothing else is recorded yet
            self.log_id = self._tail_hash.hex()
        if started_at is not None:
            await started_at
        self._expirer = asyncio.get_running_loop().create_task(self._expire_loop())
        self._retrier = asyncio.get_running_loop().create_task(self._retry_loop())

    def begin_shutdown(self) -> None:
        """Release long-poll claims and end event streams now, so the server's graceful
        stop does not wait for them; safe to call from a signal handler."""
        self.shutting_down = True
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._wake_claimers)
            self.loop.call_soon_threadsafe(self.subscribers.end)

    async def stop(self) -> None:
        """Finish in-flight commits and close everything."""
        for timer in (self._expirer, self._retrier):
            if timer is not None:
                timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await timer
        self._wake_claimers()
        self.subscribers.end()
        if self._writer is not None:
            await self._writer.close()
        if self._reader is not None:
            await self._reader.close()
        if self._db is not None:
            self._db.close()
        await self.output.stop()

    # -- recording -------------------------------------------------------------

    def _record(self, events: list[Event]) -> asyncio.Future[None] | None:
        """Give events their seq and time, apply them, queue them; None if no events."""
        return self._record_and_claim(events, None, 0)[0]

    def _record_and_claim(
        self, events: list[Event], worker_id: str | None, max_tasks: int
    ) -> tuple[asyncio.Future[None] | None, list[TaskClaimed], KickoffError | None]:
        """Record events, then up to max_tasks claims for worker_id, as one batch.

        When the batch makes work available, parked claims are served at once and their
        TaskClaimed events join it too: a task submitted to an idle worker costs one fsync
        before it starts, and a completion shares its commit with the worker's next claim.
        Returns the batch's commit (None if nothing was recorded), the claims, and the
        claim's error (the worker was lost or stopped) instead of raising it: the events
        are recorded regardless.
        """
        if self._broken is not None:
            self._retry_reload()
        at = self.clock()
        records: list[Recorded] = []
        self._stage(events, records, at)
        claimed: list[TaskClaimed] = []
        error: KickoffError | None = None
        if worker_id is not None:
            try:
                claimed = self._stage_claims(worker_id, max_tasks, records, at)
            except KickoffError as exc:
                error = exc
        if not records:
            return None, claimed, error
        handed: list[tuple[_Parked, list[TaskClaimed]]] = []
        if self._parked and any(isinstance(r.event, FREES_WORK) for r in records):
            handed = self._serve_parked(records, at)
        assert self._writer is not None
        future = self._writer.submit(records, self._encode(records))
        for parked, theirs in handed:
            parked.handed.set_result((theirs, future))
        return future, claimed, error

    def _encode(self, records: list[Recorded]) -> Encoded | None:
        """The records' log rows, chained on from the last ones encoded. Done here, not
        on the writer thread: the writer is a bulk submit's bottleneck.

        None if they cannot be encoded (a bug): the writer then encodes them and fails.
        """
        try:
            assert self._db is not None
            encoded = self._db.recorder.encode(self._tail_hash, records[0].seq - 1, records)
        except Exception:
            logger.exception("cannot encode events %d-%d", records[0].seq, records[-1].seq)
            return None
        self._tail_hash = encoded.rows[-1].hash
        return encoded

    def _stage(self, events: list[Event], records: list[Recorded], at: datetime) -> None:
        for event in events:
            self._seq += 1
            records.append(Recorded(self._seq, at, event))
            apply(self.state, event, seq=self._seq, at=at)

    def _stage_claims(
        self, worker_id: str, max_tasks: int, records: list[Recorded], at: datetime
    ) -> list[TaskClaimed]:
        """Raises: NotFound, IllegalTransition (see decide.claim), before staging anything
        for a claim that cannot be made."""
        claimed: list[TaskClaimed] = []
        for _ in range(max_tasks):
            events = decide.claim(self.state, worker_id)
            if not events:
                break
            self._stage(events, records, at)
            assert isinstance(events[0], TaskClaimed)
            claimed.append(events[0])
        return claimed

    def _serve_parked(
        self, records: list[Recorded], at: datetime
    ) -> list[tuple[_Parked, list[TaskClaimed]]]:
        """Claim for parked long-polls, oldest first; their events are added to records."""
        handed = []
        for key, parked in list(self._parked.items()):
            if parked.gone is not None and parked.gone.done():
                continue  # its worker hung up: it takes nothing
            try:
                claimed = self._stage_claims(parked.worker_id, parked.max_tasks, records, at)
            except KickoffError:  # its worker was lost or stopped: let the claim find out
                del self._parked[key]
                parked.handed.set_result(None)
                continue
            if claimed:
                del self._parked[key]
                handed.append((parked, claimed))
        return handed

    async def _commit(self, events: list[Event]) -> None:
        future = self._record(events)
        if future is not None:
            await future

    def _reload(self, exc: BaseException) -> None:
        """A write failed: rebuild the state from what is durable.

        Heartbeats could not be recorded meanwhile, so leases restart (as after a restart)
        before the next expiry pass. If even reading fails, every change is refused with
        503 until a reload succeeds.
        """
        assert self._db is not None
        logger.error("rebuilding state from the log after a failed write")
        self._recent_commands.clear()  # ids not written will be given to other tasks
        self._leases_stale = True
        self._written_since_failure = False
        try:
            self.state, _ = self._db.load()
            self._seq, self._tail_hash = self._db.tail()
        except KickoffError as failure:
            logger.error("cannot reload the state: %s", failure.message)
            self._broken = failure
            return
        self._broken = None

    def _retry_reload(self) -> None:
        """Raises: Unavailable while the state cannot be reloaded."""
        assert self._broken is not None
        self._reload(self._broken)
        if self._broken is not None:
            raise Unavailable(f"storage unavailable: {self._broken.message}")

    def _publish(self, rows: list[Row]) -> None:
        self._written_since_failure = True
        self.subscribers.publish(rows)

    # -- commands --------------------------------------------------------------

    async def submit(
        self,
        tasks: list[NewTask],
        *,
        submitted_by: str | None = None,
        group: GroupRequest | None = None,
    ) -> list[int]:
        """Queue tasks; returns their ids (existing ids for known idempotency keys)."""
        ids, _ = await self.submit_to_group(tasks, submitted_by=submitted_by, group=group)
        return ids

    async def submit_to_group(
        self,
        tasks: list[NewTask],
        *,
        submitted_by: str | None = None,
        group: GroupRequest | None = None,
    ) -> tuple[list[int], str | None]:
        """As submit; also the name of the group the tasks joined (None without one).

        Raises:
            Conflict, NotFound: see decide.submit.
        """
        events, ids = decide.submit(self.state, tasks, submitted_by=submitted_by, group=group)
        label = None if group is None else self._group_label(group, events)
        future = self._record(events)
        if future is None:
            return ids, label
        self._remember_commands(events)
        await future
        return ids, label

    def _group_label(self, group: GroupRequest, events: list[Event]) -> str | None:
        """The name of the group a submit's new tasks joined (or, none being new, the
        group it named)."""
        for event in events:
            if isinstance(event, GroupCreated):
                return group_label(event.group_id, event.name)
            if isinstance(event, TaskSubmitted) and event.group_id is not None:
                return self.state.groups[event.group_id].label
        if group.name is None:
            return None
        return self.state.groups[decide.find_group(self.state, group.name)].label

    def _remember_commands(self, events: list[Event]) -> None:
        """Keep short commands of new tasks for their claim (saves a read on the hot path)."""
        recent = self._recent_commands
        for event in events:
            if isinstance(event, TaskSubmitted) and len(event.command) <= RECENT_COMMAND_CHARS:
                recent[event.task_id] = (
                    event.command,
                    event.timeout_s,
                    event.array_index,
                    event.cwd,
                    event.env,
                )
        while len(recent) > RECENT_COMMANDS:
            recent.popitem(last=False)

    def _wake_claimers(self) -> None:
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
        recorded: asyncio.Future[None] | None = None,
    ) -> list[Claimed]:
        """Up to max_tasks tasks for the worker, waiting up to wait_s for one to appear.

        `gone` resolves when the worker hangs up: a waiting claim then ends without taking
        anything. `recorded` is the commit of events recorded just before (a completion):
        the claim's own events share it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        futures: list[asyncio.Future[None]] = [recorded] if recorded is not None else []
        while True:
            future, claimed, error = self._record_and_claim([], worker_id, max_tasks)
            if error is not None:
                raise error
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

    async def _park(
        self,
        worker_id: str,
        max_tasks: int,
        timeout_s: float,
        gone: asyncio.Future[None] | None,
    ) -> tuple[list[TaskClaimed], asyncio.Future[None]] | None:
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
            if task is not None:
                handed.append(task)
        return handed

    async def _claimed(self, task_id: int, attempt: int) -> Claimed | None:
        """The claimed task with its command: submitted to this process, or read from the
        log and checked against the hash chain. A submission that does not verify is
        never handed out: the attempt fails instead (None)."""
        known = self._recent_commands.pop(task_id, None)
        if known is not None:
            return Claimed(task_id, attempt, *known)
        try:
            submitted = await self._fetch(self.recorder.submission(task_id))
        except DatabaseRefused as exc:
            logger.error("damaged submission of task=%d: %s", task_id, exc.message)
            reason = f"its submission in the log is damaged: {exc.message}"
            await self._commit(decide.fail_unreadable(self.state, task_id, attempt, reason=reason))
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

    async def heartbeat(self, worker_id: str, running: list[tuple[int, int]]) -> list[int]:
        """Record that the worker lives; returns the task ids it must stop."""
        events, stop = decide.heartbeat(self.state, worker_id, running)
        await self._commit(events)
        return stop

    async def complete(self, report: Completion) -> None:
        events = decide.complete(self.state, report)
        await self._commit(events)

    async def complete_and_claim(
        self,
        report: Completion,
        *,
        max_tasks: int,
        wait_s: float,
        gone: Gone | None = None,
    ) -> tuple[list[Claimed], KickoffError | None]:
        """A completion and the worker's next claim, in one commit when a task is ready.

        The completion counts even when the claim cannot be made (the worker was lost
        meanwhile): then no tasks and the claim's error are returned, not raised.
        """
        events = decide.complete(self.state, report)
        future, claimed, error = self._record_and_claim(events, report.worker_id, max_tasks)
        if error is None and not claimed and wait_s > 0:
            try:  # nothing ready: wait like a claim; the completion's commit comes along
                return await self.claim(
                    report.worker_id, max_tasks=max_tasks, wait_s=wait_s, gone=gone, recorded=future
                ), None
            except KickoffError as exc:
                error = exc
        if future is not None and not future.done():
            await future
        if error is not None:
            if isinstance(error, Unavailable):
                raise error
            return [], error
        return await self._handed(claimed), None

    async def cancel(self, task_id: int, *, requested_by: str | None = None) -> None:
        await self._commit(decide.cancel(self.state, task_id, requested_by=requested_by))

    async def cancel_group(self, name: str, *, requested_by: str | None = None) -> int:
        """Cancel every live task of a group; returns how many were asked to stop.

        Raises:
            NotFound: no such group.
        """
        group_id = decide.find_group(self.state, name)
        events = decide.cancel_group(self.state, group_id, requested_by=requested_by)
        await self._commit(events)
        return sum(1 for e in events if isinstance(e, TaskCancelRequested))

    async def register(
        self, *, name: str, tags: frozenset[str], slots: int, host: str | None = None
    ) -> str:
        events = decide.register(self.state, name=name, tags=tags, slots=slots, host=host)
        await self._commit(events)
        assert isinstance(events[0], WorkerRegistered)
        return events[0].worker_id

    async def change_tags(
        self,
        worker_id: str,
        *,
        add: frozenset[str] = frozenset(),
        remove: frozenset[str] = frozenset(),
        replace: frozenset[str] | None = None,
    ) -> frozenset[str]:
        events = decide.change_tags(self.state, worker_id, add=add, remove=remove, replace=replace)
        await self._commit(events)  # parked claims are served by the change (FREES_WORK)
        return self.state.workers[worker_id].tags

    async def stop_worker(self, worker_id: str) -> None:
        events = decide.stop_worker(self.state, worker_id)
        await self._commit(events)
        self._wake_claimers()

    async def expire(self) -> int:
        """Apply lease expiry as of the clock now; returns the number of events."""
        if self._leases_stale:
            # Heartbeats were refused while storage failed: not the workers' fault. Once a
            # write has gone through again, every lease restarts, as after a restart.
            if not self._written_since_failure:
                return 0
            self._leases_stale = False
            await self._commit(decide.server_started(self.heartbeat_timeout_s))
            return 1
        events = decide.expire(self.state, self.clock(), timeout_s=self.heartbeat_timeout_s)
        await self._commit(events)
        if events:  # requeued tasks were handed out; lost workers' parked claims must end
            self._wake_claimers()
        return len(events)

    async def start_due_retries(self) -> int:
        """Record the delayed retries due by the clock now; returns how many started."""
        now = self.clock()
        if not self.state.retry_heap or self.state.retry_heap[0][0] > now:
            return 0
        events = decide.retries_due(self.state, now)
        await self._commit(events)  # parked claims are served by the requeues (FREES_WORK)
        return len(events)

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(defaults.RETRY_CHECK_S)
            try:
                await self.start_due_retries()
            except Unavailable:
                logger.warning("delayed retries deferred: storage unavailable")

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.expire_every_s)
            try:
                await self.expire()
            except Unavailable:
                logger.warning("lease expiry deferred: storage unavailable")

    # -- queries ---------------------------------------------------------------

    async def _fetch(self, query: queries.Query) -> Any:
        assert self._reader is not None
        rows = await self._reader.execute_fetchall(query.sql, query.params)
        return query.shape(list(rows))

    async def get_task(self, task_id: int) -> dict[str, Any]:
        task = await self._fetch(queries.get_task(task_id))
        if task is None:
            raise NotFound(f"no task {task_id}")
        return dict(task)

    @property
    def recorder(self) -> Recorder:
        """The log's recorder: its queries run on `query`."""
        assert self._db is not None
        return self._db.recorder

    async def query(self, query: queries.Query) -> Any:
        return await self._fetch(query)

    def find_group(self, name: str) -> int:
        """A group's id from its name (or `g<id>`).

        Raises:
            NotFound: no such group.
        """
        return decide.find_group(self.state, name)

    def waiting_for(self, task_id: int) -> list[int]:
        """The dependencies a waiting task still waits for."""
        return self.state.waiting_for(task_id)

    def resolve_worker(self, key: str) -> str:
        """A live worker id from an id or a name.

        Raises:
            NotFound: no live worker with that id or name.
        """
        if key in self.state.workers:
            return key
        named = [w.id for w in self.state.workers.values() if w.name == key]
        if len(named) == 1:
            return named[0]
        if named:
            raise NotFound(
                f"several live workers are named {key!r}; use an id ({', '.join(named)})"
            )
        decide.find_worker(self.state, key)
        raise NotFound(f"no worker {key!r}")

    @property
    def last_seq(self) -> int:
        return self._seq

    def writer_stats(self) -> tuple[int, int]:
        assert self._writer is not None
        return self._writer.batches, self._writer.records
