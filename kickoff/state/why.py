"""`why`: a task's situation, explained from the state and the log (SPEC §11). No I/O here.

`needs` says which parts of the log an explanation reads: the task's own events first, then
the claims of the live workers that could run it since it was last queued, the submissions
of the tasks they took, and those workers' registrations and tag changes. The service
fetches them; `explain(state, task_id, log, now)` turns them into an Explanation. Nothing
is simulated: each task a worker took is a recorded claim, and the rule that ranked it
first is SPEC §1's (priority, want score, age) applied to what the log recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from fractions import Fraction

from kickoff.defaults import RESERVE_AFTER_PASSES
from kickoff.events import model as ev
from kickoff.resources import NONE, Resources, show, show_amount
from kickoff.state.fold import BUSY, State, Worker
from kickoff.state.matcher import ID_BITS, ID_MASK, Profile, Shape, fits, task_key, want_score
from kickoff.state.task_state import TaskState

Logged = tuple[int, datetime, ev.Event]
"""seq, time, event: one row of the log, decoded (store's `Recorded` is one)."""


def to_text(at: datetime) -> str:
    """A time as the log stores it (kickoff.clock's format; this layer imports no clock)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


TOOK_SHOWN = 10
"""The tasks a worker took that an explanation names (the latest; all are counted)."""
WORKERS_SHOWN = 20
"""The workers that could run a task an explanation names (the least busy; all are counted)."""
AHEAD_COUNTED = 1_000
"""`ahead` counts up to this many (this many means at least that many)."""
NEAREST_SHOWN = 3
"""The workers an explanation names when no live worker could run the task."""


class Rule(StrEnum):
    """Why a worker took another task while this one was pending."""

    PRIORITY = "priority"  # it had a higher priority
    WANT = "want"  # same priority, a higher want score for that worker's tags
    AGE = "age"  # same priority and want score, submitted earlier
    TAGS = "tags"  # the worker did not have this task's required tags then
    RESOURCES = "resources"  # what this task asks for was not free then (or kept for another)
    CAP = "cap"  # this task's group was at its --max-running cap


class Hold(StrEnum):
    """What keeps a worker that could run the task from running it now."""

    BUSY = "busy"  # every slot is taken
    RESOURCES = "resources"  # a slot is free, but not the amounts the task asks for
    KEPT = "kept"  # they are free, but kept for a task passed over too often (`kept_for`)
    CAP = "cap"  # a slot is free, but the task's group is at its cap
    FREE = "free"  # a slot is free: it takes the best task at its next claim


@dataclass(frozen=True, slots=True, kw_only=True)
class Took:
    """A task a worker took while this one was pending, and the rule that ranked it first."""

    task_id: int
    seq: int
    at: str
    rule: Rule
    detail: str  # "priority 5 > 0", "want 2/2 > 0/1", "older: 3 < 7", ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A live worker that could run the task (it has every required tag and, in total,
    the amounts it asks for)."""

    id: str
    name: str
    tags: tuple[str, ...]
    slots: int
    running: tuple[int, ...]
    resources: dict[str, int]  # declared
    resources_free: dict[str, int]  # declared minus what its running tasks hold
    short: dict[str, int]  # of what the task asks for, the amounts not free now: name -> free
    hold: Hold
    kept_for: int | None  # hold `kept`: the blocked task the worker keeps them for
    ahead: int  # pending tasks this worker would take before this one
    took: tuple[Took, ...]  # the latest TOOK_SHOWN, newest first
    took_total: int  # every task it took since this one was queued


@dataclass(frozen=True, slots=True, kw_only=True)
class Lacking:
    """A live worker that cannot run the task, and what it lacks."""

    id: str
    name: str
    lacks: tuple[str, ...]  # required tags it does not have
    has: dict[str, int]  # of the amounts the task asks for, those it has too few of in all


@dataclass(frozen=True, slots=True, kw_only=True)
class Dependency:
    """A task this one waits for (or waited for)."""

    task_id: int
    kind: str  # "after" (must succeed) or "after_any" (must end)
    state: str  # a live task's state; a finished one's outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class Cap:
    """A group's --max-running cap and the tasks of it that hold the cap now."""

    group: str
    max_running: int
    running: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One start of the task: where it ran and why it ended."""

    attempt: int
    worker_id: str
    worker_name: str
    started_at: str
    ended_at: str | None = None
    outcome: str = "running"  # succeeded, failed, timed_out, lost, stopped, cancelled, running
    exit_code: int | None = None
    detail: str = ""  # "exit code 3; retried after 2s", "its worker was lost", ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """Why a task is where it is (`kickoff why`, GET /v1/tasks/{id}/why)."""

    task_id: int
    state: str
    summary: str  # one line: what `kickoff info` shows
    queued: str | None = None  # how it last became pending: submitted, released, requeued
    queued_seq: int | None = None
    queued_at: str | None = None
    ahead: int | None = None  # the fewest tasks ranking ahead of it for one of the workers
    workers: tuple[Candidate, ...] = ()  # at most WORKERS_SHOWN of them
    workers_total: int = 0  # the live workers that could run it
    missing: tuple[str, ...] = ()  # required tags no live worker has
    missing_resources: dict[str, int] = field(default_factory=dict)
    """amounts no live worker has in all: name -> the most one has"""
    asks: dict[str, int] = field(default_factory=dict)  # the resources the task asks for
    passes: int = 0  # claims that went ahead of it while it did not fit (see matcher.py)
    nearest: tuple[Lacking, ...] = ()  # set when no live worker could run it
    waiting_for: tuple[Dependency, ...] = ()
    retry_at: str | None = None  # a delayed retry is due then
    cap: Cap | None = None
    attempts: tuple[Attempt, ...] = ()
    reason: str | None = None  # why a finished task ended as it did


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSlice:
    """The parts of the log `explain` reads (see `needs`)."""

    own: Sequence[Logged]  # every event of the task, by seq
    claims: Mapping[str, Sequence[Logged]] = field(default_factory=dict)
    """each candidate worker's TaskClaimed since the task was queued, newest first
    (at most TOOK_SHOWN)"""
    claim_counts: Mapping[str, int] = field(default_factory=dict)  # all of them, counted
    submissions: Mapping[int, ev.TaskSubmitted] = field(default_factory=dict)  # tasks taken
    workers: Sequence[Logged] = ()  # registrations and tag changes of the workers named


@dataclass(frozen=True, slots=True, kw_only=True)
class Needs:
    """What the service fetches after the task's own events: claims by these workers
    after `after_seq`, and the registrations and tag changes of `workers`."""

    after_seq: int | None  # None: no claims to read (the task is not pending)
    candidates: tuple[str, ...]
    workers: tuple[str, ...]


# -------------------------------------------------------------------------- reading


def submitted(own: Sequence[Logged]) -> ev.TaskSubmitted:
    """The task's submission among its events.

    Raises:
        ValueError: the events hold none (not a task's events).
    """
    for _, _, event in own:
        if isinstance(event, ev.TaskSubmitted):
            return event
    raise ValueError("the task's events hold no TaskSubmitted")


def queued(own: Sequence[Logged]) -> Logged | None:
    """The event that last made the task pending: its submission (without dependencies),
    its release, or a requeue."""
    found = None
    for logged in own:
        event = logged[2]
        if isinstance(event, ev.TaskReleased | ev.TaskRequeued) or (
            isinstance(event, ev.TaskSubmitted) and not (event.after or event.after_any)
        ):
            found = logged
    return found


def candidates(state: State, require: frozenset[str], request: Resources = NONE) -> list[Worker]:
    """The live workers that could run a task with these required tags and resource
    request (in their total amounts), by id."""
    return sorted(
        (w for w in state.workers.values() if require <= w.tags and _fits_totals(request, w)),
        key=lambda w: _number(w.id),
    )


def _fits_totals(request: Resources, worker: Worker) -> bool:
    return not request or fits(request, dict(worker.resources))


def shown(state: State, task_id: int) -> tuple[list[Worker], int]:
    """The candidates an explanation names, by id (at most WORKERS_SHOWN: those with the
    most of their slots free), and how many there are in all."""
    task = state.tasks[task_id]
    found = candidates(state, task.shape.require, task.shape.resources)
    if len(found) <= WORKERS_SHOWN:
        return found, len(found)
    least_busy = sorted(found, key=lambda w: (len(w.running) / w.slots, _number(w.id)))
    return sorted(least_busy[:WORKERS_SHOWN], key=lambda w: _number(w.id)), len(found)


def needs(state: State, task_id: int, own: Sequence[Logged]) -> Needs:
    """What to fetch besides the task's own events (see Needs)."""
    task = state.tasks.get(task_id)
    attempt_workers = [e.worker_id for _, _, e in own if isinstance(e, ev.TaskClaimed)]
    if task is None or task.state is not TaskState.PENDING:
        return Needs(after_seq=None, candidates=(), workers=tuple(dict.fromkeys(attempt_workers)))
    since = queued(own)
    found = tuple(w.id for w in shown(state, task_id)[0])
    return Needs(
        after_seq=None if since is None else since[0],
        candidates=found,
        workers=tuple(dict.fromkeys((*found, *attempt_workers))),
    )


def _number(worker_id: str) -> int:
    digits = worker_id[1:]
    return int(digits) if digits.isdigit() else 0


def _names(log: LogSlice, state: State) -> dict[str, str]:
    names = {e.worker_id: e.name for _, _, e in log.workers if isinstance(e, ev.WorkerRegistered)}
    names.update((w.id, w.name) for w in state.workers.values())
    return names


def _tags_at(log: LogSlice, worker_id: str, seq: int) -> frozenset[str]:
    """A worker's tags just before `seq` (its registration and tag changes)."""
    tags: frozenset[str] = frozenset()
    for at_seq, _, event in log.workers:
        if at_seq >= seq:
            break
        if isinstance(event, ev.WorkerRegistered | ev.WorkerTagsChanged) and (
            event.worker_id == worker_id
        ):
            tags = event.tags
    return tags


# ----------------------------------------------------------------------- explaining


def explain(state: State, task_id: int, log: LogSlice, now: datetime) -> Explanation:
    """The explanation of the task's situation: `state` now, `log` as `needs` asked.

    Raises:
        ValueError: `log.own` holds no submission of the task.
    """
    task = state.tasks.get(task_id)
    if task is None:
        return _finished(state, task_id, log)
    if task.state is TaskState.PENDING:
        return _pending(state, task_id, log)
    if task.state is TaskState.WAITING:
        return _waiting(state, task_id, log, now)
    attempts = _attempts(log, _names(log, state))
    current = attempts[-1] if attempts else None
    where = "" if current is None else f" on {_worker(current.worker_name, current.worker_id)}"
    doing = "being cancelled" if task.state is TaskState.CANCELLING else "running"
    count = f", attempt {task.attempt}" if task.attempt > 1 else ""
    summary = f"{doing}{where}{count}" + (
        f" since {current.started_at}" if current is not None else ""
    )
    return Explanation(task_id=task_id, state=str(task.state), summary=summary, attempts=attempts)


def _worker(name: str, worker_id: str) -> str:
    return worker_id if name in ("", worker_id) else f"{name} ({worker_id})"


# pending ---------------------------------------------------------------------------


def _pending(state: State, task_id: int, log: LogSlice) -> Explanation:
    task = state.tasks[task_id]
    request = task.shape.resources
    mine = submitted(log.own)
    since = queued(log.own)
    names = _names(log, state)
    cap = _cap(state, task_id)
    found = []
    counts: dict[Profile, int] = {}  # workers of one profile share a count
    named, total = shown(state, task_id)
    for worker in named:
        if worker.profile not in counts:
            counts[worker.profile] = ahead(state, task_id, worker.tags, worker.resources)
        claims = log.claims.get(worker.id, ())
        took = tuple(_took(state, mine, e, seq, at, log) for seq, at, e in claims)
        short = {n: worker.free.get(n, 0) for n, a in request if worker.free.get(n, 0) < a}
        kept = None if short else _kept_for(state, task_id, worker)
        found.append(
            Candidate(
                id=worker.id,
                name=worker.name,
                tags=tuple(sorted(worker.tags)),
                slots=worker.slots,
                running=tuple(sorted(worker.running)),
                resources=dict(worker.resources),
                resources_free=dict(sorted(worker.free.items())),
                short=short,
                hold=_hold(worker, cap, short, kept),
                kept_for=kept,
                ahead=counts[worker.profile],
                took=took,
                took_total=log.claim_counts.get(worker.id, len(took)),
            )
        )
    base = Explanation(
        task_id=task_id,
        state=str(task.state),
        summary="",
        queued=None if since is None else _queued_how(since[2]),
        queued_seq=None if since is None else since[0],
        queued_at=None if since is None else to_text(since[1]),
        cap=cap,
        attempts=_attempts(log, names),
        asks=dict(request),
        passes=state.passes.get(task_id, 0),
    )
    if not found:
        missing, most, nearest = _lacking(state, task.shape.require, request)
        summary = _nobody_summary(state, task.shape.require, request, missing, most, nearest)
        summary += _last_attempt(base.attempts)
        return replace(
            base, missing=missing, missing_resources=most, nearest=nearest, summary=summary
        )
    fewest = min(c.ahead for c in found)
    summary = _pending_summary(found, total, fewest, cap, request, base.passes)
    summary += _last_attempt(base.attempts)
    return replace(base, workers=tuple(found), workers_total=total, ahead=fewest, summary=summary)


def _last_attempt(attempts: tuple[Attempt, ...]) -> str:
    """`; attempt 1 on box2: its worker was lost ...` for a task queued again."""
    if not attempts:
        return ""
    last = attempts[-1]
    return f"; attempt {last.attempt} on {last.worker_name}: {last.detail}"


def _queued_how(event: ev.Event) -> str:
    if isinstance(event, ev.TaskReleased):
        return "released"
    if isinstance(event, ev.TaskRequeued):
        return "requeued"
    return "submitted"


def _cap(state: State, task_id: int) -> Cap | None:
    """The task's group's cap, if the group is at it now."""
    group = state.tasks[task_id].group
    if group is None or group.max_running is None or not group.at_cap:
        return None
    running = tuple(
        sorted(
            t
            for w in state.workers.values()
            for t in w.running
            if (on := state.tasks[t]).group is group and on.state in BUSY
        )
    )
    return Cap(group=group.label, max_running=group.max_running, running=running)


def _hold(worker: Worker, cap: Cap | None, short: dict[str, int], kept: int | None) -> Hold:
    if len(worker.running) >= worker.slots:
        return Hold.BUSY
    if short:
        return Hold.RESOURCES
    if kept is not None:
        return Hold.KEPT
    return Hold.CAP if cap is not None else Hold.FREE


def _kept_for(state: State, task_id: int, worker: Worker) -> int | None:
    """The blocked task this worker keeps the task's resources for (matcher.py, on
    reserving): the best-ranked task ahead of it that fits the worker's totals but not its
    free amounts, once passed over RESERVE_AFTER_PASSES times, asking for a resource this
    one asks for too. None: it keeps nothing from it."""
    task = state.tasks[task_id]
    if not task.shape.resources:
        return None  # a task asking for none still fills a free slot
    tags, totals = worker.tags, dict(worker.resources)
    mine = (
        task_key(task.priority, task_id) >> ID_BITS,
        -want_score(task.shape.want, tags),
        task_id,
    )
    best: tuple[tuple[int, Fraction, int], Shape] | None = None
    for shape in state.matcher.shapes.values():
        if shape.suspended or not shape.resources or not shape.require <= tags:
            continue
        if not fits(shape.resources, totals) or fits(shape.resources, worker.free):
            continue
        top = _best_pending(state, shape.heap)
        if top is None:
            continue
        rank = (top >> ID_BITS, -want_score(shape.want, tags), top & ID_MASK)
        if rank < mine and (best is None or rank < best[0]):
            best = rank, shape
    if best is None:
        return None
    blocked = best[0][2]
    if state.passes.get(blocked, 0) < RESERVE_AFTER_PASSES:
        return None
    return None if best[1].names.isdisjoint(task.shape.names) else blocked


def _best_pending(state: State, heap: list[int]) -> int | None:
    """The smallest key of a pending task in a heap: a live entry hides its subtree, so
    only the dead entries at the top are walked past."""
    found: int | None = None
    stack = [0]
    while stack:
        i = stack.pop()
        if i >= len(heap) or (found is not None and heap[i] >= found):
            continue
        if _is_pending(state, heap[i] & ID_MASK):
            found = heap[i]
        else:
            stack += (2 * i + 1, 2 * i + 2)
    return found


def _score(want: frozenset[str], tags: frozenset[str]) -> str:
    return f"{len(want & tags)}/{len(want)}" if want else "0"


def _took(
    state: State,
    mine: ev.TaskSubmitted,
    claimed: ev.Event,
    seq: int,
    at: datetime,
    log: LogSlice,
) -> Took:
    """The rule by which the claimed task ranked ahead of this one on that worker then."""
    assert isinstance(claimed, ev.TaskClaimed)
    other = log.submissions.get(claimed.task_id)
    tags = _tags_at(log, claimed.worker_id, seq)
    who = _worker(_names(log, state).get(claimed.worker_id, ""), claimed.worker_id)
    rule, detail = _rule(state, mine, other, tags, who, claimed.ahead_of)
    return Took(task_id=claimed.task_id, seq=seq, at=to_text(at), rule=rule, detail=detail)


def _rule(
    state: State,
    mine: ev.TaskSubmitted,
    other: ev.TaskSubmitted | None,
    tags: frozenset[str],
    who: str,
    ahead_of: int | None = None,
) -> tuple[Rule, str]:
    """SPEC §1's order between the task taken and this one, for the worker's tags then;
    `ahead_of`: the blocked task the claim recorded going ahead of (matcher.py)."""
    if not mine.require <= tags:
        lacked = " ".join(sorted(mine.require - tags))
        return Rule.TAGS, f"{who} did not have {lacked} then"
    if other is not None:
        theirs, ours = want_score(other.want, tags), want_score(mine.want, tags)
        if other.priority > mine.priority:
            return Rule.PRIORITY, f"priority {other.priority} > {mine.priority}"
        if other.priority == mine.priority and theirs > ours:
            score = f"{_score(other.want, tags)} > {_score(mine.want, tags)}"
            return Rule.WANT, f"want score {score}"
        if other.priority == mine.priority and theirs == ours and other.task_id < mine.task_id:
            older = f"{other.task_id} < {mine.task_id}"
            return Rule.AGE, f"older ({older}), same priority and want score"
    if mine.resources and ahead_of is not None:  # it ranked first, and was passed over:
        asked = show(mine.resources)  # not free then, or kept for a blocked task
        if ahead_of == mine.task_id:
            return Rule.RESOURCES, f"{asked} not free then; the claim went ahead of it"
        return Rule.RESOURCES, f"{asked} not free then, or kept for {ahead_of}"
    group = state.groups.get(mine.group_id) if mine.group_id is not None else None
    if group is not None and group.max_running is not None:
        return Rule.CAP, f"its group {group.label} was at its cap of {group.max_running}"
    return Rule.AGE, "ranked first by the matcher"  # a log without the other's submission


def ahead(
    state: State,
    task_id: int,
    tags: frozenset[str],
    totals: Resources = NONE,
    *,
    most: int = AHEAD_COUNTED,
) -> int:
    """How many pending tasks a worker with `tags` and `totals` (its declared amounts)
    would take before this one: the tasks it could ever run that rank first by SPEC §1's
    order (tasks of groups at their cap are left out, but for this task's own group),
    counted up to `most`.

    Costs in proportion to what it counts, never to the queue: in each shape's heap the
    keys that rank ahead are a subtree at the root (the rest is never visited).
    """
    task = state.tasks[task_id]
    mine = task_key(task.priority, task_id)
    level = mine >> ID_BITS  # smaller is a higher priority
    score = want_score(task.shape.want, tags)
    own_group = task.shape.group_id  # its capped group's tasks count, at the cap too
    counted: set[int] = set()  # a requeued task may have a second, older entry
    declared = dict(totals)
    for shape in state.matcher.shapes.values():
        if not shape.require <= tags or (shape.suspended and shape.group_id != own_group):
            continue
        if shape.resources and not fits(shape.resources, declared):
            continue
        theirs = want_score(shape.want, tags)
        if theirs > score:  # better want score: ahead at the same priority level too
            limit = (level + 1) << ID_BITS
        elif theirs == score:
            limit = mine
        else:
            limit = level << ID_BITS
        if _count_below(state, shape.heap, limit, counted, most):
            break
    return min(len(counted), most)


def _count_below(state: State, heap: list[int], limit: int, counted: set[int], most: int) -> bool:
    """Add the pending ids of the heap's keys below `limit` to `counted`; True once it
    holds `most`."""
    stack = [0]
    size, tasks, pending = len(heap), state.tasks, TaskState.PENDING
    while stack:
        i = stack.pop()
        if i >= size or heap[i] >= limit:
            continue
        task = tasks.get(heap[i] & ID_MASK)
        if task is not None and task.state is pending:
            counted.add(task.id)
            if len(counted) >= most:
                return True
        stack += (2 * i + 1, 2 * i + 2)
    return False


def _is_pending(state: State, task_id: int) -> bool:
    task = state.tasks.get(task_id)
    return task is not None and task.state is TaskState.PENDING


def _lacking(
    state: State, require: frozenset[str], request: Resources
) -> tuple[tuple[str, ...], dict[str, int], tuple[Lacking, ...]]:
    """The required tags no live worker has, the requested amounts no live worker has in
    all (name -> the most one has), and the nearest workers with what each lacks."""
    had: set[str] = set()
    most: dict[str, int] = dict.fromkeys((n for n, _ in request), 0)
    for worker in state.workers.values():
        had |= worker.tags & require
        declared = dict(worker.resources)
        for name in most:
            most[name] = max(most[name], declared.get(name, 0))
    missing = tuple(sorted(require - had))
    too_little = {n: most[n] for n, a in request if most[n] < a}

    def short(worker: Worker) -> dict[str, int]:
        declared = dict(worker.resources)
        return {n: declared.get(n, 0) for n, a in request if declared.get(n, 0) < a}

    asked = dict(request)

    def distance(worker: Worker) -> tuple[int, float, int]:
        """What it lacks: how many tags and amounts, then how little of those amounts."""
        few = short(worker)
        had = sum(total / asked[name] for name, total in few.items())
        return len(require - worker.tags) + len(few), -had, _number(worker.id)

    ranked = sorted(state.workers.values(), key=distance)
    nearest = tuple(
        Lacking(id=w.id, name=w.name, lacks=tuple(sorted(require - w.tags)), has=short(w))
        for w in ranked[:NEAREST_SHOWN]
    )
    return missing, too_little, nearest


def _nobody_summary(
    state: State,
    require: frozenset[str],
    request: Resources,
    missing: tuple[str, ...],
    most: dict[str, int],
    nearest: tuple[Lacking, ...],
) -> str:
    if not state.workers:
        return "pending: no worker is live"
    asked = dict(request)
    wanted = [*missing, *(f"{n}={show_amount(asked[n])}" for n in most)]
    if wanted:
        text = f"pending: no live worker has {' '.join(wanted)}"
    else:
        needs = [*sorted(require), *(show(request).split(",") if request else ())]
        text = f"pending: no live worker has all of {' '.join(needs)}"
    if nearest:
        near = nearest[0]
        text += f"; nearest: {_worker(near.name, near.id)} {_lacks(require, asked, near)}"
    return text


def _lacks(require: frozenset[str], asked: dict[str, int], near: Lacking) -> str:
    """`has gpu but not cuda12`, `has none of gpu`, `has gpu=1 of gpu=2`."""
    parts = []
    if near.lacks:
        has = sorted(require - set(near.lacks))
        lacks = " ".join(near.lacks)
        parts.append(f"has {' '.join(has)} but not {lacks}" if has else f"has none of {lacks}")
    for name, total in near.has.items():
        parts.append(f"has {name}={show_amount(total)} of {name}={show_amount(asked[name])}")
    return ", and ".join(parts)


def _pending_summary(
    found: list[Candidate],
    total: int,
    fewest: int,
    cap: Cap | None,
    request: Resources,
    passes: int,
) -> str:
    if cap is not None:
        running = " ".join(map(str, cap.running))
        return f"pending: group {cap.group} is at its cap of {cap.max_running} (running: {running})"
    if fewest == 0:
        rank = "no task ranks ahead"
    elif fewest >= AHEAD_COUNTED:
        rank = f"{AHEAD_COUNTED:,} or more tasks rank ahead"
    else:
        rank = f"{fewest} task{'' if fewest == 1 else 's'} rank{'s' if fewest == 1 else ''} ahead"
    best = min(found, key=lambda c: (c.ahead, c.hold is Hold.BUSY))
    who = _worker(best.name, best.id)
    asked = dict(request)
    if best.hold is Hold.BUSY:
        doing = f"{who} is busy with {' '.join(map(str, best.running))}"
    elif best.hold is Hold.KEPT:
        names = " ".join(n for n, _ in request)
        doing = f"{who} keeps its {names} for {best.kept_for}, passed over too often"
    elif best.hold is Hold.RESOURCES:
        doing = f"{who} lacks " + " ".join(
            f"{n}={show_amount(asked[n])} ({show_amount(free)} free)"
            for n, free in best.short.items()
        )
    else:
        doing = f"{who} has a free slot"
    if best.took:
        last = best.took[0]
        if last.task_id in best.running and best.hold is Hold.BUSY:
            doing += f", taken first ({last.detail})"
        else:
            doing += f"; it took {last.task_id} first ({last.detail})"
        if best.took_total > 1:
            doing += f"; {best.took_total} taken since it was queued"
    more = "" if total == 1 else f" ({total:,} workers could run it)"
    kept = ""
    if passes >= RESERVE_AFTER_PASSES:
        names = " ".join(n for n, _ in request)
        kept = f"; passed over {passes} times, so the workers it fits keep {names} for it"
    elif passes:
        kept = f"; passed over {passes} time{'' if passes == 1 else 's'}"
    return f"pending: {rank}; {doing}{more}{kept}"


# waiting -----------------------------------------------------------------------------


def _waiting(state: State, task_id: int, log: LogSlice, now: datetime) -> Explanation:
    mine = submitted(log.own)
    attempts = _attempts(log, _names(log, state))
    due = state.retry_due.get(task_id)
    if due is not None:
        policy, used = state.retries_of(task_id)
        total = policy.total if policy is not None else used
        when = to_text(due)
        late = " (due now)" if due <= now else ""
        last = attempts[-1].detail if attempts else ""
        summary = f"waiting: retry {used} of {total} is due at {when}{late}" + (
            f" (attempt {attempts[-1].attempt}: {last})" if attempts and last else ""
        )
        return Explanation(
            task_id=task_id, state="waiting", summary=summary, retry_at=when, attempts=attempts
        )
    deps = tuple(
        Dependency(task_id=d, kind=kind, state=_outcome(state, d))
        for kind, ids in (("after", mine.after), ("after_any", mine.after_any))
        for d in ids
    )
    still = [d for d in deps if d.task_id in state.tasks]
    listed = ", ".join(f"{d.task_id} ({d.state})" for d in still)
    summary = f"waiting for {listed}" if still else "waiting: its dependencies have ended"
    return Explanation(
        task_id=task_id, state="waiting", summary=summary, waiting_for=deps, attempts=attempts
    )


def _outcome(state: State, task_id: int) -> str:
    live = state.tasks.get(task_id)
    if live is not None:
        return str(live.state)
    if task_id in state.failed_ids:
        return "failed"
    if task_id in state.cancelled_ids:
        return "cancelled"
    return "succeeded"


# attempts and finished tasks ---------------------------------------------------------


class _Open:
    """An attempt being read from the log."""

    __slots__ = ("attempt", "detail", "ended_at", "exit_code", "outcome", "started", "worker")

    def __init__(self, attempt: int, worker: str, started: str) -> None:
        self.attempt = attempt
        self.worker = worker
        self.started = started
        self.ended_at: str | None = None
        self.outcome = "running"
        self.exit_code: int | None = None
        self.detail = ""

    def end(self, at: str, outcome: str, detail: str, exit_code: int | None = None) -> None:
        self.ended_at, self.outcome, self.detail, self.exit_code = at, outcome, detail, exit_code


def _attempts(log: LogSlice, names: dict[str, str]) -> tuple[Attempt, ...]:
    """Each start of the task from its events: where it ran and why it ended."""
    found: list[_Open] = []
    for _, at, event in log.own:
        current = found[-1] if found and found[-1].outcome == "running" else None
        _attempt_step(found, current, to_text(at), event)
    return tuple(
        Attempt(
            attempt=a.attempt,
            worker_id=a.worker,
            worker_name=names.get(a.worker, a.worker),
            started_at=a.started,
            ended_at=a.ended_at,
            outcome=a.outcome,
            exit_code=a.exit_code,
            detail=a.detail,
        )
        for a in found
    )


def _attempt_step(found: list[_Open], current: _Open | None, at: str, event: ev.Event) -> None:
    match event:
        case ev.TaskClaimed():
            found.append(_Open(event.attempt, event.worker_id, at))
        case ev.TaskCompleted() if current is not None:
            _completed(current, at, event)
        case ev.TaskLeaseExpired() if current is not None:
            current.end(at, "lost", "its worker was lost (no heartbeat in time)")
        case ev.TaskRequeued() if current is not None:
            stopped = event.reason == "worker_stopped"
            current.end(
                at,
                "stopped" if stopped else "lost",
                "its worker stopped" if stopped else event.reason,
            )
        case ev.TaskRequeued() if found and found[-1].outcome in ("failed", "timed_out"):
            found[-1].detail += f"; {event.reason}"
        case ev.TaskCancelled() if current is not None:
            current.end(
                at, "cancelled", "cancelled" + (f": {event.reason}" if event.reason else "")
            )
        case ev.TaskFailed() if current is not None:
            current.end(at, "failed", event.reason)
        case ev.TaskFailed() if found and found[-1].outcome == "lost":
            found[-1].detail += f"; {event.reason}"
        case _:
            pass


def _completed(current: _Open, at: str, event: ev.TaskCompleted) -> None:
    if event.timed_out:
        outcome, detail = "timed_out", f"timed out after {event.duration_s:.3g}s"
    elif event.exit_code == 0:
        outcome, detail = "succeeded", "exit code 0"
    else:
        outcome, detail = "failed", f"exit code {event.exit_code}"
    if event.retry_in_s:
        detail += f"; retried after {event.retry_in_s:g}s"
    current.end(at, outcome, detail, event.exit_code)


def _finished(state: State, task_id: int, log: LogSlice) -> Explanation:
    names = _names(log, state)
    attempts = _attempts(log, names)
    last = log.own[-1][2] if log.own else None
    ended = _outcome(state, task_id)
    reason = _end_reason(last)
    if not attempts:
        summary = f"{ended} before it ran" + (f": {reason}" if reason else "")
    else:
        final = attempts[-1]
        where = _worker(final.worker_name, final.worker_id)
        summary = f"{ended} on {where}, attempt {final.attempt} ({final.detail})"
        earlier = [f"attempt {a.attempt} on {a.worker_name}: {a.detail}" for a in attempts[:-1]]
        summary += "".join(f"; {e}" for e in earlier[-2:])
    return Explanation(
        task_id=task_id, state=ended, summary=summary, attempts=attempts, reason=reason
    )


def _end_reason(event: ev.Event | None) -> str | None:
    match event:
        case ev.TaskCancelled():
            return event.reason or "cancelled"
        case ev.TaskFailed():
            return event.reason
        case ev.TaskCompleted():
            return "timed out" if event.timed_out else f"exit code {event.exit_code}"
    return None
