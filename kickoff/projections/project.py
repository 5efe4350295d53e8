"""Apply a batch of records to every projection, inside the caller's transaction."""

from __future__ import annotations

import sqlite3
from itertools import groupby

from kickoff.projections import workers
from kickoff.projections.tasks import Op, TaskProjector
from kickoff.store.log import Recorded

SET_LAST_SEQ = "UPDATE projection_state SET last_seq = ?"  # every projection moves together


def project(conn: sqlite3.Connection, records: list[Recorded]) -> None:
    """Write what `records` imply to tasks, task_counts and workers, and the last seq."""
    if not records:
        return
    tasks = TaskProjector(conn)
    ops: list[Op] = []
    for rec in records:
        ops.extend(tasks.ops(rec))
        ops.extend(workers.ops(rec))
    ops.extend(tasks.finish())
    for sql, group in groupby(ops, key=lambda op: op[0]):
        conn.executemany(sql, [params for _, params in group])
    last = records[-1].seq
    conn.execute(SET_LAST_SEQ, (last,))
