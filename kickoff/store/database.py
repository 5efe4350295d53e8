"""A kickoff database: the log and the projections, written together in one transaction."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from kickoff.errors import DatabaseRefused, Unavailable
from kickoff.projections.project import project
from kickoff.state.fold import State, apply
from kickoff.store.checkpoint import load_state
from kickoff.store.db import connect, explain
from kickoff.store.log import Encoded, Log, Recorded, Row, read_log


class Database:
    """The single writer of one database file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.conn = connect(path)
        try:
            self.log = Log(self.conn)
        except sqlite3.Error as exc:
            self.conn.close()
            raise DatabaseRefused(f"cannot read the log in {path}: {explain(exc)}") from exc
        self._tail_stale = False

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
        return rows

    def replay(self) -> State:
        """Rebuild the in-memory state by folding the whole log.

        Raises:
            DatabaseRefused: the log does not fold (an unreadable or inconsistent event).
        """
        return replay(self.conn)

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

    def load(self) -> tuple[State, int]:
        """The live state from the projections' checkpoint plus the log's tail.

        Returns (state, number of tail events folded).
        """
        return load_state(self.conn)

    def close(self) -> None:
        self.conn.close()


def replay(conn: sqlite3.Connection, *, until_seq: int | None = None) -> State:
    """Fold the log (up to `until_seq`) into a fresh State.

    Raises:
        DatabaseRefused: an event that does not decode or does not fold.
    """
    state = State()
    try:
        for rec in read_log(conn, until_seq=until_seq):
            try:
                apply(state, rec.event, seq=rec.seq, at=rec.at)
            except (KeyError, ValueError) as exc:
                raise DatabaseRefused(
                    f"event seq {rec.seq} ({type(rec.event).__name__}) does not fold: {exc!r}"
                ) from exc
    except sqlite3.DatabaseError as exc:
        raise DatabaseRefused(f"cannot read the log: {exc}") from exc
    return state
