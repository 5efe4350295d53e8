"""The tag-shape matcher agrees with a linear scan by SPEC §1's rule, whatever happens."""

from __future__ import annotations

import random
from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kickoff.defaults import MAX_PRIORITY, MAX_TASK_ID, MIN_PRIORITY
from kickoff.state import matcher
from kickoff.state.task_state import TaskState
from tests.unit._sim import TAGS, Sim, operations, random_operations

NONE: frozenset[str] = frozenset()


def tags(text: str) -> frozenset[str]:
    return frozenset(text)


def sim_with_worker(worker_tags: str = "", slots: int = 100) -> tuple[Sim, str]:
    sim = Sim()
    return sim, sim.register(tags(worker_tags), slots)


def submit(
    sim: Sim, require: str = "", want: str = "", priority: int = 0, attempts: int = 3
) -> int:
    return sim.submit(tags(require), tags(want), priority, attempts, None)


def claim(sim: Sim, worker_id: str) -> int | None:
    """Claim with the named worker (Sim.claim also checks the reference scan)."""
    return sim.claim(sim.worker_ids().index(worker_id))


# -- property ------------------------------------------------------------------------


@given(operations())
def test_matcher_agrees_with_linear_scan(ops: list[tuple[object, ...]]) -> None:
    Sim().run(ops)


@pytest.mark.parametrize("seed", range(8))
def test_matcher_agrees_on_long_seeded_runs(seed: int) -> None:
    """Long runs hypothesis rarely builds: many workers, views and stale heap entries."""
    sim = Sim().run(random_operations(random.Random(seed), 800))
    assert sim.matched > 50 and sim.fitted > 5  # not vacuous: resources held, too


# -- the rule --------------------------------------------------------------------------


def test_priority_then_want_score_then_age() -> None:
    sim, w = sim_with_worker("ab")
    quarter = submit(sim, want="acde")  # 1/4
    two_quarters = submit(sim, want="abcd")  # 2/4 == 1/2, older than `half`
    half = submit(sim, want="ac")  # 1/2
    no_want = submit(sim)  # 0
    full = submit(sim, want="ab")  # 1
    zero_of_one = submit(sim, want="e")  # 0, younger than no_want
    urgent = submit(sim, priority=1, want="e")
    needs_c = submit(sim, require="c", priority=MAX_PRIORITY)
    order = [claim(sim, w) for _ in range(8)]
    assert order == [urgent, full, two_quarters, half, quarter, no_want, zero_of_one, None]
    assert needs_c in sim.state.tasks


def test_extreme_priorities_order_correctly() -> None:
    sim, w = sim_with_worker()
    low = submit(sim, priority=MIN_PRIORITY)
    high = submit(sim, priority=MAX_PRIORITY)
    mid = submit(sim, priority=-1)
    assert [claim(sim, w) for _ in range(4)] == [high, mid, low, None]


def test_require_must_be_a_subset_of_the_worker_tags() -> None:
    sim, w = sim_with_worker("ab")
    submit(sim, require="abc", priority=5)
    submit(sim, require="c")
    fits = submit(sim, require="ab", priority=-2)
    assert [claim(sim, w), claim(sim, w)] == [fits, None]


# -- tricky cases ------------------------------------------------------------------------


def test_better_task_arriving_after_the_view_was_built() -> None:
    sim, w = sim_with_worker("a")
    plain = submit(sim)
    other = submit(sim)
    assert sim.state.matcher.best(tags("a")) == plain  # builds the view for {a}
    urgent = submit(sim, priority=1)  # same shape, better top
    new_shape = submit(sim, require="a", want="a")  # a shape created after the view
    unfit = submit(sim, require="b", priority=2)  # new shape the view must not take
    assert [claim(sim, w) for _ in range(5)] == [urgent, new_shape, plain, other, None]
    assert sim.state.tasks[unfit].state is TaskState.PENDING


def test_cancelled_top_task_is_skipped() -> None:
    sim, w = sim_with_worker()
    low = submit(sim)
    top = submit(sim, priority=5)
    second = submit(sim, priority=1)
    assert sim.state.matcher.best(NONE) == top
    sim.cancel(sorted(sim.specs).index(top))
    sim.cancel(sorted(sim.specs).index(low))  # not a heap top: deleted lazily
    assert [claim(sim, w), claim(sim, w)] == [second, None]


def test_dead_entry_on_top_of_a_shape_does_not_hide_a_new_task() -> None:
    """Shape heap [t1, t2]; t2 cancelled (lazy), t1 claimed: the dead t2 sits on top.

    A new t3 then is not the heap's top, so no view is told about it directly.
    """
    sim, w = sim_with_worker()
    first = submit(sim)
    second = submit(sim)
    sim.cancel(sorted(sim.specs).index(second))
    assert claim(sim, w) == first
    third = submit(sim)
    assert [claim(sim, w), claim(sim, w)] == [third, None]


def test_requeued_old_task_jumps_back_ahead() -> None:
    sim, lost = sim_with_worker(slots=1)
    old = submit(sim, attempts=2)
    younger = [submit(sim) for _ in range(3)]
    assert claim(sim, lost) == old
    stays = sim.register(NONE, 100)
    assert claim(sim, stays) == younger[0]
    sim.lose(sim.worker_ids().index(lost))
    assert sim.state.tasks[old].state is TaskState.PENDING
    assert sim.state.tasks[old].attempt == 1
    assert claim(sim, stays) == old
    assert sim.records[-1].event.attempt == 2  # type: ignore[union-attr]
    assert [claim(sim, stays) for _ in range(3)] == [*younger[1:], None]


def test_requeue_behind_a_dead_entry_on_the_shape_top() -> None:
    sim, lost = sim_with_worker(slots=1)
    watcher = sim.register(NONE, 100)
    first = submit(sim)
    second = submit(sim)
    third = submit(sim)
    assert claim(sim, watcher) == first
    assert claim(sim, lost) == second
    sim.cancel(sorted(sim.specs).index(third))  # lazy entry; the shape's heap: [3]
    sim.complete(sim.running().index(first), 0, False)
    sim.lose(sim.worker_ids().index(lost))  # second is pushed behind the dead third
    assert [claim(sim, watcher), claim(sim, watcher)] == [second, None]


def test_view_entry_made_stale_by_another_tag_set_is_refiled() -> None:
    """{a} and {b} both see the shape (require {}); {b} takes its top, so {a}'s view holds
    a key better than the shape can now offer, and a second shape is really best."""
    sim = Sim()
    a = sim.register(tags("a"), 10)
    b = sim.register(tags("b"), 10)
    first = submit(sim)
    other_shape = submit(sim, want="c")  # same score 0 for both workers, older than `third`
    third = submit(sim)
    assert sim.state.matcher.best(tags("a")) == first  # the {a} view files shape {} at `first`
    assert claim(sim, b) == first
    assert [claim(sim, a), claim(sim, a), claim(sim, a)] == [other_shape, third, None]


def test_worker_tag_change_between_claims() -> None:
    sim, w = sim_with_worker("a")
    gpu = submit(sim, require="b", priority=5)
    plain = submit(sim)
    wants_c = submit(sim, want="c")
    assert claim(sim, w) == plain
    sim.retag(0, tags("ab"))
    assert claim(sim, w) == gpu
    sim.retag(0, tags("c"))
    needs_a = submit(sim, require="a", priority=9)
    assert claim(sim, w) == wants_c
    assert claim(sim, w) is None
    sim.retag(0, tags("a"))
    assert claim(sim, w) == needs_a


def test_many_distinct_tag_sets() -> None:
    sim = Sim()
    subsets = [frozenset(c) for n in range(len(TAGS) + 1) for c in combinations(TAGS, n)]
    workers = [sim.register(s, 3) for s in subsets]
    for i, require in enumerate(subsets):
        for j, want in enumerate(subsets[::3]):
            sim.submit(require - {"e"}, want, (i + j) % 5 - 2, 3, None)
    for round_ in range(4):
        for w in workers:
            claim(sim, w)
        for _ in range(20):
            sim.complete(round_, 0, False)
    assert sim.matched > 100
    assert len(sim.state.matcher.shapes) == len(
        {(r - {"e"}, w) for r in subsets for w in subsets[::3]}
    )


def test_slots_limit_claims() -> None:
    sim, w = sim_with_worker(slots=2)
    for _ in range(3):
        submit(sim)
    assert claim(sim, w) is not None
    assert claim(sim, w) is not None
    assert claim(sim, w) is None


def test_views_of_tag_sets_no_worker_has_are_dropped() -> None:
    """A worker whose tags change often (a free-memory tag, say) must not leave a view per
    old tag set behind: every submit that changes a shape's top walks every view."""
    sim, w = sim_with_worker("a")
    for k in range(50):
        sim.retag(0, frozenset({"a", f"mem={k}"}))
        submit(sim)
        assert claim(sim, w) is not None
    live_tag_sets = {worker.tags for worker in sim.state.workers.values()}
    assert len(sim.state.matcher._views) <= len(live_tag_sets)


# -- key packing -------------------------------------------------------------------------

priorities = st.integers(MIN_PRIORITY, MAX_PRIORITY)
task_ids = st.integers(1, MAX_TASK_ID)
ranks = st.integers(0, (1 << matcher.RANK_BITS) - 1)


@given(priorities, task_ids, ranks, priorities, task_ids, ranks)
def test_keys_order_by_priority_then_rank_then_age(
    p1: int, id1: int, r1: int, p2: int, id2: int, r2: int
) -> None:
    """Smaller is better: higher priority, then (in a view) the better want score, then the
    older task; and the id comes back out of either key."""
    k1, k2 = matcher.task_key(p1, id1), matcher.task_key(p2, id2)
    assert (k1 < k2) == ((-p1, id1) < (-p2, id2))
    v1, v2 = matcher.view_key(k1, r1), matcher.view_key(k2, r2)
    assert (v1 < v2) == ((-p1, r1, id1) < (-p2, r2, id2))
    assert k1 & matcher.ID_MASK == v1 & matcher.ID_MASK == id1


def test_every_want_score_has_a_rank_that_fits() -> None:
    assert max(matcher._score_ranks().values()) < 1 << matcher.RANK_BITS
