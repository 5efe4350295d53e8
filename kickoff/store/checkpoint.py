"""Start-up from a checkpoint: the projections, written in the same transaction as the
events they derive from, hold the live state as of their `last_seq`. Loading them and
folding the log's tail after that seq gives the same State as folding the whole log
(tests/store/test_checkpoint.py holds it to that), in a fraction of the time.
"""

from __future__ import annotations

import gc
import sqlite3

import orjson

from kickoff.clock import from_text
from kickoff.errors import DatabaseRefused
from kickoff.state.fold import State, Task, Worker, apply, request_hash, worker_number
from kickoff.state.matcher import Shape, task_key
from kickoff.state.task_state import LIVE_STATES, TaskState
from kickoff.store.log import read_verified

_LIVE = ", ".join(f"'{s}'" for s in LIVE_STATES)
LIVE_TASKS = (
    "SELECT id, require, want, priority, max_attempts, attempt, state, worker_id FROM tasks "
    f"WHERE state IN ({_LIVE})"
)
LIVE_WORKERS = "SELECT id, name, tags, slots, last_seen FROM workers WHERE state = 'alive'"
ALL_WORKER_IDS = "SELECT id FROM workers"
KEYS = (
    "SELECT idempotency_key, id, command, require, want, priority, max_attempts, timeout_s "
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
        key: (task_id, request_hash(command, _tags(require), _tags(want), *options))
        for key, task_id, command, require, want, *options in conn.execute(KEYS)
    }
    state.counts = {TaskState(s): n for s, n in conn.execute(COUNTS)}
    shapes: dict[tuple[str, str], Shape] = {}
    pending: dict[Shape, list[int]] = {}
    matcher, tasks, workers = state.matcher, state.tasks, state.workers
    for task_id, require, want, priority, max_attempts, attempt, status, worker_id in conn.execute(
        LIVE_TASKS
    ):
        shape = shapes.get((require, want))
        if shape is None:
            shape = shapes[(require, want)] = matcher.shape(
                frozenset(orjson.loads(require)), frozenset(orjson.loads(want))
            )
            pending[shape] = []
        task = Task(task_id, shape, priority, max_attempts, attempt)
        tasks[task_id] = task
        if status == "pending":
            pending[shape].append(task_key(priority, task_id))
            continue
        task.state = TaskState(status)
        task.worker_id = worker_id
        worker = workers.get(worker_id) if worker_id else None
        if worker is not None:
            worker.running.add(task_id)
    for shape, keys in pending.items():
        matcher.load(shape, keys)
    return state


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
