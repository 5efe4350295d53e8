"""The rules: `(state, request, now) -> events`. Pure: never changes the state.

The service (service/recording.py) applies what these return to the state at once (so
that the next request sees it), queues it for one group commit and answers only after
that commit; a failed write reloads the state from the log. So a request writes all of
its events or none, and memory never keeps what the disk does not. Each raises a
KickoffError when the request is not allowed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from kickoff import __version__
from kickoff.defaults import IDLE_MARK_S, MAX_ATTEMPTS, MAX_WORKER_TAGS
from kickoff.errors import Conflict, IllegalTransition, InvalidInput, NotFound, StaleAttempt
from kickoff.events import model as ev
from kickoff.resources import GPU, NONE, Resources
from kickoff.state.fold import (
    BUSY,
    State,
    Task,
    Worker,
    request_hash,
    worker_number,
    workflow_fields,
)
from kickoff.state.task_state import TaskState
from kickoff.state.workflows import AUTO_GROUP


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
    after: tuple[int, ...] = ()
    after_any: tuple[int, ...] = ()
    array_index: int | None = None
    retries: int = 0
    retry_delay_s: float = 0.0
    retry_on: tuple[int | str, ...] | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    resources: Resources = NONE


new_task = ev.fast_constructor(NewTask)
"""NewTask(command, require, want, priority, max_attempts, timeout_s, idempotency_key,
after, after_any, array_index, retries, retry_delay_s, retry_on, cwd, env, resources) for
the parser,
which makes one per task of a bulk submit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupRequest:
    """The group a submit's tasks join: a name (new or known; `g<id>` names a known
    group by id), or None for a new group the server names; its cap when new."""

    name: str | None = None
    max_running: int | None = None


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
    scratch_dir: str | None = None  # where it ran instead of its missing directory


def server_started(heartbeat_timeout_s: float) -> list[ev.Event]:
    return [ev.ServerStarted(version=__version__, heartbeat_timeout_s=heartbeat_timeout_s)]


def submit(
    state: State,
    tasks: list[NewTask],
    *,
    submitted_by: str | None = None,
    group: GroupRequest | None = None,
) -> tuple[list[ev.Event], list[int]]:
    """Events for new tasks and the id of every requested task, in order.

    A task whose idempotency key is already known gets the existing id and no event when
    it repeats that task's request exactly (a retry). A task with dependencies waits;
    when they have all ended already it is released (or cancelled) at once. `group`:
    the group the new tasks join (a new one is created with the first new task).

    Raises:
        Conflict: a known idempotency key with a different command, tags or options; a
            known group with another --max-running.
        NotFound: a dependency or a group `g<id>` that does not exist.
    """
    events: list[ev.Event] = []
    ids: list[int] = []
    add_event, add_id, make = events.append, ids.append, ev.task_submitted
    first_id = next_id = state.next_task_id
    batch_keys: dict[str, tuple[int, int]] = {}
    group_id, created = (None, None) if group is None else _group(state, group)
    doomed: set[int] = set()  # tasks of this batch cancelled at once
    for new in tasks:
        key = new.idempotency_key
        if key is not None:
            request = _request_hash(new)
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
        if created is not None:
            add_event(created)  # with the first new task
            created = None
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
                new.after,
                new.after_any,
                group_id,
                new.array_index,
                new.retries,
                new.retry_delay_s,
                new.retry_on,
                new.cwd,
                new.env,
                new.resources,
            )
        )
        if new.after or new.after_any:
            settled = _settled_at_submit(state, new, next_id, first_id, doomed)
            if settled is not None:
                add_event(settled)
        add_id(next_id)
        next_id += 1
    return events, ids


def _request_hash(new: NewTask) -> int:
    workflow = workflow_fields(
        new.after, new.after_any, new.array_index, new.retries, new.retry_delay_s, new.retry_on
    )
    return request_hash(
        new.command,
        new.require,
        new.want,
        new.priority,
        new.max_attempts,
        new.timeout_s,
        *workflow,
        resources=new.resources,
    )


def _group(state: State, request: GroupRequest) -> tuple[int, ev.GroupCreated | None]:
    """The id of the group the request names, and its GroupCreated if it is new.

    Raises:
        NotFound: `g<id>` names no group.
        Conflict: a known group with another --max-running.
    """
    name = request.name
    alias = AUTO_GROUP.fullmatch(name) if name is not None else None
    group_id = int(alias[1]) if alias else state.group_names.get(name) if name else None
    if group_id is None:
        new_id = state.next_group_id
        return new_id, ev.GroupCreated(group_id=new_id, name=name, max_running=request.max_running)
    known = state.groups.get(group_id)
    if known is None:
        raise NotFound(f"no group {name}: g1, g2, ... are the names of unnamed groups")
    if request.max_running is not None and request.max_running != known.max_running:
        cap = (
            "no --max-running"
            if known.max_running is None
            else (f"--max-running {known.max_running}")
        )
        raise Conflict(f"group {known.label} has {cap}; a submit to it cannot change that")
    return group_id, None


def _settled_at_submit(
    state: State, new: NewTask, task_id: int, first_id: int, doomed: set[int]
) -> ev.Event | None:
    """A TaskReleased (or TaskCancelled) for a task whose dependencies have all ended by
    the time it is submitted; None while one of them is still live.

    Dependencies are earlier tasks: live ones (this batch's too), or finished ones, whose
    outcome State keeps as a bit. Raises: NotFound for any other id.
    """
    live = False
    for field, ids in (("after", new.after), ("after_any", new.after_any)):
        for dependency in ids:
            outcome: str | None
            if not 0 < dependency < task_id:
                raise NotFound(f"{field}: no task {dependency} (nothing was submitted)")
            if dependency in doomed:
                outcome = "was cancelled"
            elif dependency >= first_id or dependency in state.tasks:
                live = True
                continue
            else:
                outcome = _ended(state, dependency)
            if field == "after" and outcome is not None:
                doomed.add(task_id)
                return ev.TaskCancelled(
                    task_id=task_id, attempt=0, reason=f"dependency {dependency} {outcome}"
                )
    return None if live else ev.TaskReleased(task_id=task_id)


def _ended(state: State, task_id: int) -> str | None:
    """How a finished task did not succeed ("failed", "was cancelled"); None: it did."""
    if task_id in state.failed_ids:
        return "failed"
    if task_id in state.cancelled_ids:
        return "was cancelled"
    return None


def _endings(events: list[ev.Event]) -> Iterator[tuple[int, str | None]]:
    """(task id, None if it succeeded, else "failed" or "was cancelled") for each event
    that ends a task."""
    for event in events:
        match event:
            case ev.TaskCompleted(retry_in_s=None):
                ok = event.exit_code == 0 and not event.timed_out
                yield event.task_id, None if ok else "failed"
            case ev.TaskFailed():
                yield event.task_id, "failed"
            case ev.TaskCancelled():
                yield event.task_id, "was cancelled"


def with_dependents(state: State, events: list[ev.Event]) -> list[ev.Event]:
    """`events`, then what they mean for the tasks waiting on those they end: each is
    released when its last dependency ends, or cancelled (its reason naming the
    dependency) when one of its `after` ones fails or is cancelled, down the chain.

    Costs in proportion to the dependents of the ended tasks, never to the queue.
    """
    if not state.dependents:
        return events
    ended = deque(_endings(events))
    decided = {task_id for task_id, _ in ended}  # each task ends once
    out = list(events)
    left: dict[int, int] = {}
    while ended:
        task_id, failure = ended.popleft()
        for dependent in state.dependents.get(task_id, ()):
            waiting = state.waiting.get(dependent)
            if waiting is None or dependent in decided:
                continue  # cancelled already (the index drops its entries lazily)
            left[dependent] = remaining = left.get(dependent, waiting.left) - 1
            if failure is not None and task_id in waiting.after:
                decided.add(dependent)
                reason = f"dependency {task_id} {failure}"
                out.append(ev.TaskCancelled(task_id=dependent, attempt=0, reason=reason))
                ended.append((dependent, "was cancelled"))
            elif remaining == 0:
                decided.add(dependent)
                out.append(ev.TaskReleased(task_id=dependent))
    return out


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
    state: State,
    *,
    name: str,
    tags: frozenset[str],
    slots: int,
    host: str | None = None,
    resources: Resources = NONE,
    gpu_ids: tuple[int, ...] = (),
) -> list[ev.Event]:
    """A WorkerRegistered; `gpu_ids` (as many as its `gpu` amount, checked by the parser)
    defaults to devices 0..gpu-1."""
    worker_id = f"w{state.next_worker_no}"
    gpus = dict(resources).get(GPU, 0)
    if gpus and not gpu_ids:
        gpu_ids = tuple(range(gpus))
    return [
        ev.WorkerRegistered(
            worker_id=worker_id,
            name=name,
            tags=tags,
            slots=slots,
            host=host,
            resources=resources,
            gpu_ids=gpu_ids,
        )
    ]


def claim(state: State, worker_id: str) -> list[ev.Event]:
    """One TaskClaimed for the best task this worker may run with its free amounts (see
    matcher.Matcher.pick), holding what it asks for, or nothing.

    Raises:
        NotFound, IllegalTransition: see find_worker.
    """
    worker = find_worker(state, worker_id)
    if len(worker.running) >= worker.slots:
        return []
    task_id, ahead_of = state.matcher.pick(worker.profile, worker.free, state.passes)
    if task_id is None:
        return []
    task = state.tasks[task_id]
    request = task.shape.resources
    if not request:
        return [ev.task_claimed(task_id, worker_id, task.attempt + 1, NONE, (), ahead_of)]
    gpus = dict(request).get(GPU, 0)
    gpu_ids = tuple(worker.free_gpu_ids()[:gpus]) if gpus else ()
    return [ev.task_claimed(task_id, worker_id, task.attempt + 1, request, gpu_ids, ahead_of)]


def heartbeat(
    state: State, worker_id: str, running: list[tuple[int, int]], *, now: datetime
) -> tuple[list[ev.Event], list[int]]:
    """The heartbeat event (if any) and the task ids the worker must stop running.

    A task is to be stopped when it is being cancelled, or when the worker's attempt is no
    longer the task's current attempt on this worker (its lease expired, it finished).

    An idle worker's heartbeat (nothing running, by either side's account) changes no
    task, so it is an event only when the log last saw the worker IDLE_MARK_S ago or more:
    an idle cluster's log grows by about one event per worker a minute, not one per beat.
    Between those marks the server keeps when it heard from the worker in memory
    (service/upkeep.py), and `expire` decides with it; its decision is an event.
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
    if not pairs and not worker.running and now - worker.last_seen < _IDLE_MARK:
        return [], sorted(set(stop))
    return [ev.WorkerHeartbeat(worker_id=worker_id, running=pairs)], sorted(set(stop))


_IDLE_MARK = timedelta(seconds=IDLE_MARK_S)


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
    """The end of the current attempt: completed, or cancelled if it was killed for a cancel;
    a failure with retries left schedules the next attempt (at once, or after its delay:
    see retries_due). Tasks waiting on one that ends follow (with_dependents).

    Raises:
        StaleAttempt: the report is not from the task's current attempt and worker.
        NotFound: no such task.
    """
    task = _current_attempt(state, report)
    if report.cancelled and task.state is TaskState.CANCELLING:
        cancelled = ev.TaskCancelled(
            task_id=task.id,
            attempt=report.attempt,
            worker_id=report.worker_id,
            output_tail=report.output_tail,
            scratch_dir=report.scratch_dir,
        )
        return with_dependents(state, [cancelled])
    if report.cancelled:  # killed without a cancel request: the worker gave it up
        return with_dependents(state, _requeue_or_fail(state, task, reason="worker_stopped"))
    retry_in_s = _retry_in_s(state, task, report)
    completed = ev.TaskCompleted(
        task_id=task.id,
        worker_id=report.worker_id,
        attempt=report.attempt,
        exit_code=report.exit_code,
        duration_s=report.duration_s,
        output_tail=report.output_tail,
        timed_out=report.timed_out,
        retry_in_s=retry_in_s,
        scratch_dir=report.scratch_dir,
    )
    if retry_in_s is None:
        return with_dependents(state, [completed])
    if retry_in_s > 0:
        return [completed]
    return [completed, _retry(state, task, after=completed)]


def _retry_in_s(state: State, task: Task, report: Completion) -> float | None:
    """The wait before the next attempt if this failure is to be retried, else None."""
    policy, used = state.retries_of(task.id)
    failed = report.exit_code != 0 or report.timed_out
    if policy is None or not failed or task.state is not TaskState.RUNNING:
        return None
    if not policy.applies(used, report.exit_code, report.timed_out):
        return None
    return policy.delay_after(used)


def _retry(state: State, task: Task, *, after: ev.TaskCompleted | None = None) -> ev.Event:
    """The TaskRequeued that starts a retry; `after`: the completion that scheduled it,
    not applied yet (so the retry it uses is not counted yet)."""
    policy, used = state.retries_of(task.id)
    assert policy is not None
    number = used + (1 if after is not None else 0)
    return ev.TaskRequeued(
        task_id=task.id,
        next_attempt=task.attempt + 1,
        reason=f"retry {number} of {policy.total}",
    )


def retries_due(state: State, now: datetime) -> list[ev.Event]:
    """A TaskRequeued for each delayed retry due by `now` (the service's timer asks; the
    decision is recorded, so replay never reads the clock)."""
    heap, scheduled = state.retry_heap, state.retry_due
    due: list[tuple[datetime, int]] = []
    stack = [0]
    while stack:  # the entries due by now are a subtree at the heap's root
        i = stack.pop()
        if i >= len(heap) or heap[i][0] > now:
            continue
        at, task_id = heap[i]
        if scheduled.get(task_id) == at:
            due.append(heap[i])
        stack.extend((2 * i + 1, 2 * i + 2))
    return [_retry(state, state.tasks[task_id]) for _, task_id in sorted(due)]


def cancel(state: State, task_id: int, *, requested_by: str | None = None) -> list[ev.Event]:
    """Cancel a pending or waiting task at once; ask a running one's worker to kill it.
    Tasks waiting on one that ends follow (with_dependents).

    Raises:
        NotFound: no such task.
        IllegalTransition: the task has already finished.
    """
    task = find_task(state, task_id)
    if task is None:
        raise IllegalTransition(f"task {task_id} has already finished")
    return with_dependents(state, _cancel(task, requested_by))


def _cancel(task: Task, requested_by: str | None) -> list[ev.Event]:
    if task.state is TaskState.CANCELLING:
        return []
    asked = ev.TaskCancelRequested(task_id=task.id, requested_by=requested_by)
    if task.state is TaskState.PENDING or task.state is TaskState.WAITING:
        return [asked, ev.TaskCancelled(task_id=task.id, attempt=task.attempt)]
    return [asked]


def cancel_group(state: State, group_id: int, *, requested_by: str | None = None) -> list[ev.Event]:
    """Cancel every live task of a group (see cancel), and what follows for the tasks
    waiting on them."""
    events: list[ev.Event] = []
    for task in state.group_tasks(group_id):
        events.extend(_cancel(task, requested_by))
    return with_dependents(state, events)


def find_group(state: State, name: str) -> int:
    """The id of the group with this name (or `g<id>`).

    Raises:
        NotFound: no such group.
    """
    alias = AUTO_GROUP.fullmatch(name)
    group_id = int(alias[1]) if alias else state.group_names.get(name)
    if group_id is None or group_id not in state.groups:
        raise NotFound(f"no group {name[:80]!r}")
    return group_id


def _requeue_or_fail(state: State, task: Task, *, reason: str) -> list[ev.Event]:
    if task.state is TaskState.CANCELLING:
        return [ev.TaskCancelled(task_id=task.id, attempt=task.attempt, worker_id=task.worker_id)]
    starts = task.attempt - state.retries_of(task.id)[1]  # retries count apart
    if starts >= task.max_attempts:
        why = f"{reason}; all {task.max_attempts} attempts used"
        return [ev.TaskFailed(task_id=task.id, attempt=task.attempt, reason=why)]
    return [ev.TaskRequeued(task_id=task.id, next_attempt=task.attempt + 1, reason=reason)]


def expire(
    state: State,
    now: datetime,
    *,
    timeout_s: float,
    heard: Mapping[str, datetime] | None = None,
) -> list[ev.Event]:
    """Workers not heard from within the timeout are lost; their tasks go back or fail.

    A worker was heard from at its last event, or later at `heard` (when the server last
    had a request from it that was not recorded: an idle heartbeat).
    """
    deadline = now - timedelta(seconds=timeout_s)
    heard = heard or {}
    events: list[ev.Event] = []
    for worker in sorted(state.workers.values(), key=lambda w: worker_number(w.id)):
        if max(worker.last_seen, heard.get(worker.id, worker.last_seen)) >= deadline:
            continue
        for task_id in sorted(worker.running):
            task = state.tasks[task_id]
            events.append(
                ev.TaskLeaseExpired(task_id=task_id, worker_id=worker.id, attempt=task.attempt)
            )
            events.extend(_requeue_or_fail(state, task, reason="lease_expired"))
        events.append(ev.WorkerLost(worker_id=worker.id))
    return with_dependents(state, events)


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
        events.extend(_requeue_or_fail(state, state.tasks[task_id], reason="worker_stopped"))
    events.append(ev.WorkerStopped(worker_id=worker_id))
    return with_dependents(state, events)


def fail_unreadable(state: State, task_id: int, attempt: int, *, reason: str) -> list[ev.Event]:
    """A claimed task whose submission in the log does not verify ends as failed: its
    command is never handed to a worker. Nothing if that attempt has ended meanwhile."""
    task = state.tasks.get(task_id)
    if task is None or task.attempt != attempt or task.state not in BUSY:
        return []
    return with_dependents(state, [ev.TaskFailed(task_id=task_id, attempt=attempt, reason=reason)])
