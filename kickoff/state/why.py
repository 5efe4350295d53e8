"""`why`: a task's situation, explained from the state and the log (SPEC §11). No I/O here.

`needs` says which parts of the log an explanation reads: the task's own events first, then
the claims of the live workers that could run it since it was last queued, the submissions
of the tasks they took, and those workers' registrations and tag changes. The service
fetches them; `explain(state, task_id, log, now)` turns them into an Explanation. Nothing
is simulated: each task a worker took is a recorded claim, and the rule that ranked it
first is SPEC §1's (priority, want score, age) applied to what the log recorded.

Here: what an explanation holds and how it is put together; state/standing.py ranks a
pending task against the others and a worker, state/attempts.py reads its attempts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from kickoff.defaults import RESERVE_AFTER_PASSES
from kickoff.events import model as ev
from kickoff.resources import NONE, Resources, show, show_amount
from kickoff.state.attempts import Attempt, Logged, attempts_of, end_reason, to_text, worker_label
from kickoff.state.fold import State, Worker
from kickoff.state.matcher import Profile, fits
from kickoff.state.standing import (
    AHEAD_COUNTED,
    Cap,
    Hold,
    Rule,
    Took,
    ahead,
    cap_of,
    hold_of,
    kept_for,
    rule_between,
)
from kickoff.state.task_state import TaskState

TOOK_SHOWN = 10
"""The tasks a worker took that an explanation names (the latest; all are counted)."""


WORKERS_SHOWN = 20
"""The workers that could run a task an explanation names (the least busy; all are counted)."""


NEAREST_SHOWN = 3
"""The workers an explanation names when no live worker could run the task."""


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
    attempts = attempts_of(log.own, _names(log, state))
    current = attempts[-1] if attempts else None
    where = "" if current is None else f" on {worker_label(current.worker_name, current.worker_id)}"
    doing = "being cancelled" if task.state is TaskState.CANCELLING else "running"
    count = f", attempt {task.attempt}" if task.attempt > 1 else ""
    summary = f"{doing}{where}{count}" + (
        f" since {current.started_at}" if current is not None else ""
    )
    return Explanation(task_id=task_id, state=str(task.state), summary=summary, attempts=attempts)


# pending ---------------------------------------------------------------------------


def _pending(state: State, task_id: int, log: LogSlice) -> Explanation:
    task = state.tasks[task_id]
    request = task.shape.resources
    mine = submitted(log.own)
    since = queued(log.own)
    names = _names(log, state)
    cap = cap_of(state, task_id)
    found = []
    counts: dict[Profile, int] = {}  # workers of one profile share a count
    named, total = shown(state, task_id)
    for worker in named:
        if worker.profile not in counts:
            counts[worker.profile] = ahead(state, task_id, worker.tags, worker.resources)
        claims = log.claims.get(worker.id, ())
        took = tuple(_took(state, mine, e, seq, at, log) for seq, at, e in claims)
        short = {n: worker.free.get(n, 0) for n, a in request if worker.free.get(n, 0) < a}
        kept = None if short else kept_for(state, task_id, worker)
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
                hold=hold_of(worker, cap, short, kept),
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
        attempts=attempts_of(log.own, names),
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
    who = worker_label(_names(log, state).get(claimed.worker_id, ""), claimed.worker_id)
    rule, detail = rule_between(state, mine, other, tags, who, claimed.ahead_of)
    return Took(task_id=claimed.task_id, seq=seq, at=to_text(at), rule=rule, detail=detail)


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
        text += f"; nearest: {worker_label(near.name, near.id)} {_lacks(require, asked, near)}"
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
    who = worker_label(best.name, best.id)
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
    attempts = attempts_of(log.own, _names(log, state))
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


# finished tasks ---------------------------------------------------------------------


def _finished(state: State, task_id: int, log: LogSlice) -> Explanation:
    names = _names(log, state)
    attempts = attempts_of(log.own, names)
    last = log.own[-1][2] if log.own else None
    ended = _outcome(state, task_id)
    reason = end_reason(last)
    if not attempts:
        summary = f"{ended} before it ran" + (f": {reason}" if reason else "")
    else:
        final = attempts[-1]
        where = worker_label(final.worker_name, final.worker_id)
        summary = f"{ended} on {where}, attempt {final.attempt} ({final.detail})"
        earlier = [f"attempt {a.attempt} on {a.worker_name}: {a.detail}" for a in attempts[:-1]]
        summary += "".join(f"; {e}" for e in earlier[-2:])
    return Explanation(
        task_id=task_id, state=ended, summary=summary, attempts=attempts, reason=reason
    )


__all__ = [
    "AHEAD_COUNTED",
    "Attempt",
    "Cap",
    "Hold",
    "Logged",
    "Rule",
    "Took",
    "ahead",
]
