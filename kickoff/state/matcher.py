"""The tag-shape matcher: which pending task a worker with given tags gets next. No I/O here.

Pending tasks are grouped by shape, their (require, want) pair. Each shape keeps a heap of
integer keys, better first: priority descending, then task id (age) ascending. For each
distinct worker tag set the matcher keeps a *view*: the shapes whose require is a subset of
the tags, each with the want-score rank it has for those tags, in a heap of composite keys
(priority, want score, id). A claim looks at the top of that heap, repairs entries made
stale by earlier claims, and never touches the other pending tasks: its cost depends on the
number of shapes, not tasks.

Heap entries are deleted lazily: an entry is live while its task is pending.

A group with `--max-running` has shapes of its own (`group_id` set). While the group is at
its cap they are *suspended*: a view drops such a shape's entry when it reaches the top,
and `resume` offers the shape's top again once a task of the group ends. So the cap costs
a claim nothing, and waiting tasks (never pushed until released) cost it nothing either.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from fractions import Fraction
from functools import cache

from kickoff.defaults import MAX_PRIORITY, MAX_TASK_TAGS, TASK_ID_BITS

ID_BITS = TASK_ID_BITS
ID_MASK = (1 << ID_BITS) - 1
RANK_BITS = 10


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


class Shape:
    """All pending tasks with one (require, want) pair (and capped group, if any)."""

    __slots__ = ("group_id", "heap", "index", "require", "suspended", "want")

    def __init__(
        self,
        require: frozenset[str],
        want: frozenset[str],
        index: int,
        group_id: int | None = None,
    ) -> None:
        self.require = require
        self.want = want
        self.index = index
        self.group_id = group_id  # the capped group whose own shape this is
        self.suspended = False  # its group is at its cap: no view offers it
        self.heap: list[int] = []

    def __repr__(self) -> str:
        group = "" if self.group_id is None else f", group={self.group_id}"
        return f"Shape(require={sorted(self.require)}, want={sorted(self.want)}{group})"


IsPending = Callable[[int], bool]


class _View:
    """The shapes one worker tag set may run, in a heap of composite keys."""

    __slots__ = ("current", "heap", "ranks")

    def __init__(self) -> None:
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


class Matcher:
    """Pending tasks by shape, and per-tag-set views over the shapes."""

    def __init__(self, is_pending: IsPending) -> None:
        self._is_pending = is_pending
        self.shapes: dict[tuple[frozenset[str], frozenset[str], int | None], Shape] = {}
        self._by_index: list[Shape] = []
        self._views: dict[frozenset[str], _View] = {}

    def shape(
        self, require: frozenset[str], want: frozenset[str], group_id: int | None = None
    ) -> Shape:
        """The shape for (require, want), or a capped group's own one with `group_id`,
        created (and added to every view) on first use."""
        found = self.shapes.get((require, want, group_id))
        if found is not None:
            return found
        shape = Shape(require, want, len(self._by_index), group_id)
        self.shapes[(require, want, group_id)] = shape
        self._by_index.append(shape)
        for tags, view in self._views.items():
            if require <= tags:
                view.ranks[shape.index] = _score_ranks()[want_score(want, tags)]
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

    def _view(self, tags: frozenset[str]) -> _View:
        view = self._views.get(tags)
        if view is None:
            view = _View()
            ranks = _score_ranks()
            for shape in self._by_index:
                if shape.require <= tags:
                    view.ranks[shape.index] = ranks[want_score(shape.want, tags)]
                    top = None if shape.suspended else self._top(shape)
                    if top is not None:
                        view.offer(shape, top)
            self._views[tags] = view
        return view

    def best(self, tags: frozenset[str]) -> int | None:
        """The id of the task a worker with `tags` should get next, or None."""
        view = self._view(tags)
        heap = view.heap
        while heap:
            composite, index = heap[0]
            if view.current.get(index) != composite:  # superseded by a better offer
                heapq.heappop(heap)
                continue
            shape = self._by_index[index]
            top = None if shape.suspended else self._top(shape)
            if top is None:  # no pending task, or its group is at its cap: resume re-offers
                heapq.heappop(heap)
                del view.current[index]
                continue
            real = view_key(top, view.ranks[index])
            if real == composite:
                return top & ID_MASK
            view.current[index] = real  # the shape's top got worse since: re-file it
            heapq.heapreplace(heap, (real, index))
        return None

    def drop_view(self, tags: frozenset[str]) -> None:
        """No worker has this tag set any more: stop maintaining its view."""
        self._views.pop(tags, None)

    def pending_ids(self) -> Iterable[tuple[Shape, list[int]]]:
        """Each shape with its live pending ids in matching order (for tests and snapshots)."""
        for shape in self._by_index:
            ids = sorted({k for k in shape.heap if self._is_pending(k & ID_MASK)})
            yield shape, [k & ID_MASK for k in ids]
