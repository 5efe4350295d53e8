"""Start-up from a checkpoint: the projections, written in the same transaction as the
events they derive from, hold the live state as of their `last_seq`. Loading them and
folding the log's tail after that seq gives the same State as folding the whole log
(tests/store/test_checkpoint.py holds it to that), in a fraction of the time.
"""

from __future__ import annotations

import gc
import heapq
import sqlite3
from typing import Any

import orjson

from kickoff.clock import from_text
from kickoff.errors import DatabaseRefused
from kickoff.state.fold import (
    BUSY,
    State,
    Task,
    Worker,
    apply,
    index_waiting,
    request_hash,
    worker_number,
    workflow_fields,
)
from kickoff.state.matcher import Shape, task_key
from kickoff.state.task_state import LIVE_STATES, TaskState
from kickoff.state.workflows import Group
from kickoff.store.log import read_verified

_LIVE = ", ".join(f"'{s}'" for s in LIVE_STATES)
LIVE_TASKS = (
    "SELECT id, require, want, priority, max_attempts, attempt, state, worker_id, group_id "
    f"FROM tasks WHERE state IN ({_LIVE})"
)
WAITING_TASKS = (  # in id order: the order the fold indexed them under their dependencies
    "SELECT id, after, after_any, retry_at FROM tasks WHERE state = 'waiting' ORDER BY id"
)
RETRY_POLICIES = (
    "SELECT id, retries, coalesce(retry_delay_s, 0.0), retry_on, retries_left FROM tasks "
    f"WHERE retries > 0 AND state IN ({_LIVE})"
)
GROUPS = "SELECT id, name, max_running FROM groups"
ENDED = "SELECT id FROM tasks WHERE state = ?"
LIVE_WORKERS = "SELECT id, name, tags, slots, last_seen FROM workers WHERE state = 'alive'"
ALL_WORKER_IDS = "SELECT id FROM workers"
KEYS = (
    "SELECT idempotency_key, id, command, require, want, priority, max_attempts, timeout_s, "
    "after, after_any, array_index, retries, coalesce(retry_delay_s, 0.0), retry_on "
    "FROM tasks WHERE idempotency_key IS NOT NULL"
)
MAX_TASK = "SELECT max(id) FROM tasks"
COUNTS = "SELECT state, n FROM task_counts"
LAST_SEQ = "SELECT min(last_seq) FROM projection_state"


def checkpoint_seq(conn: sqlite3.Connection) -> int:
    """The seq the projections stand at."""
    return int(conn.execute(LAST_SEQ).fetchone()[0] or 0)


def load_projections(conn: sqlite3.Connection) -> State:
    """The State the projections hold, as of their last seq."""
    state = State()
    state.last_seq = checkpoint_seq(conn)
    for worker_id, name, tags, slots, last_seen in conn.execute(LIVE_WORKERS):
        state.workers[worker_id] = Worker(
            worker_id, name, frozenset(orjson.loads(tags)), slots, from_text(last_seen)
        )
    numbers = [worker_number(w) for (w,) in conn.execute(ALL_WORKER_IDS)]
    state.next_worker_no = max(numbers, default=0) + 1
    state.next_task_id = (conn.execute(MAX_TASK).fetchone()[0] or 0) + 1
    state.idempotency = {
        key: (task_id, _request_hash(command, require, want, options))
        for key, task_id, command, require, want, *options in conn.execute(KEYS)
    }
    state.counts = {TaskState(s): n for s, n in conn.execute(COUNTS)}
    _load_groups(conn, state)
    _load_tasks(conn, state)
    _load_workflows(conn, state)
    return state


def _request_hash(command: str, require: str, want: str, options: list[Any]) -> int:
    priority, max_attempts, timeout_s, after, after_any, index, retries, delay_s, on = options
    workflow = workflow_fields(
        tuple(_list(after)), tuple(_list(after_any)), index, retries, delay_s, _codes(on)
    )
    return request_hash(
        command, _tags(require), _tags(want), priority, max_attempts, timeout_s, *workflow
    )


def _load_groups(conn: sqlite3.Connection, state: State) -> None:
    for group_id, name, max_running in conn.execute(GROUPS):
        state.groups[group_id] = Group(group_id, name, max_running)
        if name is not None:
            state.group_names[name] = group_id
        state.next_group_id = max(state.next_group_id, group_id + 1)


def _load_tasks(conn: sqlite3.Connection, state: State) -> None:
    """The live tasks, the matcher's shapes and heaps, and the groups' running counts."""
    shapes: dict[tuple[str, str, int | None], Shape] = {}
    pending: dict[Shape, list[int]] = {}
    matcher, tasks, workers, groups = state.matcher, state.tasks, state.workers, state.groups
    for (
        task_id,
        require,
        want,
        priority,
        max_attempts,
        attempt,
        status,
        worker_id,
        group_id,
    ) in conn.execute(LIVE_TASKS):
        group = None if group_id is None else groups[group_id]
        cap = group_id if group is not None and group.max_running is not None else None
        shape = shapes.get((require, want, cap))
        if shape is None:
            tags = frozenset(orjson.loads(require)), frozenset(orjson.loads(want))
            shape = matcher.shape(*tags) if group is None else group.shape(matcher, *tags)
            shapes[(require, want, cap)] = shape
            pending[shape] = []
        task = Task(task_id, shape, priority, max_attempts, attempt, group)
        tasks[task_id] = task
        if status == "pending":
            pending[shape].append(task_key(priority, task_id))
            continue
        task.state = TaskState(status)
        task.worker_id = worker_id
        if group is not None and task.state in BUSY:
            group.running += 1
        worker = workers.get(worker_id) if worker_id else None
        if worker is not None:
            worker.running.add(task_id)
    for shape, keys in pending.items():
        matcher.load(shape, keys)
    for group in groups.values():
        if group.at_cap:
            for shape in group.shapes:
                matcher.suspend(shape)


def _load_workflows(conn: sqlite3.Connection, state: State) -> None:
    """Dependencies, delayed retries, retry policies and the ids that did not succeed."""
    for task_id, after, after_any, retry_at in conn.execute(WAITING_TASKS):
        if retry_at is not None:
            due = from_text(retry_at)
            state.retry_due[task_id] = due
            state.retry_heap.append((due, task_id))
        else:
            index_waiting(state, task_id, tuple(_list(after)), tuple(_list(after_any)))
    heapq.heapify(state.retry_heap)
    for task_id, retries, delay_s, on, left in conn.execute(RETRY_POLICIES):
        state.retry_policies[task_id] = state.retry_policy(retries, delay_s, _codes(on))
        if left < retries:
            state.retries_used[task_id] = retries - left
    for (task_id,) in conn.execute(ENDED, ("failed",)):
        state.failed_ids.add(task_id)
    for (task_id,) in conn.execute(ENDED, ("cancelled",)):
        state.cancelled_ids.add(task_id)


def _list(text: str | None) -> list[Any]:
    return orjson.loads(text) if text else []


def _codes(text: str | None) -> tuple[int | str, ...] | None:
    return None if text is None else tuple(orjson.loads(text))


def _tags(text: str) -> frozenset[str]:
    return frozenset(orjson.loads(text))


def load_state(conn: sqlite3.Connection) -> tuple[State, int]:
    """The live State: projections plus the log's tail; returns (state, tail events folded).

    Every tail row is checked against the hash chain as it is read.

    Raises:
        DatabaseRefused: the projections or the tail cannot be read, verified or folded.
    """
    collecting = gc.isenabled()
    gc.disable()  # a million new long-lived records: the collector would rescan them all
    try:
        state = load_projections(conn)
        tail = 0
        for row in read_verified(conn, state.last_seq):
            rec = row.decode()
            apply(state, rec.event, seq=rec.seq, at=rec.at)
            tail += 1
    except (sqlite3.DatabaseError, KeyError, ValueError) as exc:
        raise DatabaseRefused(f"cannot load the state: {exc}; try `kickoff verify`") from exc
    finally:
        if collecting:
            gc.enable()
    return state, tail
