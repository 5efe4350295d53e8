"""The rules: `(state, request, now) -> events`. Pure: never changes the state.

`service.py` applies what these return to the state at once (so that the next request
sees it), queues it for one group commit and answers only after that commit; a failed
write reloads the state from the log. So a request writes all of its events or none, and
memory never keeps what the disk does not. Each raises a KickoffError when the request
is not allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kickoff import __version__
from kickoff.defaults import MAX_ATTEMPTS, MAX_WORKER_TAGS
from kickoff.errors import Conflict, IllegalTransition, InvalidInput, NotFound, StaleAttempt
from kickoff.events import model as ev
from kickoff.state.fold import State, Task, Worker, request_hash, worker_number
from kickoff.state.task_state import TaskState


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    """One task of a submit request, already validated by the API's parser."""

    command: str
    require: frozenset[str] = frozenset()
    want: frozenset[str] = frozenset()
    priority: int = 0
    max_attempts: int = MAX_ATTEMPTS
    timeout_s: float | None = None
    idempotency_key: str | None = None


new_task = ev.fast_constructor(NewTask)
"""NewTask(command, require, want, priority, max_attempts, timeout_s, idempotency_key) for
the parser, which makes one per task of a bulk submit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """A worker's report that an attempt ended."""

    task_id: int
    worker_id: str
    attempt: int
    exit_code: int
    duration_s: float
    output_tail: str = ""
    timed_out: bool = False
    cancelled: bool = False


def server_started(heartbeat_timeout_s: float) -> list[ev.Event]:
    return [ev.ServerStarted(version=__version__, heartbeat_timeout_s=heartbeat_timeout_s)]


def submit(
    state: State, tasks: list[NewTask], *, submitted_by: str | None = None
) -> tuple[list[ev.Event], list[int]]:
    """Events for new tasks and the id of every requested task, in order.

    A task whose idempotency key is already known gets the existing id and no event when
    it repeats that task's request exactly (a retry).

    Raises:
        Conflict: a known idempotency key with a different command, tags or options.
    """
    events: list[ev.Event] = []
    ids: list[int] = []
    add_event, add_id, make = events.append, ids.append, ev.task_submitted
    next_id = state.next_task_id
    batch_keys: dict[str, tuple[int, int]] = {}
    for new in tasks:
        key = new.idempotency_key
        if key is not None:
            request = request_hash(
                new.command, new.require, new.want, new.priority, new.max_attempts, new.timeout_s
            )
            known = state.idempotency.get(key) or batch_keys.get(key)
            if known is not None:
                if known[1] != request:
                    raise Conflict(
                        f"idempotency key {key!r} already names task {known[0]}, which was "
                        "submitted with a different command, tags or options"
                    )
                add_id(known[0])
                continue
            batch_keys[key] = (next_id, request)
        add_event(
            make(
                next_id,
                new.command,
                new.require,
                new.want,
                new.priority,
                new.max_attempts,
                new.timeout_s,
                key,
                submitted_by,
            )
        )
        add_id(next_id)
        next_id += 1
    return events, ids


def find_task(state: State, task_id: int) -> Task | None:
    """The live task, None if it finished.

    Raises:
        NotFound: no task ever had this id.
    """
    task = state.tasks.get(task_id)
    if task is None and not 0 < task_id < state.next_task_id:
        raise NotFound(f"no task {task_id}")
    return task


def find_worker(state: State, worker_id: str) -> Worker:
    """The live worker.

    Raises:
        NotFound: no such worker ever registered.
        IllegalTransition: the worker was lost or stopped; it must register again.
    """
    worker = state.workers.get(worker_id)
    if worker is not None:
        return worker
    digits = worker_id[1:]
    known = (
        worker_id[:1] == "w"
        and digits.isascii()
        and digits.isdigit()
        and len(digits) <= 18
        and 0 < worker_number(worker_id) < state.next_worker_no
    )
    if known:
        raise IllegalTransition(f"worker {worker_id} was lost or stopped; register again")
    raise NotFound(f"no worker {worker_id[:80]!r}")


def register(
    state: State, *, name: str, tags: frozenset[str], slots: int, host: str | None = None
) -> list[ev.Event]:
    worker_id = f"w{state.next_worker_no}"
    return [ev.WorkerRegistered(worker_id=worker_id, name=name, tags=tags, slots=slots, host=host)]


def claim(state: State, worker_id: str) -> list[ev.Event]:
    """One TaskClaimed for the best task this worker may run, or nothing.

    Raises:
        NotFound, IllegalTransition: see find_worker.
    """
    worker = find_worker(state, worker_id)
    if len(worker.running) >= worker.slots:
        return []
    task_id = state.matcher.best(worker.tags)
    if task_id is None:
        return []
    attempt = state.tasks[task_id].attempt + 1
    return [ev.TaskClaimed(task_id=task_id, worker_id=worker_id, attempt=attempt)]


def heartbeat(
    state: State, worker_id: str, running: list[tuple[int, int]]
) -> tuple[list[ev.Event], list[int]]:
    """The heartbeat event and the task ids the worker must stop running.

    A task is to be stopped when it is being cancelled, or when the worker's attempt is no
    longer the task's current attempt on this worker (its lease expired, it finished).
    """
    worker = find_worker(state, worker_id)
    stop: list[int] = []
    for task_id, attempt in running:
        task = state.tasks.get(task_id)
        if (
            task is None
            or task.worker_id != worker_id
            or task.attempt != attempt
            or task.state is TaskState.CANCELLING
        ):
            stop.append(task_id)
    stop.extend(
        t for t in worker.running if state.tasks[t].state is TaskState.CANCELLING and t not in stop
    )
    pairs = tuple(sorted((t, a) for t, a in running if t not in stop))
    return [ev.WorkerHeartbeat(worker_id=worker_id, running=pairs)], sorted(set(stop))


def _current_attempt(state: State, report: Completion) -> Task:
    task = find_task(state, report.task_id)
    if task is None:
        raise StaleAttempt(f"task {report.task_id} has already finished")
    if task.worker_id != report.worker_id or task.attempt != report.attempt:
        raise StaleAttempt(
            f"task {report.task_id} attempt {report.attempt} on {report.worker_id} is stale: "
            f"the current attempt is {task.attempt} on {task.worker_id or 'no worker'}"
        )
    return task


def complete(state: State, report: Completion) -> list[ev.Event]:
    """The end of the current attempt: completed, or cancelled if it was killed for a cancel.

    Raises:
        StaleAttempt: the report is not from the task's current attempt and worker.
        NotFound: no such task.
    """
    task = _current_attempt(state, report)
    if report.cancelled and task.state is TaskState.CANCELLING:
        return [
            ev.TaskCancelled(
                task_id=task.id,
                attempt=report.attempt,
                worker_id=report.worker_id,
                output_tail=report.output_tail,
            )
        ]
    if report.cancelled:  # killed without a cancel request: the worker gave it up
        return _requeue_or_fail(task, reason="worker_stopped")
    return [
        ev.TaskCompleted(
            task_id=task.id,
            worker_id=report.worker_id,
            attempt=report.attempt,
            exit_code=report.exit_code,
            duration_s=report.duration_s,
            output_tail=report.output_tail,
            timed_out=report.timed_out,
        )
    ]


def cancel(state: State, task_id: int, *, requested_by: str | None = None) -> list[ev.Event]:
    """Cancel a pending task at once; ask a running one's worker to kill it.

    Raises:
        NotFound: no such task.
        IllegalTransition: the task has already finished.
    """
    task = find_task(state, task_id)
    if task is None:
        raise IllegalTransition(f"task {task_id} has already finished")
    if task.state is TaskState.CANCELLING:
        return []
    asked = ev.TaskCancelRequested(task_id=task_id, requested_by=requested_by)
    if task.state is TaskState.PENDING:
        return [asked, ev.TaskCancelled(task_id=task_id, attempt=task.attempt)]
    return [asked]


def _requeue_or_fail(task: Task, *, reason: str) -> list[ev.Event]:
    if task.state is TaskState.CANCELLING:
        return [ev.TaskCancelled(task_id=task.id, attempt=task.attempt, worker_id=task.worker_id)]
    if task.attempt >= task.max_attempts:
        why = f"{reason}; all {task.max_attempts} attempts used"
        return [ev.TaskFailed(task_id=task.id, attempt=task.attempt, reason=why)]
    return [ev.TaskRequeued(task_id=task.id, next_attempt=task.attempt + 1, reason=reason)]


def expire(state: State, now: datetime, *, timeout_s: float) -> list[ev.Event]:
    """Workers not heard from within the timeout are lost; their tasks go back or fail."""
    deadline = now - timedelta(seconds=timeout_s)
    events: list[ev.Event] = []
    for worker in sorted(state.workers.values(), key=lambda w: worker_number(w.id)):
        if worker.last_seen >= deadline:
            continue
        for task_id in sorted(worker.running):
            task = state.tasks[task_id]
            events.append(
                ev.TaskLeaseExpired(task_id=task_id, worker_id=worker.id, attempt=task.attempt)
            )
            events.extend(_requeue_or_fail(task, reason="lease_expired"))
        events.append(ev.WorkerLost(worker_id=worker.id))
    return events


def change_tags(
    state: State,
    worker_id: str,
    *,
    add: frozenset[str] = frozenset(),
    remove: frozenset[str] = frozenset(),
    replace: frozenset[str] | None = None,
) -> list[ev.Event]:
    """A WorkerTagsChanged with the new set, or nothing when the set is unchanged."""
    worker = find_worker(state, worker_id)
    tags = (worker.tags if replace is None else replace) - remove | add
    if tags == worker.tags:
        return []
    if len(tags) > MAX_WORKER_TAGS:
        raise InvalidInput(
            f"worker {worker_id} would have {len(tags)} tags, at most {MAX_WORKER_TAGS} allowed"
        )
    return [ev.WorkerTagsChanged(worker_id=worker_id, tags=tags)]


def stop_worker(state: State, worker_id: str) -> list[ev.Event]:
    """A clean deregistration; tasks still running on the worker are requeued."""
    worker = find_worker(state, worker_id)
    events: list[ev.Event] = []
    for task_id in sorted(worker.running):
        events.extend(_requeue_or_fail(state.tasks[task_id], reason="worker_stopped"))
    events.append(ev.WorkerStopped(worker_id=worker_id))
    return events


def fail_unreadable(state: State, task_id: int, attempt: int, *, reason: str) -> list[ev.Event]:
    """A claimed task whose submission in the log does not verify ends as failed: its
    command is never handed to a worker. Nothing if that attempt has ended meanwhile."""
    task = state.tasks.get(task_id)
    if task is None or task.attempt != attempt or task.state is TaskState.PENDING:
        return []
    return [ev.TaskFailed(task_id=task_id, attempt=attempt, reason=reason)]
