"""State and the pure fold `apply(state, event, at)`. No clock, no I/O here.

State holds only what matching and the rules need: live tasks (in one of `LIVE_STATES`),
live workers, id counters, idempotency keys and per-state counts. Finished tasks leave
memory; the projections in SQLite keep them. Commands never live here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kickoff.events import model as ev
from kickoff.state.matcher import Matcher, Shape
from kickoff.state.task_state import TaskState

_PENDING = TaskState.PENDING  # a module constant: an enum member lookup costs 60 ns a task


class Task:
    """One live task: the hot record, kept small (see bench/ for bytes per task)."""

    __slots__ = ("attempt", "id", "max_attempts", "priority", "shape", "state", "worker_id")

    def __init__(
        self, task_id: int, shape: Shape, priority: int, max_attempts: int, attempt: int = 0
    ) -> None:
        self.id = task_id
        self.shape = shape
        self.priority = priority
        self.max_attempts = max_attempts
        self.attempt = attempt  # attempts started so far; the current one while running
        self.state = _PENDING
        self.worker_id: str | None = None

    def snapshot(self) -> tuple[Any, ...]:
        return (
            self.id,
            sorted(self.shape.require),
            sorted(self.shape.want),
            self.priority,
            self.max_attempts,
            self.attempt,
            str(self.state),
            self.worker_id,
        )


@dataclass(slots=True)
class Worker:
    """One live worker."""

    id: str
    name: str
    tags: frozenset[str]
    slots: int
    last_seen: datetime
    running: set[int] = field(default_factory=set)


def request_hash(
    command: str,
    require: frozenset[str],
    want: frozenset[str],
    priority: int,
    max_attempts: int,
    timeout_s: float | None,
) -> int:
    """What makes a second submit with a known idempotency key a retry of the first: every
    field of the task but the key itself (a hash, so that commands stay out of memory)."""
    return hash((command, require, want, priority, max_attempts, timeout_s))


def worker_number(worker_id: str) -> int:
    """`w17` -> 17 (worker ids are `w` plus a counter)."""
    return int(worker_id[1:])


class State:
    """Everything the server decides with, rebuilt by folding the log."""

    def __init__(self) -> None:
        self.tasks: dict[int, Task] = {}
        self.workers: dict[str, Worker] = {}
        self.next_task_id = 1
        self.next_worker_no = 1
        self.idempotency: dict[str, tuple[int, int]] = {}  # key -> (task id, request_hash)
        self.counts: dict[TaskState, int] = dict.fromkeys(TaskState, 0)
        self.last_seq = 0
        self.matcher = Matcher(self._is_pending)

    def _is_pending(self, task_id: int) -> bool:
        task = self.tasks.get(task_id)
        return task is not None and task.state is TaskState.PENDING

    def snapshot(self) -> dict[str, Any]:
        """A plain, comparable picture of the logical state (tests: replay == live)."""
        return {
            "tasks": sorted(t.snapshot() for t in self.tasks.values()),
            "workers": sorted(
                (w.id, w.name, sorted(w.tags), w.slots, w.last_seen, sorted(w.running))
                for w in self.workers.values()
            ),
            "next_task_id": self.next_task_id,
            "next_worker_no": self.next_worker_no,
            "idempotency": dict(sorted(self.idempotency.items())),
            "counts": {str(k): v for k, v in self.counts.items()},
            "last_seq": self.last_seq,
            "pending": sorted(
                (sorted(s.require), sorted(s.want), ids)
                for s, ids in self.matcher.pending_ids()
                if ids
            ),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, State) and self.snapshot() == other.snapshot()

    __hash__ = None  # type: ignore[assignment]


def _move(state: State, task: Task, to: TaskState) -> None:
    state.counts[task.state] -= 1
    state.counts[to] += 1
    task.state = to


def _finish(state: State, task: Task, to: TaskState) -> None:
    """The task reached a final state: count it and let it leave memory."""
    if task.state is TaskState.PENDING:
        state.matcher.drop_top(task.shape, task.id)
    _move(state, task, to)
    if task.worker_id is not None:
        worker = state.workers.get(task.worker_id)
        if worker is not None:
            worker.running.discard(task.id)
    del state.tasks[task.id]


def _server_started(state: State, e: ev.ServerStarted, at: datetime) -> None:
    for worker in state.workers.values():
        worker.last_seen = at  # the outage never counts against a worker


def _task_submitted(state: State, e: ev.TaskSubmitted, at: datetime) -> None:
    task_id, priority, matcher = e.task_id, e.priority, state.matcher
    shape = matcher.shape(e.require, e.want)
    state.tasks[task_id] = Task(task_id, shape, priority, e.max_attempts)
    state.counts[_PENDING] += 1
    if task_id >= state.next_task_id:
        state.next_task_id = task_id + 1
    if e.idempotency_key is not None:
        state.idempotency[e.idempotency_key] = (
            task_id,
            request_hash(e.command, e.require, e.want, priority, e.max_attempts, e.timeout_s),
        )
    matcher.push(shape, priority, task_id)


def _task_claimed(state: State, e: ev.TaskClaimed, at: datetime) -> None:
    task = state.tasks[e.task_id]
    state.matcher.drop_top(task.shape, task.id)
    _move(state, task, TaskState.RUNNING)
    task.attempt = e.attempt
    task.worker_id = e.worker_id
    worker = state.workers[e.worker_id]
    worker.running.add(task.id)
    worker.last_seen = at


def _worker_heartbeat(state: State, e: ev.WorkerHeartbeat, at: datetime) -> None:
    state.workers[e.worker_id].last_seen = at


def _task_completed(state: State, e: ev.TaskCompleted, at: datetime) -> None:
    ok = e.exit_code == 0 and not e.timed_out
    _finish(state, state.tasks[e.task_id], TaskState.SUCCEEDED if ok else TaskState.FAILED)
    worker = state.workers.get(e.worker_id)
    if worker is not None:
        worker.last_seen = at


def _task_cancel_requested(state: State, e: ev.TaskCancelRequested, at: datetime) -> None:
    task = state.tasks[e.task_id]
    if task.state is TaskState.RUNNING:
        _move(state, task, TaskState.CANCELLING)


def _task_cancelled(state: State, e: ev.TaskCancelled, at: datetime) -> None:
    _finish(state, state.tasks[e.task_id], TaskState.CANCELLED)


def _task_lease_expired(state: State, e: ev.TaskLeaseExpired, at: datetime) -> None:
    task = state.tasks[e.task_id]
    worker = state.workers.get(e.worker_id)
    if worker is not None:
        worker.running.discard(task.id)
    task.worker_id = None


def _task_requeued(state: State, e: ev.TaskRequeued, at: datetime) -> None:
    task = state.tasks[e.task_id]
    if task.worker_id is not None:  # requeued straight from a worker (stopped, killed)
        worker = state.workers.get(task.worker_id)
        if worker is not None:
            worker.running.discard(task.id)
        task.worker_id = None
    _move(state, task, TaskState.PENDING)
    state.matcher.push(task.shape, task.priority, task.id)


def _task_failed(state: State, e: ev.TaskFailed, at: datetime) -> None:
    _finish(state, state.tasks[e.task_id], TaskState.FAILED)


def _worker_registered(state: State, e: ev.WorkerRegistered, at: datetime) -> None:
    state.workers[e.worker_id] = Worker(e.worker_id, e.name, e.tags, e.slots, at)
    state.next_worker_no = max(state.next_worker_no, worker_number(e.worker_id) + 1)


def _drop_unused_view(state: State, tags: frozenset[str]) -> None:
    """Views are per tag set; one no live worker has would only slow every submit down."""
    if all(w.tags != tags for w in state.workers.values()):
        state.matcher.drop_view(tags)


def _worker_tags_changed(state: State, e: ev.WorkerTagsChanged, at: datetime) -> None:
    worker = state.workers[e.worker_id]
    old, worker.tags = worker.tags, e.tags
    _drop_unused_view(state, old)


def _worker_gone(state: State, e: ev.WorkerStopped | ev.WorkerLost, at: datetime) -> None:
    worker = state.workers.pop(e.worker_id)
    _drop_unused_view(state, worker.tags)


_HANDLERS: dict[type, Callable[[State, Any, datetime], None]] = {
    ev.ServerStarted: _server_started,
    ev.TaskSubmitted: _task_submitted,
    ev.TaskClaimed: _task_claimed,
    ev.WorkerHeartbeat: _worker_heartbeat,
    ev.TaskCompleted: _task_completed,
    ev.TaskCancelRequested: _task_cancel_requested,
    ev.TaskCancelled: _task_cancelled,
    ev.TaskLeaseExpired: _task_lease_expired,
    ev.TaskRequeued: _task_requeued,
    ev.TaskFailed: _task_failed,
    ev.WorkerRegistered: _worker_registered,
    ev.WorkerTagsChanged: _worker_tags_changed,
    ev.WorkerStopped: _worker_gone,
    ev.WorkerLost: _worker_gone,
}


def apply(state: State, event: ev.Event, *, seq: int, at: datetime) -> None:
    """Fold one recorded event into the state (in place).

    Raises:
        KeyError: the event names a task or worker the state does not have, i.e. the log
            is not one this fold produced (verify reports it).
    """
    _HANDLERS[type(event)](state, event, at)
    state.last_seq = seq
