"""Drop and rebuild every projection from the log; the rows equal the live ones.

The log is read through the recorder (store/); no SQL against the events table here.
"""

from __future__ import annotations

from kickoff.projections.project import project
from kickoff.projections.schema import DROP_STATEMENTS, PROJECTION_STATEMENTS
from kickoff.store.query import Connection
from kickoff.store.recorder import Recorder

CHUNK = 20_000


def rebuild(conn: Connection, recorder: Recorder) -> int:
    """Rebuild tasks, workers and task_counts from the log (read by `recorder`, on the same
    database) in one transaction.

    Returns the number of events read.
    """
    count = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in (*DROP_STATEMENTS, *PROJECTION_STATEMENTS):
            conn.execute(statement)
        batch = []
        for row in recorder.rows():
            batch.append(row.decode())
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
