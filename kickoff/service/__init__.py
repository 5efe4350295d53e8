"""The service: one server's glue between the API and the log. Each command validates,
decides (state/decide.py) and records, and answers after the commit.

`Service` composes the parts, one module each: `startup.py` (open the database, load the
state), `recording.py` (stage, apply, group-commit: the writer), `claims.py` (claims and
long-poll parking), `reads.py` (the read side), `upkeep.py` (lease expiry and delayed
retries), `subscriptions.py` (live rows for event streams), `output.py` (task output, kept
beside the log), `why.py` (the log reads `why` explains from). No SQL and no HTTP here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kickoff import dblocation, defaults
from kickoff.clock import Clock, utc_now
from kickoff.database import Fence
from kickoff.dblocation import Location
from kickoff.events.model import (
    Event,
    GroupCreated,
    TaskCancelRequested,
    TaskSubmitted,
    WorkerRegistered,
)
from kickoff.service import startup
from kickoff.service.claims import Claimed, ClaimRefused, Claims, Gone
from kickoff.service.output import Output
from kickoff.service.reads import Reads
from kickoff.service.recording import Recording
from kickoff.service.startup import StartUp
from kickoff.service.subscriptions import Subscribers
from kickoff.service.upkeep import Upkeep
from kickoff.state import decide
from kickoff.state.decide import Completion, GroupRequest, NewTask
from kickoff.state.fold import State
from kickoff.state.workflows import group_label
from kickoff.store.recorder import Recorder

__all__ = ["ClaimRefused", "Claimed", "Gone", "Service", "StartUp"]


class Service:
    """One server's state, writer and reader over one database (a file, or PostgreSQL's)."""

    def __init__(
        self,
        db_path: Location | str,
        *,
        clock: Clock = utc_now,
        heartbeat_timeout_s: float = defaults.HEARTBEAT_TIMEOUT_S,
        expire_every_s: float | None = None,
        full_replay: bool = False,
        output_cap: int = defaults.OUTPUT_CAP_BYTES,
        output_budget: int = defaults.OUTPUT_BUDGET_BYTES,
        fence: Fence | None = None,
    ) -> None:
        self.db_path = dblocation.location(db_path)
        self.clock = clock
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.full_replay = full_replay
        self.fence = fence  # every commit's check (a lease: store/lease.py)
        self.warm: Callable[[], State] | None = None  # a standby's state, followed warm
        self.start_up = StartUp(checkpoint_seq=0, folded=0, seconds=0.0)
        self.log_id = ""  # the database's identity (set by start)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subscribers = Subscribers()
        self.output = Output(
            self.db_path,
            cap=output_cap,
            budget=output_budget,
            live=lambda task_id: task_id in self.state.tasks,  # (read on the output thread)
        )
        self.recording = Recording(clock=clock, subscribers=self.subscribers)
        self.reads = Reads(self.recording)
        self.claims = Claims(self.recording, self.reads)
        self.upkeep = Upkeep(
            self.recording,
            self.claims,
            heartbeat_timeout_s=heartbeat_timeout_s,
            expire_every_s=expire_every_s or min(1.0, heartbeat_timeout_s / 4),
        )
        # The read side and the claims, as callers use them.
        self.query = self.reads.query
        self.get_task = self.reads.get_task
        self.find_group = self.reads.find_group
        self.waiting_for = self.reads.waiting_for
        self.resolve_worker = self.reads.resolve_worker
        self.claim = self.claims.claim
        self.complete_and_claim = self.claims.complete_and_claim
        self.expire = self.upkeep.expire
        self.start_due_retries = self.upkeep.start_due_retries
        self.writer_stats = self.recording.writer_stats

    @property
    def state(self) -> State:
        """The in-memory state (replaced when rebuilt after a failed write)."""
        return self.recording.state

    @property
    def last_seq(self) -> int:
        return self.recording.seq if self.loop is not None else self.recording.state.last_seq

    async def answer_reads(self, state: State, recorder: Recorder) -> None:
        """Serve reads as a standby (kickoff/leader.py): from `state`, which a follower
        keeps warm, and the shared projections; `start` once it leads (nothing written
        before)."""
        self.recording.state = state
        self.reads.standby_recorder = recorder  # (the log's queries; it records nothing)
        await self.reads.open(self.db_path)

    @property
    def recorder(self) -> Recorder:
        """The log's recorder: its queries run on `query`."""
        return self.reads.recorder

    @property
    def shutting_down(self) -> bool:
        return self.claims.shutting_down

    async def start(self) -> None:
        """Open the database, load the state, record ServerStarted, start the timers.

        Raises:
            DatabaseRefused: the database cannot be used.
        """
        self.loop = asyncio.get_running_loop()
        warm = None if self.warm is None else await asyncio.to_thread(self.warm)
        db, state, self.start_up = await asyncio.to_thread(
            startup.load, self.db_path, full_replay=self.full_replay, fence=self.fence, warm=warm
        )
        try:
            await self.output.start()
        except BaseException:
            db.close()
            raise
        self.log_id = db.log_id()  # "" for a new database: its ServerStarted's, below
        self.recording.start(db, state)
        self.reads.standby_recorder = None
        await self.reads.open(self.db_path)
        started = self.recording.record(decide.server_started(self.heartbeat_timeout_s))
        if not self.log_id:  # its first row, just encoded: nothing else is recorded yet
            self.log_id = self.recording.tail_hash.hex()
        if started is not None:
            await started
        self.upkeep.start()

    def begin_shutdown(self) -> None:
        """Release long-poll claims and end event streams now, so the server's graceful
        stop does not wait for them; safe to call from a signal handler."""
        self.claims.shutting_down = True
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.claims.wake)
            self.loop.call_soon_threadsafe(self.subscribers.end)

    async def stop(self) -> None:
        """Finish in-flight commits and close everything."""
        await self.upkeep.stop()
        self.claims.wake()
        self.subscribers.end()
        await self.reads.close()
        await self.recording.close()
        await self.output.stop()

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
        future = self.recording.record(events)
        if future is None:
            return ids, label
        self.claims.remember_commands(events)
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

    async def heartbeat(self, worker_id: str, running: list[tuple[int, int]]) -> list[int]:
        """Record that the worker lives (an idle one's, mostly in memory: see
        decide.heartbeat); returns the task ids it must stop."""
        now = self.clock()
        events, stop = decide.heartbeat(self.state, worker_id, running, now=now)
        self.upkeep.heard[worker_id] = now
        await self.recording.commit(events)
        return stop

    async def complete(self, report: Completion) -> None:
        await self.recording.commit(decide.complete(self.state, report))

    async def cancel(self, task_id: int, *, requested_by: str | None = None) -> None:
        await self.recording.commit(decide.cancel(self.state, task_id, requested_by=requested_by))

    async def cancel_group(self, name: str, *, requested_by: str | None = None) -> int:
        """Cancel every live task of a group; returns how many were asked to stop.

        Raises:
            NotFound: no such group.
        """
        group_id = decide.find_group(self.state, name)
        events = decide.cancel_group(self.state, group_id, requested_by=requested_by)
        await self.recording.commit(events)
        return sum(1 for e in events if isinstance(e, TaskCancelRequested))

    async def register(
        self,
        *,
        name: str,
        tags: frozenset[str],
        slots: int,
        host: str | None = None,
        resources: tuple[tuple[str, int], ...] = (),
        gpu_ids: tuple[int, ...] = (),
    ) -> str:
        events = decide.register(
            self.state,
            name=name,
            tags=tags,
            slots=slots,
            host=host,
            resources=resources,
            gpu_ids=gpu_ids,
        )
        await self.recording.commit(events)
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
        await self.recording.commit(events)  # parked claims are served by the change
        return self.state.workers[worker_id].tags

    async def stop_worker(self, worker_id: str) -> None:
        await self.recording.commit(decide.stop_worker(self.state, worker_id))
        self.claims.wake()
