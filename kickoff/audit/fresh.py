"""Projections built afresh from log records, in a private temporary database.

`replay` reads its point-in-time view from one; `verify` compares the database's own
projections with one. SQLite's private temporary database (`""`) spills to disk, so a
million-task log need not fit in memory, and it disappears when closed.
"""

from __future__ import annotations

import sqlite3

from kickoff.projections.project import project
from kickoff.projections.schema import PROJECTION_STATEMENTS
from kickoff.store.chain import Recorded

CHUNK = 20_000


def empty_projections() -> sqlite3.Connection:
    """A temporary database holding the empty projection tables."""
    conn = sqlite3.connect("", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA cache_size = -262144")  # 256 MiB in memory before it spills
    conn.execute("PRAGMA synchronous = OFF")
    for statement in PROJECTION_STATEMENTS:
        conn.execute(statement)
    return conn


class Builder:
    """Feeds records, a chunk per transaction, into fresh projections."""

    def __init__(self) -> None:
        self.conn = empty_projections()
        self.batch: list[Recorded] = []
        self.applied = 0

    def add(self, record: Recorded) -> None:
        self.batch.append(record)
        if len(self.batch) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        """Project the pending records.

        Raises:
            sqlite3.Error, TypeError, KeyError: the records do not project (the log is
                not one kickoff wrote); nothing of the chunk stays.
        """
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        self.conn.execute("BEGIN")
        try:
            project(self.conn, batch)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        self.applied += len(batch)
