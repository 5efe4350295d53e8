"""Where a pending task stands with a worker (for `why`, state/why.py): SPEC §1's order
between two tasks for a worker's tags, the rule that ranked a task taken first, how many
pending tasks rank ahead, what keeps a worker from taking it now. No I/O here; reads the
state and never changes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from kickoff.defaults import RESERVE_AFTER_PASSES
from kickoff.events import model as ev
from kickoff.resources import NONE, Resources, show
from kickoff.state.fold import BUSY, State, Worker
from kickoff.state.matcher import ID_BITS, ID_MASK, Shape, fits, task_key, want_score
from kickoff.state.task_state import TaskState

AHEAD_COUNTED = 1_000
"""`ahead` counts up to this many (this many means at least that many)."""


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
class Cap:
    """A group's --max-running cap and the tasks of it that hold the cap now."""

    group: str
    max_running: int
    running: tuple[int, ...]


def cap_of(state: State, task_id: int) -> Cap | None:
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


def hold_of(worker: Worker, cap: Cap | None, short: dict[str, int], kept: int | None) -> Hold:
    if len(worker.running) >= worker.slots:
        return Hold.BUSY
    if short:
        return Hold.RESOURCES
    if kept is not None:
        return Hold.KEPT
    return Hold.CAP if cap is not None else Hold.FREE


def kept_for(state: State, task_id: int, worker: Worker) -> int | None:
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
        if is_pending(state, heap[i] & ID_MASK):
            found = heap[i]
        else:
            stack += (2 * i + 1, 2 * i + 2)
    return found


def score_text(want: frozenset[str], tags: frozenset[str]) -> str:
    return f"{len(want & tags)}/{len(want)}" if want else "0"


def rule_between(
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
            score = f"{score_text(other.want, tags)} > {score_text(mine.want, tags)}"
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


def is_pending(state: State, task_id: int) -> bool:
    task = state.tasks.get(task_id)
    return task is not None and task.state is TaskState.PENDING
