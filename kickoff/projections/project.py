"""Apply a batch of records to every projection, inside the caller's transaction.

No SQL of its own: each projection module (tasks.py, workers.py) says what a record changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kickoff.clock import to_text
from kickoff.events.model import TaskSubmitted
from kickoff.projections import workers
from kickoff.projections.tasks import (
    INSERT_TASKS,
    INSERT_WORKFLOW_TASKS,
    TASK_VALUES,
    WORKFLOW_TASK_VALUES,
    Op,
    TaskProjector,
    plain_submission,
)
from kickoff.store.chain import Recorded
from kickoff.store.query import Connection
from kickoff.store.sqlite import insert_rows

MULTI_ROW = {INSERT_TASKS: TASK_VALUES, INSERT_WORKFLOW_TASKS: WORKFLOW_TASK_VALUES}

SET_LAST_SEQ = "UPDATE projection_state SET last_seq = ?"  # every projection moves together


def project(conn: Connection, records: list[Recorded]) -> None:
    """Write what `records` imply to tasks, task_counts and workers, and the last seq."""
    if not records:
        return
    tasks = TaskProjector(conn)
    # In log order, a run of one statement at a time (a claim's UPDATE follows its
    # task's INSERT): (sql, parameter tuples), or for new tasks (an INSERT of MULTI_ROW,
    # flat params).
    runs: list[tuple[str, list[Any]]] = []
    new_tasks: list[object] | None = None  # the last run's, if it is one of new tasks
    submitted, is_plain = tasks.submitted, plain_submission
    last_at: datetime | None = None
    at = ""
    for rec in records:
        if rec.at is not last_at:  # a batch mostly shares one time
            last_at, at = rec.at, to_text(rec.at)
        e = rec.event
        if type(e) is TaskSubmitted:  # a bulk submit: nothing for workers
            if is_plain(e):
                if new_tasks is None or runs[-1][0] is not INSERT_TASKS:
                    new_tasks = []
                    runs.append((INSERT_TASKS, new_tasks))
                submitted(e, rec.seq, at, new_tasks)
                continue
            if new_tasks is None or runs[-1][0] is not INSERT_WORKFLOW_TASKS:
                new_tasks = []
                runs.append((INSERT_WORKFLOW_TASKS, new_tasks))
            tasks.submitted_workflow(e, rec.seq, at, new_tasks)
            continue
        ops = tasks.ops(e, rec.seq, at) + workers.ops(e, rec.seq, at)
        if ops:
            new_tasks = None
            _add(runs, ops)
    _add(runs, tasks.finish())
    for sql, params in runs:
        values = MULTI_ROW.get(sql)
        if values is not None:
            insert_rows(conn, sql, values, params)
        else:
            conn.executemany(sql, params)
    last = records[-1].seq
    conn.execute(SET_LAST_SEQ, (last,))


def _add(runs: list[tuple[str, list[Any]]], ops: list[Op]) -> None:
    for sql, params in ops:
        if runs and runs[-1][0] == sql:
            runs[-1][1].append(params)
        else:
            runs.append((sql, [params]))
