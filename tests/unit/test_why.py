"""state/why.py against what really happened: on scripted runs (tests/unit/_sim.py), every
task a worker took while another was pending is named with a rule that holds for the two
tasks and that worker's tags at the claim, and `ahead` is a brute-force count by SPEC §1's
rule (and, without caps, exactly how many claims come before the task's own)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import timedelta

import pytest
from hypothesis import given

from kickoff.events import model as ev
from kickoff.resources import fits
from kickoff.state import decide, why
from kickoff.state.fold import State
from kickoff.state.task_state import TaskState
from kickoff.store.chain import Recorded
from tests.unit._sim import START, Sim, Spec, operations, random_operations, want_score

Tags = frozenset[str]


def log_slice(records: Sequence[Recorded], state: State, task_id: int) -> why.LogSlice:
    """What service/why.py reads from the log, read here from a run's records."""
    own = [r for r in records if ev.task_id_of(r.event) == task_id]
    needs = why.needs(state, task_id, own)
    claims: dict[str, list[Recorded]] = {}
    if needs.after_seq is not None:
        for worker_id in needs.candidates:
            mine = [
                r
                for r in records
                if isinstance(r.event, ev.TaskClaimed)
                and r.event.worker_id == worker_id
                and r.seq > needs.after_seq
            ]
            claims[worker_id] = mine[::-1]
    submitted = {r.event.task_id: r.event for r in records if isinstance(r.event, ev.TaskSubmitted)}
    workers = [
        r
        for r in records
        if isinstance(r.event, ev.WorkerRegistered | ev.WorkerTagsChanged)
        and r.event.worker_id in needs.workers
    ]
    return why.LogSlice(
        own=own,
        claims=claims,
        claim_counts={w: len(c) for w, c in claims.items()},
        submissions=submitted,
        workers=workers,
    )


def brute_ahead(sim: Sim, task_id: int, tags: frozenset[str], totals: dict[str, int]) -> int:
    """SPEC §1 literally: the pending tasks a worker with `tags` and `totals` may ever run
    (not of a group at its cap, unless of this task's own group) that rank before this
    one."""
    state = sim.state
    mine = sim.specs[task_id]
    key = (-mine.priority, -want_score(mine.want, tags), task_id)
    count = 0
    for task in state.tasks.values():
        spec = sim.specs[task.id]
        if task.state is not TaskState.PENDING or task.id == task_id:
            continue
        if not spec.require <= tags or not fits(spec.resources, totals):
            continue
        if task.shape.suspended and task.shape.group_id != state.tasks[task_id].shape.group_id:
            continue
        if (-spec.priority, -want_score(spec.want, tags), task.id) < key:
            count += 1
    return count


def check(sim: Sim) -> int:
    """Explain every pending task; returns how many claims were explained."""
    state, explained = sim.state, 0
    tags_then = _tags_history(sim.records)
    for task in list(state.tasks.values()):
        if task.state is not TaskState.PENDING:
            continue
        log = log_slice(sim.records, state, task.id)
        answer = why.explain(state, task.id, log, sim.now)
        mine = sim.specs[task.id]
        able = [
            w.id
            for w in sorted(state.workers.values(), key=lambda w: int(w.id[1:]))
            if mine.require <= w.tags and fits(mine.resources, dict(w.resources))
        ]
        assert answer.workers_total == (len(able) if answer.workers else 0)
        named = [c.id for c in answer.workers]
        assert named == [w for w in able if w in named]
        assert len(named) == min(len(able), why.WORKERS_SHOWN) or answer.cap is not None
        for candidate in answer.workers:
            worker = state.workers[candidate.id]
            assert candidate.ahead == brute_ahead(sim, task.id, worker.tags, candidate.resources)
            # the hold is what a claim by that worker now would do
            claimed = decide.claim(state, candidate.id)
            got = claimed[0].task_id if claimed else None  # type: ignore[attr-defined]
            if candidate.hold is why.Hold.FREE and candidate.ahead == 0:
                assert got == task.id, (candidate, got)
            if candidate.hold is not why.Hold.FREE:
                assert got != task.id, (candidate, got)
            HOLDS_SEEN.add(candidate.hold)
            assert candidate.short == {
                n: worker.free.get(n, 0) for n, a in mine.resources if worker.free.get(n, 0) < a
            }
            claims = log.claims[candidate.id]
            expected = [e.task_id for _, _, e in claims if isinstance(e, ev.TaskClaimed)]
            assert [t.task_id for t in candidate.took] == expected
            ahead_of = {r[0]: e.ahead_of for r in claims if isinstance(e := r[2], ev.TaskClaimed)}
            for took in candidate.took:
                other = sim.specs[took.task_id]
                then = tags_then(candidate.id, took.seq)
                _holds(took, mine, other, (task.id, took.task_id), then, ahead_of[took.seq])
                explained += 1
                RULES_SEEN.add(took.rule)
        if not answer.workers:
            assert answer.nearest or not state.workers
            had = set().union(*(w.tags for w in state.workers.values()))
            assert set(answer.missing) == set(mine.require) - had
            most = {
                n: max((dict(w.resources).get(n, 0) for w in state.workers.values()), default=0)
                for n, _ in mine.resources
            }
            assert answer.missing_resources == {
                n: most[n] for n, a in mine.resources if most[n] < a
            }
    return explained


RULES_SEEN: set[why.Rule] = set()
HOLDS_SEEN: set[why.Hold] = set()


def _holds(
    took: why.Took, mine: Spec, other: Spec, ids: tuple[int, int], tags: Tags, ahead_of: int | None
) -> None:
    """The rule named is true of the two tasks, the worker's tags at the claim and what
    the claim recorded."""
    my_id, other_id = ids
    ms, os_ = want_score(mine.want, tags), want_score(other.want, tags)
    match took.rule:
        case why.Rule.PRIORITY:
            assert other.priority > mine.priority
        case why.Rule.WANT:
            assert other.priority == mine.priority and os_ > ms
        case why.Rule.AGE:
            assert other.priority == mine.priority and os_ == ms and other_id < my_id
        case why.Rule.TAGS:
            assert not mine.require <= tags
        case why.Rule.RESOURCES:
            assert mine.resources and ahead_of is not None
            assert (-mine.priority, -ms, my_id) < (-other.priority, -os_, other_id)
        case why.Rule.CAP:
            assert mine.group is not None
            # by the rule this task ranked first: only its group's cap kept it back
            assert (-mine.priority, -ms, my_id) < (-other.priority, -os_, other_id)


def _tags_history(records: Sequence[Recorded]) -> Callable[[str, int], Tags]:
    changes = [
        (r.seq, e.worker_id, e.tags)
        for r in records
        if isinstance(e := r.event, ev.WorkerRegistered | ev.WorkerTagsChanged)
    ]

    def at(worker_id: str, seq: int) -> frozenset[str]:
        found: frozenset[str] = frozenset()
        for at_seq, worker, tags in changes:
            if at_seq < seq and worker == worker_id:
                found = tags
        return found

    return at


@given(operations())
def test_every_explanation_holds_on_random_runs(ops: list[tuple[object, ...]]) -> None:
    check(Sim().run(ops))


def test_every_explanation_holds_on_long_seeded_runs() -> None:
    explained = sum(check(Sim().run(random_operations(random.Random(s), 600))) for s in range(8))
    assert explained > 50  # not vacuous: and every rule but the cap's was met
    assert set(why.Rule) - RULES_SEEN <= {why.Rule.CAP}, RULES_SEEN
    assert {why.Hold.BUSY, why.Hold.RESOURCES, why.Hold.FREE} <= HOLDS_SEEN, HOLDS_SEEN


@pytest.mark.parametrize("seed", range(5))
def test_ahead_is_how_many_claims_come_first(seed: int) -> None:
    rng = random.Random(seed)
    sim = Sim()
    tags = frozenset(t for t in "abcde" if rng.random() < 0.6)
    for _ in range(60):
        require = frozenset(t for t in "abcde" if rng.random() < 0.15)
        want = frozenset(t for t in "abcde" if rng.random() < 0.3)
        sim.submit(require, want, rng.choice(range(-2, 3)), 3, None)
    worker = sim.register(tags, 1000)
    pending = [t.id for t in sim.state.tasks.values() if t.shape.require <= tags]
    ahead = {t: why.ahead(sim.state, t, tags) for t in pending}
    order = []
    while (got := sim.claim(sim.worker_ids().index(worker))) is not None:
        order.append(got)
    assert sorted(order) == sorted(pending)
    assert all(order.index(t) == ahead[t] for t in pending)


def test_ahead_stops_counting_at_its_bound() -> None:
    sim = Sim()
    ids = [sim.submit(frozenset(), frozenset(), 0, 3, None) for _ in range(20)]
    tags = frozenset("a")
    assert why.ahead(sim.state, ids[-1], tags) == 19
    assert why.ahead(sim.state, ids[-1], tags, most=5) == 5
    assert why.ahead(sim.state, ids[3], tags, most=5) == 3


def test_a_requeued_task_is_queued_since_its_requeue() -> None:
    sim = Sim()
    first = sim.register(frozenset("a"), 1)
    task_id = sim.submit(frozenset(), frozenset(), 0, 3, None)
    sim.claim(0)
    sim.now = START + timedelta(hours=10)
    sim.lose(0)
    assert sim.state.tasks[task_id].state is TaskState.PENDING
    log = log_slice(sim.records, sim.state, task_id)
    answer = why.explain(sim.state, task_id, log, sim.now)
    assert answer.queued == "requeued"
    assert [(a.worker_id, a.outcome) for a in answer.attempts] == [(first, "lost")]
    assert answer.summary == (
        "pending: no worker is live; attempt 1 on w: its worker was lost (no heartbeat in time)"
    )


def test_explain_changes_nothing() -> None:
    sim = Sim().run(random_operations(random.Random(7), 300))
    before = sim.state.snapshot()
    for task_id in range(1, sim.state.next_task_id):
        log = log_slice(sim.records, sim.state, task_id)
        if log.own:
            why.explain(sim.state, task_id, log, sim.now)
    assert sim.state.snapshot() == before
