"""A kickoff database: the log (store/) and its projections (projections/) in one SQLite
file or one PostgreSQL database, written together in one transaction; opened, checked and
loaded here, above both.

`Database` is the server's single writer. `open_checked` is how a server starts: the file
whole (SQLite's quick_check), the checkpoint in agreement with the log, the live state
loaded; the checks run on their own connections while the state loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite

from kickoff import dblocation
from kickoff.dblocation import Location, ServerUrl
from kickoff.errors import DatabaseRefused, Unavailable
from kickoff.projections import checkpoint, sparse
from kickoff.projections.findings import Finding
from kickoff.projections.project import project
from kickoff.projections.schema import (
    PROJECTION_STATEMENTS,
    RESOURCES_MIGRATION,
    WORKFLOW_MIGRATION,
)
from kickoff.state.fold import State, apply
from kickoff.state.task_state import LIVE_STATES
from kickoff.store.chain import Encoded, Recorded, Row
from kickoff.store.connection import Layout, WalWatch, connect, explain, second_reader
from kickoff.store.query import Connection, run
from kickoff.store.schema import LOG_MIGRATIONS
from kickoff.store.sqlite import SqliteRecorder

T = TypeVar("T")
Fence = Callable[[Connection], None]


SCHEMA_VERSION = 4
"""`PRAGMA user_version`: 1 the first; 2 the compaction tables and the log's triggers as
store/schema.py writes them; 3 the projections' workflow columns and groups; 4 their
resource columns."""
LAYOUT = Layout(
    version=SCHEMA_VERSION,
    rest=PROJECTION_STATEMENTS,
    migrations={1: LOG_MIGRATIONS[1], 2: WORKFLOW_MIGRATION, 3: RESOURCES_MIGRATION},
)


def open_connection(
    location: Location | str, *, readonly: bool = False, exclusive: bool = False
) -> Connection:
    """A connection to a kickoff database, a file or on PostgreSQL (a writer creates a
    missing one, complete, and upgrades an older one). `exclusive` (PostgreSQL): as the
    database's one writer, holding its lock; a file's lock is `lock_exclusive`'s.

    Raises:
        DatabaseRefused: missing (for a reader), not kickoff's, newer, damaged, unreadable.
    """
    where = dblocation.location(location)
    if isinstance(where, ServerUrl):
        from kickoff.store import pgconnection

        return pgconnection.connect(
            where, LAYOUT, readonly=readonly, create=not readonly, exclusive=exclusive
        )
    return connect(where, LAYOUT, readonly=readonly, create=not readonly)


class Reader(Protocol):
    """The server's reader: queries answered off the event loop (aiosqlite's calls)."""

    async def execute_fetchall(self, sql: str, parameters: Any, /) -> Iterable[Any]: ...

    async def close(self) -> None: ...


class _ThreadReader:
    """A reader on PostgreSQL: its own connection, each query on a thread (psycopg
    serializes the queries on one connection; their results are read in full)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def execute_fetchall(self, sql: str, parameters: Any, /) -> list[Any]:
        def fetch() -> list[Any]:
            return list(self.conn.execute(sql, parameters).fetchall())

        return await asyncio.to_thread(fetch)

    async def close(self) -> None:
        self.conn.close()


async def open_reader(location: Location) -> Reader:
    """A read-only connection for the server's queries (a file's: aiosqlite's).

    Raises:
        DatabaseRefused: the database cannot be reached.
    """
    if isinstance(location, ServerUrl):
        conn = await asyncio.to_thread(open_connection, location, readonly=True)
        return _ThreadReader(conn)
    reader = await aiosqlite.connect(location)
    await reader.execute("PRAGMA query_only = 1")
    return reader


def shared_token(where: ServerUrl, candidate: str, *, replace: bool = False) -> str:
    """The access token of every server on a PostgreSQL database (store/pgconnection.py);
    creates a missing schema first.

    Raises:
        DatabaseRefused: the database cannot be opened or is not kickoff's.
    """
    from kickoff.store import pgconnection

    conn = pgconnection.connect(where, LAYOUT, create=True)
    try:
        return pgconnection.shared_token(conn, candidate, replace=replace)
    finally:
        conn.close()


def recorder_of(conn: Connection) -> SqliteRecorder:
    """The recorder of the log a connection reaches (SQLite's or PostgreSQL's)."""
    if isinstance(conn, sqlite3.Connection):
        return SqliteRecorder(conn)
    from kickoff.store.postgres import PostgresRecorder

    return PostgresRecorder(conn)


class Database:
    """The single writer of one database (a file, or a database on PostgreSQL)."""

    def __init__(self, location: Location | str, *, fence: Fence | None = None) -> None:
        """`fence`: run in every write's transaction before it commits, to refuse it (a
        server's lease on a shared PostgreSQL database: store/lease.py)."""
        self.where = dblocation.location(location)
        self.fence = fence
        self.path = self.where  # in messages
        self.conn = open_connection(self.where)
        try:
            self.recorder = recorder_of(self.conn)
        except sqlite3.Error as exc:
            self.conn.close()
            raise DatabaseRefused(f"cannot read the log in {self.where}: {explain(exc)}") from exc
        self._tail_stale = False
        self.local = isinstance(self.conn, sqlite3.Connection)  # commits in-process (writer.py)
        self._wal = (
            WalWatch(self.conn, self.where)
            if isinstance(self.where, Path)
            and str(self.where) != ":memory:"
            and isinstance(self.conn, sqlite3.Connection)
            else None
        )

    def write(self, records: list[Recorded], encoded: Encoded | None = None) -> list[Row]:
        """Append records and update the projections in one durable transaction.

        `encoded`: the records' rows, already encoded (see Recorder.encode).

        Raises:
            Unavailable: the write failed (disk full, read-only, I/O error); nothing of it
                was written.
            DatabaseRefused: records out of seq order.
        """
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if self._tail_stale:  # a failed write left the in-memory tail unsure
                    self.recorder.reset()
                    self._tail_stale = False
                rows = self.recorder.insert(records, encoded)
                project(self.conn, records)
                if self.fence is not None:
                    self.fence(self.conn)
                self.conn.execute("COMMIT")
            except BaseException:
                self._tail_stale = True
                # SQLite rolls back by itself on some errors (SQLITE_FULL, SQLITE_IOERR);
                # a second ROLLBACK would fail and hide the error that matters.
                if self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot write to {self.path}: {explain(exc)}") from exc
        if self._wal is not None:
            self._wal.after_commit()
        return rows

    def replay(self) -> State:
        """Rebuild the in-memory state by folding the whole log.

        Raises:
            DatabaseRefused: the log does not verify or fold.
        """
        return replay(self.recorder)

    def log_id(self) -> str:
        """The log's identity: its first row's hash, in hex ("" while the log is empty).
        Compaction never moves the first row (it is a ServerStarted), so this never changes.

        Raises:
            Unavailable: the log cannot be read.
        """
        try:
            first: list[Row] = run(self.conn, self.recorder.select(limit=1))
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot read the log in {self.path}: {explain(exc)}") from exc
        return first[0].hash.hex() if first else ""

    def tail(self) -> tuple[int, bytes]:
        """The seq and hash of the log's last durable row, as read now.

        Raises:
            Unavailable: the log cannot be read.
        """
        try:
            self.recorder.reset()
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot read the log in {self.path}: {explain(exc)}") from exc
        return self.recorder.last_seq, self.recorder.last_hash

    def load(self) -> tuple[State, int]:
        """The live state from the projections' checkpoint plus the log's tail (each tail
        row checked against the chain). Returns (state, tail events folded).

        Raises:
            DatabaseRefused: the checkpoint or the tail cannot be read, verified or folded.
        """
        return checkpoint.load(self.conn, self.recorder)

    def open_checked(self) -> tuple[State, int]:
        """`load`, once the file is known whole (SQLite's quick_check) and the checkpoint
        known to agree with the log (projections/checkpoint.py, and sparse.py's pass over
        the log beside it); each runs on its own connection while the state loads.

        Raises:
            DatabaseRefused: the database is damaged, or the checkpoint disagrees with it.
        """
        seq = checkpoint.checkpoint_seq(self.conn)
        with ThreadPoolExecutor(3, thread_name_prefix="kickoff-check") as pool:
            whole = pool.submit(self._beside, lambda conn, rec: rec.quick_check())
            agrees = pool.submit(
                self._beside,
                lambda conn, rec: checkpoint.disagreement(conn, rec, seq, sparse=False),
            )
            rest = pool.submit(
                self._beside, lambda conn, rec: sparse.sparse_disagreement(conn, rec, seq)
            )
            try:
                loaded: tuple[State, int] | None = self.load()
                failure: DatabaseRefused | None = None
            except DatabaseRefused as exc:
                loaded, failure = None, exc
            damage, finding = whole.result(), agrees.result() or rest.result()
        if damage is None and isinstance(finding, str):
            damage = finding  # the comparison could not even read it
        if isinstance(damage, str):
            raise DatabaseRefused(
                f"{self.path} is damaged (SQLite quick_check: {damage}); run `kickoff verify "
                f"--db {self.path}` and restore it from a backup"
            )
        if isinstance(finding, Finding):
            raise DatabaseRefused(self._disagreement(finding))
        if failure is not None:
            raise DatabaseRefused(f"{self.path}: {failure.message}") from failure
        assert loaded is not None
        _check_counts(self.path, loaded[0])
        return loaded

    def _beside(self, check: Callable[[Connection, SqliteRecorder], T]) -> T | str:
        """Run a check on its own read-only connection (a memory database: on this one);
        a database it cannot even read is damaged, and says so."""
        try:
            if str(self.where) == ":memory:":
                return check(self.conn, self.recorder)
            if isinstance(self.where, ServerUrl):
                conn: Connection = open_connection(self.where, readonly=True)
            else:
                conn = second_reader(self.where)
            try:
                return check(conn, recorder_of(conn))
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            return explain(exc)

    def _disagreement(self, finding: Finding) -> str:
        path = self.path
        if finding.log_damaged:
            fix = f"run `kickoff verify --db {path}` and restore it from a backup"
        else:
            fix = (
                f"if `kickoff verify --db {path}` finds the log sound, "
                f"`kickoff projections rebuild --db {path}` repairs the projections"
            )
        return f"{path} is damaged: the checkpoint disagrees with the log: {finding.message}; {fix}"

    def close(self) -> None:
        self.conn.close()


def _check_counts(path: Location, state: State) -> None:
    """task_counts, which start-up takes as the count of each live state, counts the live
    tasks it loaded."""
    loaded = Counter(task.state for task in state.tasks.values())
    for name in LIVE_STATES:
        if state.counts[name] != loaded[name]:
            raise DatabaseRefused(
                f"{path} is damaged: task_counts says {state.counts[name]} {name} but "
                f"`tasks` holds {loaded[name]}; `kickoff projections rebuild --db {path}` "
                "repairs the projections"
            )


def replay(recorder: SqliteRecorder, *, until_seq: int | None = None) -> State:
    """Fold the log (up to `until_seq`) into a fresh State, each row checked against the
    hash chain.

    Raises:
        DatabaseRefused: an event that does not verify, decode or fold.
    """
    state = State()
    catch_up(recorder, state, until_seq=until_seq)
    return state


def catch_up(recorder: SqliteRecorder, state: State, *, until_seq: int | None = None) -> int:
    """Fold into `state` the log's rows after its last seq (up to `until_seq`), each
    checked against the hash chain; how many. (A standby keeps its state warm so.)

    Raises:
        DatabaseRefused: an event that does not verify, decode or fold.
    """
    folded = 0
    try:
        for row in recorder.verified_rows(state.last_seq, until_seq=until_seq):
            rec = row.decode()
            try:
                apply(state, rec.event, seq=rec.seq, at=rec.at)
            except (KeyError, ValueError) as exc:
                raise DatabaseRefused(
                    f"event seq {rec.seq} ({type(rec.event).__name__}) does not fold: {exc!r}"
                ) from exc
            folded += 1
    except sqlite3.DatabaseError as exc:
        raise DatabaseRefused(f"cannot read the log: {exc}") from exc
    return folded
