"""Apply a batch of records to every projection, inside the caller's transaction."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from itertools import groupby
from operator import itemgetter

from kickoff.clock import to_text
from kickoff.events.model import TaskSubmitted
from kickoff.projections import workers
from kickoff.projections.tasks import INSERT_TASK, INSERT_TASKS, TASK_VALUES, Op, TaskProjector
from kickoff.store.log import Recorded, insert_rows

SET_LAST_SEQ = "UPDATE projection_state SET last_seq = ?"  # every projection moves together


def project(conn: sqlite3.Connection, records: list[Recorded]) -> None:
    """Write what `records` imply to tasks, task_counts and workers, and the last seq."""
    if not records:
        return
    tasks = TaskProjector(conn)
    ops: list[Op] = []
    add, extend, submitted = ops.append, ops.extend, tasks.submitted
    last_at: datetime | None = None
    at = ""
    for rec in records:
        if rec.at is not last_at:  # a batch mostly shares one time
            last_at, at = rec.at, to_text(rec.at)
        e = rec.event
        if type(e) is TaskSubmitted:  # a bulk submit: nothing for workers
            add(submitted(e, rec.seq, at))
            continue
        extend(tasks.ops(e, rec.seq, at))
        extend(workers.ops(e, rec.seq, at))
    ops.extend(tasks.finish())
    # In log order, a run of one statement at a time: a claim's UPDATE follows its INSERT.
    for sql, group in groupby(ops, key=itemgetter(0)):
        params = [params for _, params in group]
        if sql == INSERT_TASK:
            insert_rows(conn, INSERT_TASKS, TASK_VALUES, params)
        else:
            conn.executemany(sql, params)
    last = records[-1].seq
    conn.execute(SET_LAST_SEQ, (last,))
