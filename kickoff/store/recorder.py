"""The recorder: the log's one owner, as every storage backend provides it (SQLite in
store/sqlite.py; PostgreSQL in store/postgres.py). Shaped after eventsourcing's recorders: append a
batch inside the caller's transaction, select by seq range, type, task, worker and time, the
tail, counts. tests/store/test_recorder.py is the contract every backend passes.

Reads the server makes on its async reader are returned as `Query` objects; reads that walk
the log (start-up, replay, verify, compaction) iterate in bounded chunks on the recorder's
own connection. Nothing here is SQLite's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from kickoff.errors import DatabaseRefused
from kickoff.store.chain import Encoded, Recorded, Row, Run, broken, verified
from kickoff.store.query import Query


@dataclass(frozen=True, slots=True, kw_only=True)
class Agreement:
    """Rows of a table derived from the log that must agree with their events: the
    recorder finds the keys of those that do not (start-up's checkpoint check).

    For each row of `table` (alias `p`) that `where` selects, the event compared is the
    first or last (`pick`; None: no single event) of the key's events of `types` (any type
    if empty) with a seq up to the checkpoint, and its type must be one of `one_of` (if
    given). Each of `fields` pairs an SQL expression over the row's columns with what it
    must equal: a payload field of that event (`name`, or `name|default` when the payload
    leaves a default out), `?name` (1 if the payload has it, else 0), `@type`, `@at`,
    `@true` (1: for a condition on the row alone), `@at+name` (the event's time plus the
    payload's `name` seconds, to a few milliseconds), or `#Type.name` (how many of the key's
    events of that type carry `name`). A row without its event disagrees.
    """

    table: str
    key: str  # the table's column holding the task or worker id
    by: str  # the log's column it matches: "task_id" or "worker_id"
    where: str
    pick: str | None = None  # "first" or "last"
    types: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Compaction:
    """One row of the compaction records: a chunk of heartbeats moved to an archive."""

    id: int
    at: str
    first_seq: int
    last_seq: int
    count: int
    digest: bytes
    archive: str
    before_seq: int = 0  # the cut it was asked for


class Recorder(ABC):
    """The events table of one database, through one connection."""

    # -- writing (inside the caller's transaction) ----------------------------------

    @abstractmethod
    def encode(self, prev: bytes, after_seq: int, records: Sequence[Recorded]) -> Encoded:
        """Records as the rows (and insert parameters) that follow row `after_seq`, hashed
        `prev`; done ahead of the write so the writer only inserts.

        Raises:
            DatabaseRefused: a gap or a repeat in seq.
        """

    @abstractmethod
    def insert(self, records: list[Recorded], encoded: Encoded | None = None) -> list[Row]:
        """Append a batch (encoded ahead, or not); its seqs must follow the tail.

        Raises:
            DatabaseRefused: out of order (a bug, or a second writer).
        """

    @property
    @abstractmethod
    def last_seq(self) -> int:
        """The seq of the last row appended or read by `reset`."""

    @property
    @abstractmethod
    def last_hash(self) -> bytes:
        """Its hash."""

    @abstractmethod
    def reset(self) -> None:
        """Re-read the tail (after a rolled-back transaction)."""

    # -- reading, as queries (a plain connection's or the server's async reader) ----

    @abstractmethod
    def select(
        self,
        *,
        after_seq: int = 0,
        until_seq: int | None = None,
        since: str | None = None,
        until: str | None = None,
        types: Sequence[str] = (),
        task_id: int | None = None,
        worker_id: str | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> Query:
        """Rows with seq in (after_seq, until_seq], time in [since, until] (ISO text), of
        these types, about this task or worker; by seq (last first if descending)."""

    @abstractmethod
    def count(
        self,
        *,
        since: str | None = None,
        types: Sequence[str] = (),
        after_seq: int = 0,
        worker_id: str | None = None,
    ) -> Query:
        """How many rows, recorded since a time, of these types, with seq > after_seq,
        about this worker."""

    @abstractmethod
    def tail(self) -> Query:
        """The last row's seq (0 for an empty log)."""

    @abstractmethod
    def last_task_id(self) -> Query:
        """The largest task id the log names (0 for none)."""

    @abstractmethod
    def first_at(self) -> Query:
        """The first row's time, or None."""

    @abstractmethod
    def submission(self, task_id: int) -> Query:
        """The task's TaskSubmitted event, checked against the chain.

        Raises (when shaped): DatabaseRefused: no such row, or it does not verify.
        """

    # -- walking the log (this recorder's connection, bounded chunks) ---------------

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[None]:
        """One consistent read of the log, even while a server appends."""

    @abstractmethod
    def rows(self, after_seq: int = 0, *, until_seq: int | None = None) -> Iterator[Row]:
        """Every row with seq > after_seq (and <= until_seq), in order, as stored."""

    @abstractmethod
    def hash_at(self, seq: int) -> bytes | None:
        """The hash the row after `seq` chains to (row `seq`'s, or its compacted run's
        last hash; GENESIS for 0); None if neither is there."""

    @abstractmethod
    def runs(self) -> list[Run]:
        """The runs of seqs compactions archived, in seq order."""

    @abstractmethod
    def compactions(self) -> list[Compaction]:
        """Every compaction record, in order."""

    def verified_rows(self, after_seq: int = 0, *, until_seq: int | None = None) -> Iterator[Row]:
        """`rows`, each checked against the chain (row `after_seq` itself is trusted: see
        `row_verifies`).

        Raises:
            DatabaseRefused: a row that does not verify, or the row it follows is missing.
        """
        prev = self.hash_at(after_seq)
        if prev is None:
            raise DatabaseRefused(broken(after_seq, "the row is missing from the log"))
        runs = {run.first_seq: run for run in self.runs()}
        yield from verified(self.rows(after_seq, until_seq=until_seq), prev, after_seq, runs)

    def row_verifies(self, row: Row) -> bool:
        """The row's hash matches its contents and the row before it."""
        prev = self.hash_at(row.seq - 1)
        return prev is not None and row.expected_hash(prev) == row.hash

    @abstractmethod
    def last_of_each_worker(self, type_name: str, *, before_seq: int) -> set[int]:
        """The seq of each worker's last event of this type before a seq."""

    @abstractmethod
    def disagreeing(self, agreement: Agreement, *, checkpoint_seq: int) -> Iterator[Any]:
        """The keys of the rows that do not agree with the log (see Agreement)."""

    @abstractmethod
    def sparse_rows(self, *, until_seq: int) -> Query:
        """The rows (up to `until_seq`) that start-up's check needs beyond each task's and
        worker's own, in one pass over the log: groups made, workers stopped or lost,
        claims that went ahead of another task (their payload names `ahead_of`), and the
        ends of tasks that did not succeed (TaskFailed, TaskCancelled, and each
        TaskCompleted but those with exit code 0 that did not time out)."""

    @abstractmethod
    def schema_version(self) -> int:
        """The database's schema version (the log's and the projections' changes)."""

    @abstractmethod
    def columns(self, table: str) -> list[str]:
        """A table's columns in order ([] when there is no such table)."""

    @abstractmethod
    def quick_check(self) -> str | None:
        """A cheap check that the storage is whole: None, or what is wrong."""

    @abstractmethod
    def schema_problems(self) -> list[str]:
        """A full check of the storage and its append-only rules: what is wrong."""
