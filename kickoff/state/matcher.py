"""The tag-shape matcher: which pending task a worker with given tags gets next. No I/O here.

Pending tasks are grouped by shape, their (require, want, resource request) triple. Each
shape keeps a heap of integer keys, better first: priority descending, then task id (age)
ascending. For each distinct worker *profile* (its tags and total resource amounts) the
matcher keeps a *view*: the shapes whose require is a subset of the tags and whose request
fits the totals, each with the want-score rank it has for those tags, in a heap of
composite keys (priority, want score, id). A claim looks at the top of that heap, repairs
entries made stale by earlier claims, and never touches the other pending tasks: its cost
depends on the number of shapes, not tasks.

Heap entries are deleted lazily: an entry is live while its task is pending.

Resources: a claim walks the view in order past the shapes whose request does not fit the
worker's *free* amounts now (setting them aside and putting them back after), so it gets
the best task that fits; at most every shape is passed, never a task. The best-ranked task
it passes is *blocked*: the claim records that it went `ahead_of` it, and the fold counts
that. Once a blocked task has been gone ahead of RESERVE_AFTER_PASSES times, a worker that
meets it as its blocked task *reserves* for it: it takes no task that asks for any of the
resources the blocked task asks for (tasks asking for none still fill free slots), so the
amounts it waits for only grow until it fits. A large task behind a stream of small ones
therefore waits for at most that many of them, plus the ones already running.

A group with `--max-running` has shapes of its own (`group_id` set). While the group is at
its cap they are *suspended*: a view drops such a shape's entry when it reaches the top,
and `resume` offers the shape's top again once a task of the group ends. So the cap costs
a claim nothing, and waiting tasks (never pushed until released) cost it nothing either.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from functools import cache

from kickoff.defaults import MAX_PRIORITY, MAX_TASK_TAGS, RESERVE_AFTER_PASSES, TASK_ID_BITS
from kickoff.resources import NONE, Resources

ID_BITS = TASK_ID_BITS
ID_MASK = (1 << ID_BITS) - 1
RANK_BITS = 10

Profile = tuple[frozenset[str], Resources]
"""What a worker may ever run: its tags, and its total amounts (zero amounts left out)."""
ShapeKey = tuple[frozenset[str], frozenset[str], int | None, Resources]
_NO_NAMES: frozenset[str] = frozenset()


@cache
def _score_ranks() -> dict[Fraction, int]:
    """Every possible want score (a/b, b <= 32) mapped to its rank, 0 the best."""
    scores = {Fraction(a, b) for b in range(1, MAX_TASK_TAGS + 1) for a in range(b + 1)}
    return {s: rank for rank, s in enumerate(sorted(scores, reverse=True))}


def want_score(want: frozenset[str], tags: frozenset[str]) -> Fraction:
    """The fraction of `want` the worker has; 0 for a task with no want tags."""
    if not want:
        return Fraction(0)
    return Fraction(len(want & tags), len(want))


def task_key(priority: int, task_id: int) -> int:
    """A shape heap key: smaller is better (higher priority, then older)."""
    return ((MAX_PRIORITY - priority) << ID_BITS) | task_id


def view_key(key: int, rank: int) -> int:
    """A view heap key: the shape key's priority, then the want-score rank, then its id."""
    return (((key >> ID_BITS) << RANK_BITS | rank) << ID_BITS) | (key & ID_MASK)


def fits(request: Resources, free: Mapping[str, int]) -> bool:
    """Whether every requested amount is free (a loop: this runs on every claim)."""
    for name, amount in request:  # noqa: SIM110 (all() and a generator cost twice as much)
        if free.get(name, 0) < amount:
            return False
    return True


class Shape:
    """All pending tasks with one (require, want, request) triple (and capped group, if any)."""

    __slots__ = ("group_id", "heap", "index", "names", "require", "resources", "suspended", "want")

    def __init__(
        self,
        require: frozenset[str],
        want: frozenset[str],
        index: int,
        group_id: int | None = None,
        resources: Resources = NONE,
    ) -> None:
        self.require = require
        self.want = want
        self.index = index
        self.group_id = group_id  # the capped group whose own shape this is
        self.resources = resources  # what each of its tasks asks for
        self.names = frozenset(name for name, _ in resources) if resources else _NO_NAMES
        self.suspended = False  # its group is at its cap: no view offers it
        self.heap: list[int] = []

    def __repr__(self) -> str:
        group = "" if self.group_id is None else f", group={self.group_id}"
        asks = f", resources={dict(self.resources)}" if self.resources else ""
        return f"Shape(require={sorted(self.require)}, want={sorted(self.want)}{group}{asks})"


IsPending = Callable[[int], bool]


class _View:
    """The shapes one worker profile may run, in a heap of composite keys."""

    __slots__ = ("current", "heap", "ranks", "tags", "totals")

    def __init__(self, profile: Profile) -> None:
        self.tags, totals = profile
        self.totals = dict(totals)
        self.heap: list[tuple[int, int]] = []  # (composite key, shape index)
        self.ranks: dict[int, int] = {}  # shape index -> want-score rank
        self.current: dict[int, int] = {}  # shape index -> key of its one live entry

    def offer(self, shape: Shape, key: int) -> None:
        """Make sure the view knows `shape` can offer a task as good as `key`."""
        composite = view_key(key, self.ranks[shape.index])
        known = self.current.get(shape.index)
        if known is None or composite < known:
            self.current[shape.index] = composite
            heapq.heappush(self.heap, (composite, shape.index))

    def admits(self, shape: Shape) -> bool:
        """Whether a worker of this profile could ever run the shape's tasks."""
        return shape.require <= self.tags and fits(shape.resources, self.totals)


class Matcher:
    """Pending tasks by shape, and per-tag-set views over the shapes."""

    def __init__(self, is_pending: IsPending) -> None:
        self._is_pending = is_pending
        self.shapes: dict[ShapeKey, Shape] = {}
        self._by_index: list[Shape] = []
        self._views: dict[Profile, _View] = {}

    def shape(
        self,
        require: frozenset[str],
        want: frozenset[str],
        group_id: int | None = None,
        resources: Resources = NONE,
    ) -> Shape:
        """The shape for (require, want, resources), or a capped group's own one with
        `group_id`, created (and added to every view that admits it) on first use."""
        key = (require, want, group_id, resources)
        found = self.shapes.get(key)
        if found is not None:
            return found
        shape = Shape(require, want, len(self._by_index), group_id, resources)
        self.shapes[key] = shape
        self._by_index.append(shape)
        for view in self._views.values():
            if view.admits(shape):
                view.ranks[shape.index] = _score_ranks()[want_score(want, view.tags)]
        return shape

    def push(self, shape: Shape, priority: int, task_id: int) -> None:
        """A task of `shape` became pending."""
        key = task_key(priority, task_id)
        heap = shape.heap
        heapq.heappush(heap, key)
        if heap[0] == key and not shape.suspended:  # the shape's best got better: tell the views
            self._offer(shape, key)

    def _offer(self, shape: Shape, key: int) -> None:
        for view in self._views.values():
            if shape.index in view.ranks:
                view.offer(shape, key)

    def suspend(self, shape: Shape) -> None:
        """Its group reached its cap: the views drop it as they meet it."""
        shape.suspended = True

    def resume(self, shape: Shape) -> None:
        """Its group is below its cap again: the views see its best task again."""
        shape.suspended = False
        top = self._top(shape)
        if top is not None:
            self._offer(shape, top)

    def load(self, shape: Shape, keys: list[int]) -> None:
        """Add many pending tasks of a shape at once (start-up): one heapify, no views yet."""
        shape.heap.extend(keys)
        heapq.heapify(shape.heap)
        self._views.clear()

    def _top(self, shape: Shape) -> int | None:
        """The shape's best live key, dropping dead entries on the way."""
        heap = shape.heap
        is_pending = self._is_pending
        while heap:
            key = heap[0]
            if is_pending(key & ID_MASK):
                return key
            heapq.heappop(heap)
        return None

    def drop_top(self, shape: Shape, task_id: int) -> None:
        """The task just left pending; pop it if it is the shape's top (else leave it lazy)."""
        heap = shape.heap
        if heap and heap[0] & ID_MASK == task_id:
            heapq.heappop(heap)

    def _view(self, profile: Profile) -> _View:
        view = self._views.get(profile)
        if view is None:
            view = _View(profile)
            ranks = _score_ranks()
            for shape in self._by_index:
                if view.admits(shape):
                    view.ranks[shape.index] = ranks[want_score(shape.want, view.tags)]
                    top = None if shape.suspended else self._top(shape)
                    if top is not None:
                        view.offer(shape, top)
            self._views[profile] = view
        return view

    def best(self, tags: frozenset[str]) -> int | None:
        """The id of the task a worker with `tags` and no resources should get next, or None."""
        return self.pick((tags, NONE), {}, {})[0]

    def pick(
        self,
        profile: Profile,
        free: Mapping[str, int],
        passes: Mapping[int, int],
        reserve_after: int = RESERVE_AFTER_PASSES,
    ) -> tuple[int | None, int | None]:
        """The id of the task a worker of `profile` with `free` amounts should get next
        (None: none fits), and the blocked task it goes ahead of (None: none).

        `passes`: how often each blocked task has been gone ahead of (see the module's
        docstring on reserving).
        """
        view = self._view(profile)
        heap, current, by_index = view.heap, view.current, self._by_index
        passed: list[tuple[int, int]] = []  # shapes set aside: they go back after
        blocked: int | None = None
        reserved = _NO_NAMES  # the resources kept for the blocked task
        found: int | None = None
        while heap:
            composite, index = heap[0]
            if current.get(index) != composite:  # superseded by a better offer
                heapq.heappop(heap)
                continue
            shape = by_index[index]
            request = shape.resources
            if (
                request
                and blocked is not None
                and (not fits(request, free) or not reserved.isdisjoint(shape.names))
            ):
                # not one to take, and the blocked task is known: set it aside as it is (a
                # stale entry is repaired when it next reaches the top)
                passed.append(heapq.heappop(heap))
                continue
            top = None if shape.suspended else self._top(shape)
            if top is None:  # no pending task, or its group is at its cap: resume re-offers
                heapq.heappop(heap)
                del current[index]
                continue
            real = view_key(top, view.ranks[index])
            if real != composite:
                current[index] = real  # the shape's top got worse since: re-file it
                heapq.heapreplace(heap, (real, index))
                continue
            if not request or blocked is not None:  # (the latter checked above)
                found = top & ID_MASK
                break
            if fits(request, free):
                found = top & ID_MASK
                break
            blocked = top & ID_MASK  # the best-ranked task that does not fit
            if passes.get(blocked, 0) >= reserve_after:
                reserved = shape.names
            passed.append(heapq.heappop(heap))
        if not passed:
            return found, None
        for entry in passed:
            heapq.heappush(heap, entry)
        return found, None if found is None else blocked

    def drop_view(self, profile: Profile) -> None:
        """No worker has this profile any more: stop maintaining its view."""
        self._views.pop(profile, None)

    def pending_ids(self) -> Iterable[tuple[Shape, list[int]]]:
        """Each shape with its live pending ids in matching order (for tests and snapshots)."""
        for shape in self._by_index:
            ids = sorted({k for k in shape.heap if self._is_pending(k & ID_MASK)})
            yield shape, [k & ID_MASK for k in ids]
