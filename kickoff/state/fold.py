"""State and the pure fold `apply(state, event, at)`. No clock, no I/O here.

State holds only what matching and the rules need: live tasks (in one of `LIVE_STATES`),
live workers (with the resources their running tasks hold: `Worker.held`, `Worker.free`),
id counters, idempotency keys and per-state counts, how often each blocked pending task
was gone ahead of (`State.passes`, see matcher.py), and the workflow records
(`workflows.py`: groups, dependencies, retries, and a bit per finished task that did not
succeed). Finished tasks leave memory; the projections in SQLite keep them.
Commands never live here.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kickoff.events import model as ev
from kickoff.resources import NONE, Resources
from kickoff.state.matcher import Matcher, Profile, Shape, ShapeKey, task_key
from kickoff.state.task_state import TaskState
from kickoff.state.workflows import Group, IdSet, Retry, Waiting

_PENDING = TaskState.PENDING  # a module constant: an enum member lookup costs 60 ns a task
_WAITING = TaskState.WAITING
BUSY = frozenset({TaskState.RUNNING, TaskState.CANCELLING})  # on a worker


class Task:
    """One live task: the hot record, kept small (see bench/ for bytes per task)."""

    __slots__ = (
        "attempt",
        "group",
        "id",
        "max_attempts",
        "priority",
        "shape",
        "state",
        "worker_id",
    )

    def __init__(
        self,
        task_id: int,
        shape: Shape,
        priority: int,
        max_attempts: int,
        attempt: int = 0,
        group: Group | None = None,
    ) -> None:
        self.id = task_id
        self.shape = shape
        self.priority = priority
        self.max_attempts = max_attempts
        self.attempt = attempt  # attempts started so far; the current one while running
        self.state = _PENDING
        self.worker_id: str | None = None
        self.group = group

    def snapshot(self) -> tuple[Any, ...]:
        return (
            self.id,
            sorted(self.shape.require),
            sorted(self.shape.want),
            self.shape.group_id or 0,
            self.priority,
            self.max_attempts,
            self.attempt,
            str(self.state),
            self.worker_id,
            0 if self.group is None else self.group.id,
            self.shape.resources,
        )


Holding = tuple[Resources, tuple[int, ...]]
"""What a running attempt holds on its worker: amounts, and device ids of `gpu`."""


@dataclass(slots=True)
class Worker:
    """One live worker. `resources`: its declared amounts; `gpu_ids`: the devices it hands
    out; `held`: what each of its running tasks holds (from their TaskClaimed); `free`:
    declared minus held, per name. `kickoff why` and the worker JSON read these."""

    id: str
    name: str
    tags: frozenset[str]
    slots: int
    last_seen: datetime
    running: set[int] = field(default_factory=set)
    resources: Resources = NONE
    gpu_ids: tuple[int, ...] = ()
    held: dict[int, Holding] = field(default_factory=dict)
    free: dict[str, int] = field(init=False)
    profile: Profile = field(init=False)  # what it may ever run: the matcher's view key

    def __post_init__(self) -> None:
        self.free = dict(self.resources)
        self.retag(self.tags)

    def retag(self, tags: frozenset[str]) -> None:
        self.tags = tags
        self.profile = (tags, tuple((n, a) for n, a in self.resources if a))

    def hold(self, task_id: int, resources: Resources, gpu_ids: tuple[int, ...]) -> None:
        """A task of its started: it runs here, holding these until it ends."""
        self.running.add(task_id)
        if resources:
            self.held[task_id] = (resources, gpu_ids)
            free = self.free
            for name, amount in resources:
                free[name] = free.get(name, 0) - amount

    def release(self, task_id: int) -> None:
        """A task of its no longer runs here: what it held is free again."""
        self.running.discard(task_id)
        holding = self.held.pop(task_id, None)
        if holding is not None:
            free = self.free
            for name, amount in holding[0]:
                free[name] += amount

    def free_gpu_ids(self) -> list[int]:
        """Its devices no running task holds, in declared order."""
        taken = {g for _, ids in self.held.values() for g in ids}
        return [g for g in self.gpu_ids if g not in taken]

    def snapshot(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.name,
            sorted(self.tags),
            self.slots,
            self.last_seen,
            sorted(self.running),
            self.resources,
            self.gpu_ids,
            sorted(self.held.items()),
            sorted((n, a) for n, a in self.free.items()),
        )


def request_hash(
    command: str,
    require: frozenset[str],
    want: frozenset[str],
    priority: int,
    max_attempts: int,
    timeout_s: float | None,
    *workflow: Any,
    resources: Resources = NONE,
) -> int:
    """What makes a second submit with a known idempotency key a retry of the first: every
    field of the task but the key itself (a hash, so that commands stay out of memory).

    `workflow`: after, after_any, array_index, retries, retry_delay_s and retry_on, when
    any differs from its default (a task without them hashes as before they existed).
    The group is not part of it: a retry of a `--from` names the group its first batch
    was given. `resources` counts only when there are some (likewise).
    """
    asks = (("resources", resources),) if resources else ()
    return hash((command, require, want, priority, max_attempts, timeout_s, *workflow, *asks))


WORKFLOW_DEFAULTS = ((), (), None, 0, 0.0, None)
"""The defaults of request_hash's `workflow` fields, in order."""


def workflow_fields(
    after: tuple[int, ...],
    after_any: tuple[int, ...],
    array_index: int | None,
    retries: int,
    retry_delay_s: float,
    retry_on: tuple[int | str, ...] | None,
) -> tuple[Any, ...]:
    """request_hash's `workflow` arguments: none at all when every one is at its default."""
    fields = (after, after_any, array_index, retries, retry_delay_s, retry_on)
    return () if fields == WORKFLOW_DEFAULTS else fields


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
        self.groups: dict[int, Group] = {}
        self.group_names: dict[str, int] = {}  # named groups only
        self.next_group_id = 1
        self.waiting: dict[int, Waiting] = {}  # tasks waiting for dependencies
        self.dependents: dict[int, list[int]] = {}  # live task -> tasks waiting for it (lazy)
        self.retry_policies: dict[int, Retry] = {}  # live tasks with --retries
        self.retries_used: dict[int, int] = {}  # of those, the ones retried so far
        self._policies: dict[tuple[Any, ...], Retry] = {}  # one Retry per distinct policy
        self.retry_due: dict[int, datetime] = {}  # tasks waiting for a delayed retry
        self.retry_heap: list[tuple[datetime, int]] = []  # (due, task id), lazily deleted
        self.failed_ids = IdSet()  # finished tasks that failed
        self.cancelled_ids = IdSet()  # finished tasks that were cancelled
        self.passes: dict[int, int] = {}  # pending task -> claims that went ahead of it

    def _is_pending(self, task_id: int) -> bool:
        task = self.tasks.get(task_id)
        return task is not None and task.state is TaskState.PENDING

    def snapshot(self) -> dict[str, Any]:
        """A plain, comparable picture of the logical state (tests: replay == live)."""
        return {
            "tasks": sorted(t.snapshot() for t in self.tasks.values()),
            "workers": sorted(w.snapshot() for w in self.workers.values()),
            "next_task_id": self.next_task_id,
            "next_worker_no": self.next_worker_no,
            "idempotency": dict(sorted(self.idempotency.items())),
            "counts": {str(k): v for k, v in self.counts.items()},
            "last_seq": self.last_seq,
            "pending": sorted(
                (sorted(s.require), sorted(s.want), s.group_id or 0, s.resources, s.suspended, ids)
                for s, ids in self.matcher.pending_ids()
                if ids
            ),
            "groups": sorted(g.snapshot() for g in self.groups.values()),
            "group_names": dict(sorted(self.group_names.items())),
            "next_group_id": self.next_group_id,
            "waiting": sorted((i, w.snapshot()) for i, w in self.waiting.items()),
            "dependents": sorted(
                (i, [d for d in ids if d in self.waiting])
                for i, ids in self.dependents.items()
                if any(d in self.waiting for d in ids)
            ),
            "retry_policies": sorted((i, r.snapshot()) for i, r in self.retry_policies.items()),
            "retries_used": sorted(self.retries_used.items()),
            "retry_due": sorted(self.retry_due.items()),
            "failed_ids": self.failed_ids.ids(),
            "cancelled_ids": self.cancelled_ids.ids(),
            "passes": sorted(self.passes.items()),
        }

    def retry_policy(self, total: int, delay_s: float, on: tuple[int | str, ...] | None) -> Retry:
        """The shared Retry for this policy."""
        key = (total, delay_s, on)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = Retry(total, delay_s, on)
        return policy

    def retries_of(self, task_id: int) -> tuple[Retry | None, int]:
        """A live task's retry policy (None: it has none) and the retries it used."""
        return self.retry_policies.get(task_id), self.retries_used.get(task_id, 0)

    def waiting_for(self, task_id: int) -> list[int]:
        """The dependencies a waiting task still waits for (none if it is not waiting)."""
        waiting = self.waiting.get(task_id)
        if waiting is None:
            return []
        return sorted({d for d in (*waiting.after, *waiting.after_any) if d in self.tasks})

    def group_tasks(self, group_id: int) -> list[Task]:
        """The live tasks of a group, by id (a scan of the live tasks: for commands on a
        whole group, never for claims)."""
        return sorted(
            (t for t in self.tasks.values() if t.group is not None and t.group.id == group_id),
            key=lambda t: t.id,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, State) and self.snapshot() == other.snapshot()

    __hash__ = None  # type: ignore[assignment]


LiveWorker = tuple[str, str, frozenset[str], int, datetime, Resources, tuple[int, ...]]
"""id, name, tags, slots, last seen, resources, gpu ids"""
LiveTask = tuple[
    int,
    frozenset[str],
    frozenset[str],
    int,
    int,
    int,
    str,
    str | None,
    int | None,
    Resources,
    tuple[int, ...],
    int,
]
"""id, require, want, priority, max_attempts, attempt, state, worker id, group id,
resources, the gpu ids its attempt holds, the claims that went ahead of it (pending)"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """What a checkpoint holds, as plain values, for `restore` (the projections' start-up
    checkpoint fills it from its rows; each iterable is read once, in this order)."""

    last_seq: int
    workers: Iterable[LiveWorker]  # the live ones
    worker_ids: Iterable[str]  # every worker id ever given
    last_task_id: int
    idempotency: Iterable[tuple[str, int, int]]  # key, task id, request_hash
    counts: Iterable[tuple[str, int]]  # tasks per state
    groups: Iterable[tuple[int, str | None, int | None]]  # id, name, max_running
    tasks: Iterable[LiveTask]  # the live ones
    waiting: Iterable[tuple[int, tuple[int, ...], tuple[int, ...], datetime | None]]
    """waiting tasks in id order: id, after, after_any, when a delayed retry is due"""
    retry_policies: Iterable[tuple[int, int, float, tuple[int | str, ...] | None, int]]
    """live tasks with retries: id, retries, delay, retry_on, retries left"""
    failed_ids: Iterable[int]
    cancelled_ids: Iterable[int]


def restore(checkpoint: Checkpoint) -> State:
    """The State a checkpoint describes: the one the fold reaches at its `last_seq`
    (tests/store/test_checkpoint.py holds both equal). The fold's rules build every State:
    this is the one other way in."""
    c = checkpoint
    state = State()
    state.last_seq = c.last_seq
    for worker_id, name, tags, slots, last_seen, resources, gpu_ids in c.workers:
        state.workers[worker_id] = Worker(
            worker_id, name, tags, slots, last_seen, resources=resources, gpu_ids=gpu_ids
        )
    state.next_worker_no = max((worker_number(w) for w in c.worker_ids), default=0) + 1
    state.next_task_id = c.last_task_id + 1
    state.idempotency = {key: (task_id, digest) for key, task_id, digest in c.idempotency}
    state.counts.update((TaskState(name), n) for name, n in c.counts)
    for group_id, label, max_running in c.groups:
        state.groups[group_id] = Group(group_id, label, max_running)
        if label is not None:
            state.group_names[label] = group_id
        state.next_group_id = max(state.next_group_id, group_id + 1)
    _restore_tasks(state, c.tasks)
    for task_id, after, after_any, retry_due in c.waiting:
        if retry_due is not None:
            state.retry_due[task_id] = retry_due
            state.retry_heap.append((retry_due, task_id))
        else:
            index_waiting(state, task_id, after, after_any)
    heapq.heapify(state.retry_heap)
    for task_id, retries, delay_s, on, left in c.retry_policies:
        state.retry_policies[task_id] = state.retry_policy(retries, delay_s, on)
        if left < retries:
            state.retries_used[task_id] = retries - left
    for task_id in c.failed_ids:
        state.failed_ids.add(task_id)
    for task_id in c.cancelled_ids:
        state.cancelled_ids.add(task_id)
    return state


def _restore_tasks(state: State, tasks: Iterable[LiveTask]) -> None:
    """The live tasks, the matcher's shapes and heaps, the groups' running counts, and
    what the running tasks hold on their workers."""
    shapes: dict[ShapeKey, Shape] = {}
    pending: dict[Shape, list[int]] = {}
    matcher, live, workers, groups = state.matcher, state.tasks, state.workers, state.groups
    for row in tasks:
        task_id, require, want, priority, max_attempts, attempt, status, on, group_id = row[:9]
        resources, gpu_ids, passes = row[9:]
        group = None if group_id is None else groups[group_id]
        cap = group_id if group is not None and group.max_running is not None else None
        shape = shapes.get((require, want, cap, resources))
        if shape is None:
            shape = (
                matcher.shape(require, want, None, resources)
                if group is None
                else group.shape(matcher, require, want, resources)
            )
            shapes[(require, want, cap, resources)] = shape
        task = live[task_id] = Task(task_id, shape, priority, max_attempts, attempt, group)
        if status == _PENDING:
            pending.setdefault(shape, []).append(task_key(priority, task_id))
            if passes:
                state.passes[task_id] = passes
            continue
        task.state = TaskState(status)
        task.worker_id = on
        if group is not None and task.state in BUSY:
            group.running += 1
        worker = workers.get(on) if on else None
        if worker is not None:
            worker.hold(task_id, resources, gpu_ids)
    for shape, keys in pending.items():
        matcher.load(shape, keys)
    for group in groups.values():
        if group.at_cap:
            for shape in group.shapes:
                matcher.suspend(shape)


def _move(state: State, task: Task, to: TaskState) -> None:
    was = task.state
    state.counts[was] -= 1
    state.counts[to] += 1
    task.state = to
    group = task.group
    if group is not None and (was in BUSY) != (to in BUSY):
        if to in BUSY:
            group.started(state.matcher)
        else:
            group.stopped(state.matcher)


def _finish(state: State, task: Task, to: TaskState) -> None:
    """The task reached a final state: count it and let it leave memory."""
    if task.state is TaskState.PENDING:
        state.matcher.drop_top(task.shape, task.id)
    elif task.state is _WAITING:
        state.waiting.pop(task.id, None)
        _forget_retry(state, task.id)
    _move(state, task, to)
    _free_worker(state, task)
    del state.tasks[task.id]
    state.passes.pop(task.id, None)
    state.retry_policies.pop(task.id, None)
    state.retries_used.pop(task.id, None)
    if to is TaskState.FAILED:
        state.failed_ids.add(task.id)
    elif to is TaskState.CANCELLED:
        state.cancelled_ids.add(task.id)
    for dependent in state.dependents.pop(task.id, ()):
        waiting = state.waiting.get(dependent)
        if waiting is not None:  # else it was cancelled meanwhile (entries go lazily)
            waiting.left -= 1


def _free_worker(state: State, task: Task) -> None:
    if task.worker_id is not None:
        worker = state.workers.get(task.worker_id)
        if worker is not None:
            worker.release(task.id)
        task.worker_id = None


def _forget_retry(state: State, task_id: int) -> None:
    """The task no longer waits for a retry: drop it, and the heap's dead top entries."""
    state.retry_due.pop(task_id, None)
    heap, due = state.retry_heap, state.retry_due
    while heap and due.get(heap[0][1]) != heap[0][0]:
        heapq.heappop(heap)


def _server_started(state: State, e: ev.ServerStarted, at: datetime) -> None:
    for worker in state.workers.values():
        worker.last_seen = at  # the outage never counts against a worker


def _task_submitted(state: State, e: ev.TaskSubmitted, at: datetime) -> None:
    task_id, priority, matcher = e.task_id, e.priority, state.matcher
    if e.group_id is None:
        group = None
        shape = matcher.shape(e.require, e.want, None, e.resources)
    else:
        group = state.groups[e.group_id]
        shape = group.shape(matcher, e.require, e.want, e.resources)
    task = state.tasks[task_id] = Task(task_id, shape, priority, e.max_attempts, 0, group)
    if task_id >= state.next_task_id:
        state.next_task_id = task_id + 1
    if e.idempotency_key is not None:
        state.idempotency[e.idempotency_key] = (task_id, submitted_hash(e))
    if e.retries:
        state.retry_policies[task_id] = state.retry_policy(e.retries, e.retry_delay_s, e.retry_on)
    if e.after or e.after_any:
        task.state = _WAITING
        state.counts[_WAITING] += 1
        index_waiting(state, task_id, e.after, e.after_any)
        return
    state.counts[_PENDING] += 1
    matcher.push(shape, priority, task_id)


def submitted_hash(e: ev.TaskSubmitted) -> int:
    """The request hash of a submitted task (see request_hash)."""
    workflow = workflow_fields(
        e.after, e.after_any, e.array_index, e.retries, e.retry_delay_s, e.retry_on
    )
    return request_hash(
        e.command,
        e.require,
        e.want,
        e.priority,
        e.max_attempts,
        e.timeout_s,
        *workflow,
        resources=e.resources,
    )


def index_waiting(
    state: State, task_id: int, after: tuple[int, ...], after_any: tuple[int, ...]
) -> None:
    """Index a waiting task under each of its dependencies that is still live (the fold,
    and the checkpoint once every live task is loaded)."""
    live = [d for d in dict.fromkeys((*after, *after_any)) if d in state.tasks]
    for dependency in live:
        state.dependents.setdefault(dependency, []).append(task_id)
    state.waiting[task_id] = Waiting(after, after_any, len(live))


def _group_created(state: State, e: ev.GroupCreated, at: datetime) -> None:
    state.groups[e.group_id] = Group(e.group_id, e.name, e.max_running)
    if e.name is not None:
        state.group_names[e.name] = e.group_id
    state.next_group_id = max(state.next_group_id, e.group_id + 1)


def _task_released(state: State, e: ev.TaskReleased, at: datetime) -> None:
    task = state.tasks[e.task_id]
    if task.state is not _WAITING:
        raise ValueError(f"task {task.id} is {task.state}, not waiting")
    del state.waiting[task.id]
    _move(state, task, _PENDING)
    state.matcher.push(task.shape, task.priority, task.id)


def _task_claimed(state: State, e: ev.TaskClaimed, at: datetime) -> None:
    task = state.tasks[e.task_id]
    state.matcher.drop_top(task.shape, task.id)
    _move(state, task, TaskState.RUNNING)
    task.attempt = e.attempt
    task.worker_id = e.worker_id
    worker = state.workers[e.worker_id]
    worker.last_seen = at
    if e.resources:
        worker.hold(task.id, e.resources, e.gpu_ids)
    else:
        worker.running.add(task.id)
    passes = state.passes
    if e.ahead_of is not None:
        passes[e.ahead_of] = passes.get(e.ahead_of, 0) + 1
    if passes:
        passes.pop(task.id, None)


def _worker_heartbeat(state: State, e: ev.WorkerHeartbeat, at: datetime) -> None:
    state.workers[e.worker_id].last_seen = at


def _task_completed(state: State, e: ev.TaskCompleted, at: datetime) -> None:
    task = state.tasks[e.task_id]
    if e.retry_in_s is not None:  # not over: it waits for its next attempt
        state.retries_used[task.id] = state.retries_used.get(task.id, 0) + 1
        _move(state, task, _WAITING)
        _free_worker(state, task)
        due = at + timedelta(seconds=e.retry_in_s)
        state.retry_due[task.id] = due
        heapq.heappush(state.retry_heap, (due, task.id))
    else:
        ok = e.exit_code == 0 and not e.timed_out
        _finish(state, task, TaskState.SUCCEEDED if ok else TaskState.FAILED)
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
        worker.release(task.id)
    task.worker_id = None


def _task_requeued(state: State, e: ev.TaskRequeued, at: datetime) -> None:
    task = state.tasks[e.task_id]
    _free_worker(state, task)  # requeued straight from a worker (stopped, killed)
    if task.state is _WAITING:  # its retry is due
        _forget_retry(state, task.id)
    _move(state, task, TaskState.PENDING)
    state.matcher.push(task.shape, task.priority, task.id)


def _task_failed(state: State, e: ev.TaskFailed, at: datetime) -> None:
    _finish(state, state.tasks[e.task_id], TaskState.FAILED)


def _worker_registered(state: State, e: ev.WorkerRegistered, at: datetime) -> None:
    state.workers[e.worker_id] = Worker(
        e.worker_id, e.name, e.tags, e.slots, at, resources=e.resources, gpu_ids=e.gpu_ids
    )
    state.next_worker_no = max(state.next_worker_no, worker_number(e.worker_id) + 1)


def _drop_unused_view(state: State, profile: Profile) -> None:
    """Views are per profile; one no live worker has would only slow every submit down."""
    if all(w.profile != profile for w in state.workers.values()):
        state.matcher.drop_view(profile)


def _worker_tags_changed(state: State, e: ev.WorkerTagsChanged, at: datetime) -> None:
    worker = state.workers[e.worker_id]
    old = worker.profile
    worker.retag(e.tags)
    _drop_unused_view(state, old)


def _worker_gone(state: State, e: ev.WorkerStopped | ev.WorkerLost, at: datetime) -> None:
    worker = state.workers.pop(e.worker_id)
    _drop_unused_view(state, worker.profile)


_HANDLERS: dict[type, Callable[[State, Any, datetime], None]] = {
    ev.ServerStarted: _server_started,
    ev.TaskSubmitted: _task_submitted,
    ev.GroupCreated: _group_created,
    ev.TaskReleased: _task_released,
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
