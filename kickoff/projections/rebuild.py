"""Drop and rebuild every projection from the log; the rows equal the live ones."""

from __future__ import annotations

import sqlite3

from kickoff.projections.project import project
from kickoff.projections.schema import DROP_PROJECTIONS, PROJECTION_SCHEMA
from kickoff.store.log import read_log

CHUNK = 20_000


def rebuild(conn: sqlite3.Connection) -> int:
    """Rebuild tasks, workers and task_counts from the log in one transaction.

    Returns the number of events read.
    """
    count = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in (DROP_PROJECTIONS + PROJECTION_SCHEMA).split(";\n"):
            if statement.strip():
                conn.execute(statement)
        batch = []
        for rec in read_log(conn):
            batch.append(rec)
            if len(batch) >= CHUNK:
                project(conn, batch)
                count += len(batch)
                batch = []
        project(conn, batch)
        count += len(batch)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return count
