"""A kickoff database: the log and the projections, written together in one transaction."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from kickoff.errors import DatabaseRefused, Unavailable
from kickoff.projections.project import project
from kickoff.state.fold import State, apply
from kickoff.state.task_state import LIVE_STATES
from kickoff.store import checks
from kickoff.store.checkpoint import checkpoint_seq, load_state
from kickoff.store.db import connect, explain
from kickoff.store.log import SELECT_FIRST_HASH, Encoded, Log, Recorded, Row, read_verified

T = TypeVar("T")
logger = logging.getLogger(__name__)

WAL_LIMIT_BYTES = 32 << 20  # PRAGMA journal_size_limit: a WAL is cut back to this
WAL_ALARM_BYTES = 64 << 20  # a WAL past this may not be written back (see _watch_wal)


class Database:
    """The single writer of one database file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.conn = connect(path)
        self.conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
        try:
            self.log = Log(self.conn)
        except sqlite3.Error as exc:
            self.conn.close()
            raise DatabaseRefused(f"cannot read the log in {path}: {explain(exc)}") from exc
        self._tail_stale = False
        self._wal = None if str(path) == ":memory:" else Path(f"{path}-wal")
        self._wal_stuck = 0  # the WAL's size when a write-back last failed and was logged

    def write(self, records: list[Recorded], encoded: Encoded | None = None) -> list[Row]:
        """Append records and update the projections in one durable transaction.

        `encoded`: the records' rows, already encoded (see log.encode).

        Raises:
            Unavailable: the write failed (disk full, read-only, I/O error); nothing of it
                was written.
            DatabaseRefused: records out of seq order.
        """
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if self._tail_stale:  # a failed write left the in-memory tail unsure
                    self.log.reset()
                    self._tail_stale = False
                rows = self.log.append(records, encoded)
                project(self.conn, records)
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
            self._watch_wal(self._wal)
        return rows

    def _watch_wal(self, wal: Path) -> None:
        """Say so when the WAL cannot be written back into the database file.

        SQLite copies the WAL into the file every ~1,000 pages and ignores a failure to
        do so: with the file unwritable (`chattr +i`, say) commits still go to the WAL,
        which then grows with each of them, without a word. A WAL past WAL_ALARM_BYTES
        (healthy, it stays under WAL_LIMIT_BYTES) gets a write-back tried here: a failure
        is logged at once, and again each time the WAL has doubled since; success after
        one, once. Commits carry on meanwhile: they are durable in the WAL.
        """
        try:
            size = wal.stat().st_size
        except OSError:
            return
        if size < WAL_ALARM_BYTES and not self._wal_stuck:
            return
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            if size >= 2 * self._wal_stuck:
                logger.error(
                    "cannot write the write-ahead log back into %s: %s; it has grown to "
                    "%d MiB and grows with every commit (every commit is still durable) "
                    "until the file can be written again (immutable? `lsattr %s`)",
                    self.path,
                    explain(exc),
                    size >> 20,
                    self.path,
                )
                self._wal_stuck = size
            return
        if self._wal_stuck:
            logger.info("the write-ahead log is written back into %s again", self.path)
            self._wal_stuck = 0

    def replay(self) -> State:
        """Rebuild the in-memory state by folding the whole log.

        Raises:
            DatabaseRefused: the log does not fold (an unreadable or inconsistent event).
        """
        return replay(self.conn)

    def log_id(self) -> str:
        """The log's identity: its first row's hash, in hex ("" while the log is empty).
        Compaction never moves the first row (it is a ServerStarted), so this never changes.

        Raises:
            Unavailable: the log cannot be read.
        """
        try:
            row = self.conn.execute(SELECT_FIRST_HASH).fetchone()
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot read the log in {self.path}: {explain(exc)}") from exc
        return bytes(row[0]).hex() if row else ""

    def tail(self) -> tuple[int, bytes]:
        """The seq and hash of the log's last durable row, as read now.

        Raises:
            Unavailable: the log cannot be read.
        """
        try:
            self.log.reset()
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot read the log in {self.path}: {explain(exc)}") from exc
        return self.log.last_seq, self.log.last_hash

    def load(self, *, checked: bool = False) -> tuple[State, int]:
        """The live state from the projections' checkpoint plus the log's tail.

        Returns (state, number of tail events folded). `checked`: first make sure the
        file is whole (SQLite's quick_check) and the checkpoint agrees with the log (see
        store/checks.py); both run on their own connections while the state loads.

        Raises:
            DatabaseRefused: the database is damaged, or the checkpoint disagrees with it.
        """
        if not checked:
            return load_state(self.conn)
        memory = str(self.path) == ":memory:"
        seq = checkpoint_seq(self.conn)
        with ThreadPoolExecutor(2, thread_name_prefix="kickoff-check") as pool:
            whole = pool.submit(self._checked, checks.quick_check, memory)
            agrees = pool.submit(self._checked, lambda c: checks.against_log(c, seq), memory)
            try:
                loaded: tuple[State, int] | None = load_state(self.conn)
                failure: DatabaseRefused | None = None
            except DatabaseRefused as exc:
                loaded, failure = None, exc
            damage, finding = whole.result(), agrees.result()
        if damage is None and isinstance(finding, str):
            damage = finding  # the comparison could not even read it
        if isinstance(damage, str):
            raise DatabaseRefused(
                f"{self.path} is damaged (SQLite quick_check: {damage}); run `kickoff verify "
                f"--db {self.path}` and restore it from a backup"
            )
        if isinstance(finding, checks.Finding):
            raise DatabaseRefused(self._disagreement(finding))
        if failure is not None:
            raise DatabaseRefused(f"{self.path}: {failure.message}") from failure
        assert loaded is not None
        _check_counts(self.path, loaded[0])
        return loaded

    def _checked(self, check: Callable[[sqlite3.Connection], T], memory: bool) -> T | str:
        """Run a check on its own read-only connection (a memory database: on this one);
        a database it cannot even read is damaged, and says so."""
        try:
            if memory:
                return check(self.conn)
            conn = checks.read_only(self.path)
            try:
                return check(conn)
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            return explain(exc)

    def _disagreement(self, finding: checks.Finding) -> str:
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


def _check_counts(path: Path, state: State) -> None:
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


def replay(conn: sqlite3.Connection, *, until_seq: int | None = None) -> State:
    """Fold the log (up to `until_seq`) into a fresh State.

    Raises:
        DatabaseRefused: an event that does not verify, decode or fold.
    """
    state = State()
    try:
        for row in read_verified(conn, until_seq=until_seq):
            rec = row.decode()
            try:
                apply(state, rec.event, seq=rec.seq, at=rec.at)
            except (KeyError, ValueError) as exc:
                raise DatabaseRefused(
                    f"event seq {rec.seq} ({type(rec.event).__name__}) does not fold: {exc!r}"
                ) from exc
    except sqlite3.DatabaseError as exc:
        raise DatabaseRefused(f"cannot read the log: {exc}") from exc
    return state
