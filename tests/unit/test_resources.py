"""Counted resources in the core (SPEC §10): what fits, what is held and released, which
devices, and the no-starvation rule (state/matcher.py). Every claim here also goes through
Sim's brute-force reference and its holdings check."""

from __future__ import annotations

import random

import pytest

from kickoff.defaults import RESERVE_AFTER_PASSES
from kickoff.errors import InvalidInput
from kickoff.events import model as ev
from kickoff.resources import from_json, parse, show
from kickoff.state import decide
from kickoff.state.fold import State, apply
from kickoff.state.task_state import TaskState
from tests.unit._sim import Amounts, Sim

NONE: frozenset[str] = frozenset()
GPU2: Amounts = (("gpu", 2),)


def worker(sim: Sim, resources: Amounts, slots: int = 8) -> str:
    return sim.register(NONE, slots, resources)


def submit(sim: Sim, resources: Amounts = (), priority: int = 0) -> int:
    return sim.submit(NONE, NONE, priority, 3, None, resources)


def claim(sim: Sim, worker_id: str) -> int | None:
    return sim.claim(sim.worker_ids().index(worker_id))


def finish(sim: Sim, task_id: int, exit_code: int = 0) -> None:
    sim.complete(sim.running().index(task_id), exit_code, False)


def claimed(sim: Sim, task_id: int) -> ev.TaskClaimed:
    return next(
        r.event
        for r in reversed(sim.records)
        if isinstance(r.event, ev.TaskClaimed) and r.event.task_id == task_id
    )


# -- amounts -----------------------------------------------------------------------------


def test_amounts_take_binary_suffixes_and_show_back() -> None:
    assert parse(["gpu=2,mem=16G"], task=True) == (("gpu", 2), ("mem", 16 << 30))
    assert parse(["mem=512M", "scratch=1T"], task=True) == (("mem", 1 << 29), ("scratch", 1 << 40))
    assert parse(["gpu=0"], task=False) == (("gpu", 0),)
    assert show((("gpu", 2), ("mem", 16 << 30), ("odd", 1025))) == "gpu=2,mem=16G,odd=1025"
    assert from_json({"mem": "4K", "gpu": 1}, field="resources", task=True) == (
        ("gpu", 1),
        ("mem", 4096),
    )


@pytest.mark.parametrize(
    ("words", "task", "message"),
    [
        (["gpu=0"], True, "at least 1"),
        (["gpu=-1"], False, "invalid amount"),
        (["gpu=2.5"], True, "invalid amount"),
        (["mem=16GB"], True, "invalid amount"),
        (["gpu"], True, "is not NAME=AMOUNT"),
        (["g pu=1"], True, "is not NAME=AMOUNT"),
        (["gpu=1,gpu=2"], True, "given twice"),
        (["gp/u=1"], True, "invalid resource name"),
        (["mem=2000000T"], True, "out of range"),
        (["gpu=257"], False, "at most 256"),
        ([",".join(f"r{i}=1" for i in range(33))], True, "at most 32"),
    ],
)
def test_bad_amounts_are_refused_naming_the_field(
    words: list[str], task: bool, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        parse(words, task=task)
    assert caught.value.message.startswith("resources")


# -- fit and release -------------------------------------------------------------------------


def test_two_2gpu_tasks_run_at_once_on_a_4gpu_worker_and_a_third_waits() -> None:
    sim = Sim()
    w = worker(sim, (("gpu", 4),))
    first, second, third = (submit(sim, GPU2) for _ in range(3))
    assert [claim(sim, w), claim(sim, w), claim(sim, w)] == [first, second, None]
    ids = [claimed(sim, first).gpu_ids, claimed(sim, second).gpu_ids]
    assert ids == [(0, 1), (2, 3)]  # disjoint, of the worker's devices
    assert sim.state.workers[w].free == {"gpu": 0}
    finish(sim, first)
    assert sim.state.workers[w].free == {"gpu": 2}
    assert claim(sim, w) == third
    assert claimed(sim, third).gpu_ids == (0, 1)  # the ones `first` gave back


def test_a_task_asking_for_more_than_a_worker_has_is_never_its_task() -> None:
    sim = Sim()
    small = worker(sim, (("gpu", 2),))
    big = submit(sim, (("gpu", 4),), priority=5)
    plain = submit(sim)
    assert claim(sim, small) == plain
    assert claim(sim, small) is None
    assert sim.state.tasks[big].state is TaskState.PENDING
    assert not sim.state.passes  # it blocks nobody: that worker can never run it


def test_a_worker_without_the_resource_runs_only_tasks_that_ask_for_none() -> None:
    sim = Sim()
    w = worker(sim, ())
    submit(sim, (("mem", 2),), priority=1)
    plain = submit(sim)
    assert [claim(sim, w), claim(sim, w)] == [plain, None]


@pytest.mark.parametrize("how", ["cancel", "timeout", "failure", "lost", "stopped"])
def test_what_a_task_holds_is_released_however_its_attempt_ends(how: str) -> None:
    sim = Sim()
    w = worker(sim, (("gpu", 4), ("mem", 8)))
    task = submit(sim, (("gpu", 4), ("mem", 8)))
    assert claim(sim, w) == task
    assert sim.state.workers[w].free == {"gpu": 0, "mem": 0}
    if how == "cancel":
        sim.cancel(sorted(sim.specs).index(task))  # cancelling: still running, still holding
        assert sim.state.workers[w].free == {"gpu": 0, "mem": 0}
        sim.complete(sim.running().index(task), -15, True)
        assert task not in sim.state.tasks
    elif how in ("timeout", "failure"):
        report = decide.Completion(
            task_id=task,
            worker_id=w,
            attempt=1,
            exit_code=124 if how == "timeout" else 1,
            duration_s=1.0,
            timed_out=how == "timeout",
        )
        sim.commit(decide.complete(sim.state, report))
    elif how == "lost":
        other = worker(sim, (("gpu", 4), ("mem", 8)))
        sim.lose(sim.worker_ids().index(w))
        assert w not in sim.state.workers
        assert claim(sim, other) == task  # requeued, and all of it free on another worker
        return
    else:
        sim.stop(sim.worker_ids().index(w))
        assert sim.state.tasks[task].state is TaskState.PENDING
        return
    assert sim.state.workers[w].free == {"gpu": 4, "mem": 8}
    assert sim.state.workers[w].held == {}


# -- no starvation ---------------------------------------------------------------------------


def test_a_large_task_waits_for_at_most_a_few_smaller_ones_then_the_worker_keeps_its_gpus() -> None:
    """gpu=4: three 1-gpu tasks run; a 4-gpu task is next in line, then a stream of 1-gpu
    tasks. The stream may go ahead RESERVE_AFTER_PASSES times; then the worker takes no
    task that asks for a gpu (a plain task still fills a slot) until the big one fits."""
    sim = Sim()
    w = worker(sim, (("gpu", 4),), slots=16)
    one: Amounts = (("gpu", 1),)
    running = [submit(sim, one) for _ in range(3)]
    assert [claim(sim, w) for _ in range(3)] == running
    big = submit(sim, (("gpu", 4),))
    stream = [submit(sim, one) for _ in range(10)]
    went_ahead = []
    for _ in range(10):  # each small task ends at once: a gpu comes free every time
        got = claim(sim, w)
        if got is None:
            break
        went_ahead.append(got)
        assert claimed(sim, got).ahead_of == big
        finish(sim, got)
    assert went_ahead == stream[:RESERVE_AFTER_PASSES]
    assert sim.state.passes == {big: RESERVE_AFTER_PASSES}
    plain = submit(sim)
    assert claim(sim, w) == plain  # asks for no gpu: it may run meanwhile
    assert claimed(sim, plain).ahead_of == big
    for task in running:
        assert claim(sim, w) is None  # reserved: the freed gpus wait for `big`
        finish(sim, task)
    assert claim(sim, w) == big
    assert claimed(sim, big).gpu_ids == (0, 1, 2, 3)
    assert sim.state.passes == {}
    assert claim(sim, w) is None  # all four held
    finish(sim, big)
    assert claim(sim, w) == stream[RESERVE_AFTER_PASSES]


def test_a_better_ranked_small_task_is_not_a_pass() -> None:
    sim = Sim()
    w = worker(sim, (("gpu", 2),))
    holder = submit(sim, (("gpu", 1),))
    assert claim(sim, w) == holder
    big = submit(sim, (("gpu", 2),))
    urgent = [submit(sim, (("gpu", 1),), priority=1) for _ in range(5)]
    for task in urgent:  # SPEC §1: priority first; `big` is not gone ahead of
        assert claim(sim, w) == task
        assert claimed(sim, task).ahead_of is None
        finish(sim, task)
    assert big not in sim.state.passes


def test_passes_survive_in_the_state_that_replay_builds() -> None:
    sim = Sim()
    w = worker(sim, (("gpu", 2),))
    holder = submit(sim, (("gpu", 1),))
    assert claim(sim, w) == holder
    big = submit(sim, (("gpu", 2),))
    small = submit(sim, (("gpu", 1),))
    assert claim(sim, w) == small
    replayed = State()
    for record in sim.records:
        apply(replayed, record.event, seq=record.seq, at=record.at)
    assert replayed == sim.state
    assert replayed.passes == {big: 1}
    assert replayed.workers[w].held == sim.state.workers[w].held


@pytest.mark.parametrize("seed", range(4))
def test_the_rule_and_its_bound_hold_under_heavy_resource_pressure(seed: int) -> None:
    """Long seeded runs on a few 4-gpu workers with many slots and mostly gpu tasks: every
    claim agrees with the brute-force reference (reserving included), and no blocked task
    is overtaken by more than RESERVE_AFTER_PASSES claims that take what it asks for."""
    rng = random.Random(seed)
    sim = Sim()
    workers = [worker(sim, (("gpu", 4), ("mem", 8)), slots=8) for _ in range(2)]
    asks: list[Amounts] = [(("gpu", 1),), (("gpu", 2),), (("gpu", 4),), (("mem", 3),), ()]
    for _ in range(1500):
        roll = rng.random()
        if roll < 0.35:
            submit(sim, rng.choice(asks), priority=rng.choice((0, 0, 0, 1)))
        elif roll < 0.75:
            claim(sim, rng.choice(workers))
        elif sim.running():
            finish(sim, rng.choice(sim.running()))
    assert sim.reserved > 10 and sim.fitted > 200  # not vacuous: the rule was at work
