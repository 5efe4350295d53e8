"""The `tasks` and `task_counts` projections: one row per task, and a count per state."""

from __future__ import annotations

import sqlite3
from collections import Counter
from functools import lru_cache
from typing import Any

import orjson

from kickoff.events import model as ev
from kickoff.store.log import NULL

Op = tuple[str, tuple[Any, ...]]

INSERT_TASKS = (
    "INSERT INTO tasks (id, state, command, require, want, priority, attempt, max_attempts, "
    "timeout_s, timed_out, idempotency_key, submitted_by, submitted_at, updated_seq)"
)
TASK_VALUES = (  # the three nullable columns bind log.NULL for None (a third of the cost)
    "(?, 'pending', ?, ?, ?, ?, 0, ?, nullif(?, x''), 0, nullif(?, x''), nullif(?, x''), ?, ?)"
)
INSERT_TASK = f"{INSERT_TASKS} VALUES {TASK_VALUES}"
CLAIM = (
    "UPDATE tasks SET state = 'running', attempt = ?, worker_id = ?, started_at = ?, "
    "updated_seq = ? WHERE id = ?"
)
COMPLETE = (
    "UPDATE tasks SET state = ?, exit_code = ?, timed_out = ?, duration_s = ?, output_tail = ?, "
    "reason = ?, finished_at = ?, updated_seq = ? WHERE id = ?"
)
SET_STATE = "UPDATE tasks SET state = ?, updated_seq = ? WHERE id = ?"
CANCELLED = (
    "UPDATE tasks SET state = 'cancelled', output_tail = coalesce(?, output_tail), "
    "finished_at = ?, updated_seq = ? WHERE id = ?"
)
LEASE_EXPIRED = "UPDATE tasks SET reason = 'lease_expired', updated_seq = ? WHERE id = ?"
REQUEUED = (
    "UPDATE tasks SET state = 'pending', worker_id = NULL, started_at = NULL, reason = ?, "
    "updated_seq = ? WHERE id = ?"
)
FAILED = (
    "UPDATE tasks SET state = 'failed', reason = ?, finished_at = ?, updated_seq = ? WHERE id = ?"
)
SELECT_STATE = "SELECT state FROM tasks WHERE id = ?"
ADD_COUNT = "UPDATE task_counts SET n = n + ? WHERE state = ?"


@lru_cache(maxsize=4096)
def tags_json(tags: frozenset[str]) -> str:
    """Tags as stored: a sorted JSON list."""
    return orjson.dumps(sorted(tags)).decode()


class TaskProjector:
    """Turns a batch of records into SQL for `tasks` and `task_counts`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.states: dict[int, str] = {}  # states as of this batch, for count deltas
        self.deltas: Counter[str] = Counter()
        self.submits = 0  # new pending tasks, counted apart from deltas: it is the hot path

    def _state(self, task_id: int) -> str:
        state = self.states.get(task_id)
        if state is None:
            row = self.conn.execute(SELECT_STATE, (task_id,)).fetchone()
            state = row[0]
        return state

    def _move(self, task_id: int, to: str) -> None:
        self.deltas[self._state(task_id)] -= 1
        self.deltas[to] += 1
        self.states[task_id] = to

    def submitted(self, e: ev.TaskSubmitted, seq: int, at: str, params: list[object]) -> None:
        """Add the new task's row to `params`, those of an INSERT_TASKS ... TASK_VALUES
        (the hot path of a bulk submit: no match, no tuple kept per row)."""
        self.states[e.task_id] = "pending"
        self.submits += 1
        params.extend(
            (
                e.task_id,
                e.command,
                tags_json(e.require),
                tags_json(e.want),
                e.priority,
                e.max_attempts,
                NULL if e.timeout_s is None else e.timeout_s,
                NULL if e.idempotency_key is None else e.idempotency_key,
                NULL if e.submitted_by is None else e.submitted_by,
                at,
                seq,
            )
        )

    def ops(self, e: ev.Event, seq: int, at: str) -> list[Op]:
        """SQL for tasks that one event (recorded at `seq`, at time `at`) implies."""
        match e:
            case ev.TaskSubmitted():
                params: list[object] = []
                self.submitted(e, seq, at, params)
                return [(INSERT_TASK, tuple(params))]
            case ev.TaskClaimed():
                self._move(e.task_id, "running")
                return [(CLAIM, (e.attempt, e.worker_id, at, seq, e.task_id))]
            case ev.TaskCompleted():
                state = "succeeded" if e.exit_code == 0 and not e.timed_out else "failed"
                self._move(e.task_id, state)
                reason = "timeout" if e.timed_out else None
                return [
                    (
                        COMPLETE,
                        (
                            state,
                            e.exit_code,
                            int(e.timed_out),
                            e.duration_s,
                            e.output_tail,
                            reason,
                            at,
                            seq,
                            e.task_id,
                        ),
                    )
                ]
            case ev.TaskCancelRequested():
                if self._state(e.task_id) != "running":
                    return []
                self._move(e.task_id, "cancelling")
                return [(SET_STATE, ("cancelling", seq, e.task_id))]
            case ev.TaskCancelled():
                self._move(e.task_id, "cancelled")
                return [(CANCELLED, (e.output_tail or None, at, seq, e.task_id))]
            case ev.TaskLeaseExpired():
                return [(LEASE_EXPIRED, (seq, e.task_id))]
            case ev.TaskRequeued():
                self._move(e.task_id, "pending")
                return [(REQUEUED, (e.reason, seq, e.task_id))]
            case ev.TaskFailed():
                self._move(e.task_id, "failed")
                return [(FAILED, (e.reason, at, seq, e.task_id))]
        return []

    def finish(self) -> list[Op]:
        """The count updates for the batch; resets for the next one."""
        self.deltas["pending"] += self.submits
        ops = [(ADD_COUNT, (n, state)) for state, n in sorted(self.deltas.items()) if n]
        self.states.clear()
        self.deltas.clear()
        self.submits = 0
        return ops
