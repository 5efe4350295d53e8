"""The `tasks`, `task_counts` and `groups` projections: one row per task, a count per
state, one row per group.

How each event changes them, as SQL with parameters; reading them is queries.py's.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from functools import lru_cache
from typing import Any

import orjson

from kickoff.clock import from_text, to_text
from kickoff.events import model as ev
from kickoff.store.query import Connection
from kickoff.store.sqlite import NULL

Op = tuple[str, tuple[Any, ...]]

INSERT_TASKS = (
    "INSERT INTO tasks (id, state, command, require, want, priority, attempt, max_attempts, "
    "timeout_s, timed_out, idempotency_key, submitted_by, submitted_at, updated_seq)"
)
TASK_VALUES = (  # the three nullable columns bind log.NULL for None (a third of the cost)
    "(?, 'pending', ?, ?, ?, ?, 0, ?, nullif(?, x''), 0, nullif(?, x''), nullif(?, x''), ?, ?)"
)
INSERT_TASK = f"{INSERT_TASKS} VALUES {TASK_VALUES}"
INSERT_WORKFLOW_TASKS = (  # tasks with dependencies, a group, an array index or retries
    "INSERT INTO tasks (id, state, command, require, want, priority, attempt, max_attempts, "
    "timeout_s, timed_out, idempotency_key, submitted_by, submitted_at, updated_seq, after, "
    "after_any, group_id, array_index, retries, retries_left, retry_delay_s, retry_on, "
    "resources)"
)
WORKFLOW_TASK_VALUES = "(?, ?, ?, ?, ?, ?, 0, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_WORKFLOW_TASK = f"{INSERT_WORKFLOW_TASKS} VALUES {WORKFLOW_TASK_VALUES}"
INSERT_GROUP = (
    "INSERT INTO groups (id, name, max_running, created_at, updated_seq) VALUES (?, ?, ?, ?, ?)"
)
RELEASED = "UPDATE tasks SET state = 'pending', updated_seq = ? WHERE id = ?"
RETRY_SCHEDULED = (
    "UPDATE tasks SET state = 'waiting', exit_code = ?, timed_out = ?, duration_s = ?, "
    "output_tail = ?, reason = ?, retries_left = retries_left - 1, retry_at = ?, "
    "worker_id = NULL, started_at = NULL, updated_seq = ? WHERE id = ?"
)
CLAIM = (
    "UPDATE tasks SET state = 'running', attempt = ?, worker_id = ?, started_at = ?, "
    "updated_seq = ? WHERE id = ?"
)
CLAIM_HOLDING = (  # a claim of a task with resources, or one that went ahead of another
    "UPDATE tasks SET state = 'running', attempt = ?, worker_id = ?, started_at = ?, "
    "gpu_ids = ?, passes = 0, updated_seq = ? WHERE id = ?"
)
PASSED = "UPDATE tasks SET passes = passes + 1, updated_seq = ? WHERE id = ?"
COMPLETE = (
    "UPDATE tasks SET state = ?, exit_code = ?, timed_out = ?, duration_s = ?, output_tail = ?, "
    "reason = ?, finished_at = ?, updated_seq = ? WHERE id = ?"
)
SET_STATE = "UPDATE tasks SET state = ?, updated_seq = ? WHERE id = ?"
CANCELLED = (
    "UPDATE tasks SET state = 'cancelled', output_tail = coalesce(?, output_tail), "
    "reason = coalesce(?, reason), retry_at = NULL, finished_at = ?, updated_seq = ? "
    "WHERE id = ?"
)
LEASE_EXPIRED = "UPDATE tasks SET reason = 'lease_expired', updated_seq = ? WHERE id = ?"
REQUEUED = (
    "UPDATE tasks SET state = 'pending', worker_id = NULL, started_at = NULL, reason = ?, "
    "retry_at = NULL, updated_seq = ? WHERE id = ?"
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


def list_json(values: tuple[int, ...]) -> str | None:
    """Task ids as stored: a JSON list, NULL when there are none."""
    return orjson.dumps(values).decode() if values else None


def resources_json(resources: tuple[tuple[str, int], ...]) -> str | None:
    """Amounts as stored: the payload's sorted [name, amount] pairs, NULL for none."""
    return orjson.dumps(resources).decode() if resources else None


def plain_submission(e: ev.TaskSubmitted) -> bool:
    """A task without any workflow field or resources: the bulk submit's hot path."""
    return (
        not e.resources
        and e.group_id is None
        and not e.after
        and not e.after_any
        and not e.retries
        and e.array_index is None
    )


def retry_reason(e: ev.TaskCompleted, due: str) -> str:
    ended = "timed out" if e.timed_out else f"exit code {e.exit_code}"
    return f"{ended}; retry due at {due}"


class TaskProjector:
    """Turns a batch of records into SQL for `tasks` and `task_counts`."""

    def __init__(self, conn: Connection) -> None:
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

    def submitted_workflow(
        self, e: ev.TaskSubmitted, seq: int, at: str, params: list[object]
    ) -> None:
        """As `submitted`, for an INSERT_WORKFLOW_TASKS ... WORKFLOW_TASK_VALUES."""
        state = "waiting" if e.after or e.after_any else "pending"
        self.states[e.task_id] = state
        self.deltas[state] += 1
        params.extend(
            (
                e.task_id,
                state,
                e.command,
                tags_json(e.require),
                tags_json(e.want),
                e.priority,
                e.max_attempts,
                e.timeout_s,
                e.idempotency_key,
                e.submitted_by,
                at,
                seq,
                list_json(e.after),
                list_json(e.after_any),
                e.group_id,
                e.array_index,
                e.retries,
                e.retries,
                e.retry_delay_s or None,  # NULL at the default, as for a plain task
                None if e.retry_on is None else orjson.dumps(e.retry_on).decode(),
                resources_json(e.resources),
            )
        )

    def ops(self, e: ev.Event, seq: int, at: str) -> list[Op]:
        """SQL for tasks that one event (recorded at `seq`, at time `at`) implies."""
        match e:
            case ev.TaskSubmitted():
                params: list[object] = []
                if plain_submission(e):
                    self.submitted(e, seq, at, params)
                    return [(INSERT_TASK, tuple(params))]
                self.submitted_workflow(e, seq, at, params)
                return [(INSERT_WORKFLOW_TASK, tuple(params))]
            case ev.GroupCreated():
                return [(INSERT_GROUP, (e.group_id, e.name, e.max_running, at, seq))]
            case ev.TaskReleased():
                self._move(e.task_id, "pending")
                return [(RELEASED, (seq, e.task_id))]
            case ev.TaskCompleted() if e.retry_in_s is not None:
                self._move(e.task_id, "waiting")
                due = to_text(from_text(at) + timedelta(seconds=e.retry_in_s))
                return [
                    (
                        RETRY_SCHEDULED,
                        (
                            e.exit_code,
                            int(e.timed_out),
                            e.duration_s,
                            e.output_tail,
                            retry_reason(e, due),
                            due,
                            seq,
                            e.task_id,
                        ),
                    )
                ]
            case ev.TaskClaimed() if not e.resources and e.ahead_of is None:
                self._move(e.task_id, "running")
                return [(CLAIM, (e.attempt, e.worker_id, at, seq, e.task_id))]
            case ev.TaskClaimed():
                self._move(e.task_id, "running")
                gpu_ids = list_json(e.gpu_ids)
                claim = (CLAIM_HOLDING, (e.attempt, e.worker_id, at, gpu_ids, seq, e.task_id))
                if e.ahead_of is None:
                    return [claim]
                return [claim, (PASSED, (seq, e.ahead_of))]
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
                return [(CANCELLED, (e.output_tail or None, e.reason, at, seq, e.task_id))]
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
