"""Recording, the write side: events get their seq and time, are applied to the in-memory
state at once (so concurrent requests see each other and never both claim one task), and
are queued for the group-commit writer; the caller answers after the commit. A failed write
fails every queued batch and the state is rebuilt from the log, so memory never keeps what
the disk does not. What the rules are is state/decide.py's; who gets a parked claim,
claims.py's (through `on_queue`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from kickoff.clock import Clock
from kickoff.database import Database
from kickoff.errors import KickoffError, Unavailable
from kickoff.events.model import Event
from kickoff.service.subscriptions import Subscribers
from kickoff.state.fold import State, apply
from kickoff.store.chain import Encoded, Recorded, Row
from kickoff.store.writer import GroupWriter

logger = logging.getLogger(__name__)

Commit = asyncio.Future[None]
"""Resolves when a batch is durable (or fails with the write's error)."""


@dataclass(slots=True)
class Batch:
    """Events staged together: applied to the state already, committed together."""

    at: datetime
    records: list[Recorded] = field(default_factory=list)


class Recording:
    """The one writer of a server's log, and the state it keeps in step with it."""

    def __init__(self, *, clock: Clock, subscribers: Subscribers) -> None:
        self.clock = clock
        self.subscribers = subscribers
        self.state = State()
        self.seq = 0  # the last seq given out
        self.on_queue: Callable[[Batch], Callable[[Commit], None] | None] | None = None
        """Called with each batch before it is queued: it may stage more events into it
        (claims for parked long-polls) and return what to tell them of its commit."""
        self.on_reload: Callable[[], None] | None = None
        """Called when the state is rebuilt after a failed write."""
        self.leases_stale = False  # set after a failed write: restart leases before expiry
        self.written_since_failure = True
        self._db: Database | None = None
        self._writer: GroupWriter | None = None
        self._tail_hash = b""  # the hash of the last row encoded (seq self.seq)
        self._broken: KickoffError | None = None  # set while the state cannot be reloaded

    @property
    def db(self) -> Database:
        assert self._db is not None
        return self._db

    @property
    def tail_hash(self) -> bytes:
        """The hash of the last row encoded."""
        return self._tail_hash

    def start(self, db: Database, state: State) -> None:
        """Record on from the log's tail, with the state loaded from it."""
        self._db = db
        self.state = state
        self.seq, self._tail_hash = db.tail()
        assert self.seq == state.last_seq
        self._writer = GroupWriter(db, on_commit=self._published, on_failure=self._reload)
        self._writer.start()

    async def close(self) -> None:
        """Finish in-flight commits, stop the writer, close the database."""
        if self._writer is not None:
            await self._writer.close()
        if self._db is not None:
            self._db.close()

    def begin(self) -> Batch:
        """A new batch at the clock's time now.

        Raises:
            Unavailable: the state cannot be reloaded after a failed write.
        """
        if self._broken is not None:
            self._retry_reload()
        return Batch(self.clock())

    def stage(self, batch: Batch, events: list[Event]) -> None:
        """Give events their seq and the batch's time, and apply them."""
        for event in events:
            self.seq += 1
            batch.records.append(Recorded(self.seq, batch.at, event))
            apply(self.state, event, seq=self.seq, at=batch.at)

    def queue(self, batch: Batch) -> Commit | None:
        """Queue the batch for group commit; its commit, or None if it has no events."""
        hand = self.on_queue(batch) if self.on_queue is not None and batch.records else None
        if not batch.records:
            return None
        assert self._writer is not None
        future = self._writer.submit(batch.records, self._encode(batch.records))
        if hand is not None:
            hand(future)
        return future

    def record(self, events: list[Event]) -> Commit | None:
        """Stage events as one batch and queue it; None if there are none.

        Raises:
            Unavailable: see begin.
        """
        batch = self.begin()
        self.stage(batch, events)
        return self.queue(batch)

    async def commit(self, events: list[Event]) -> None:
        """Record events and wait until they are durable."""
        future = self.record(events)
        if future is not None:
            await future

    def writer_stats(self) -> tuple[int, int]:
        """Batches and records written so far (none by a standby)."""
        if self._writer is None:
            return 0, 0
        return self._writer.batches, self._writer.records

    def _encode(self, records: list[Recorded]) -> Encoded | None:
        """The records' log rows, chained on from the last ones encoded. Done here, not
        on the writer thread: the writer is a bulk submit's bottleneck.

        None if they cannot be encoded (a bug): the writer then encodes them and fails.
        """
        try:
            encoded = self.db.recorder.encode(self._tail_hash, records[0].seq - 1, records)
        except Exception:
            logger.exception("cannot encode events %d-%d", records[0].seq, records[-1].seq)
            return None
        self._tail_hash = encoded.rows[-1].hash
        return encoded

    def _reload(self, exc: BaseException) -> None:
        """A write failed: rebuild the state from what is durable.

        Heartbeats could not be recorded meanwhile, so leases restart (as after a restart)
        before the next expiry pass. If even reading fails, every change is refused with
        503 until a reload succeeds.
        """
        logger.error("rebuilding state from the log after a failed write")
        if self.on_reload is not None:
            self.on_reload()
        self.leases_stale = True
        self.written_since_failure = False
        try:
            self.state, _ = self.db.load()
            self.seq, self._tail_hash = self.db.tail()
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

    def _published(self, rows: list[Row]) -> None:
        self.written_since_failure = True
        self.subscribers.publish(rows)
