"""The fold: replay equals live, leases expire at an explicit `now`, the rules refuse."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given

from kickoff.defaults import IDLE_MARK_S
from kickoff.errors import Conflict, IllegalTransition, NotFound, StaleAttempt
from kickoff.events import model as ev
from kickoff.state import decide
from kickoff.state.decide import Completion, NewTask
from kickoff.state.fold import State, apply
from kickoff.state.task_state import LIVE_STATES, TaskState
from kickoff.store.chain import Recorded
from tests.unit._sim import Sim, operations, random_operations

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TIMEOUT = 30.0


def replayed(records: list[Recorded]) -> State:
    state = State()
    for rec in records:
        apply(state, rec.event, seq=rec.seq, at=rec.at)
    return state


# -- replay determinism ------------------------------------------------------------------


@given(operations())
def test_replay_equals_live(ops: list[tuple[object, ...]]) -> None:
    sim = Sim().run(ops)
    assert replayed(sim.records) == sim.state


@pytest.mark.parametrize("seed", range(4))
def test_replay_of_every_prefix_equals_the_live_state_then(seed: int) -> None:
    sim = Sim()
    snapshots = {}
    for op in random_operations(random.Random(seed), 300):
        sim.run([op])
        snapshots[sim.state.last_seq] = sim.state.snapshot()
    fresh = State()
    for rec in sim.records:
        apply(fresh, rec.event, seq=rec.seq, at=rec.at)
        if rec.seq in snapshots:
            assert fresh.snapshot() == snapshots[rec.seq], f"diverged at seq {rec.seq}"
    assert fresh == sim.state
    assert len(sim.records) > 150


def test_counts_match_the_tasks() -> None:
    sim = Sim().run(random_operations(random.Random(99), 800))
    live = dict.fromkeys(LIVE_STATES, 0)
    for task in sim.state.tasks.values():
        live[task.state] += 1
    assert {s: sim.state.counts[s] for s in live} == live
    assert sum(sim.state.counts.values()) == sim.state.next_task_id - 1


def test_state_equality_sees_differences() -> None:
    one, other = Sim(), Sim()
    for sim in (one, other):
        sim.register(frozenset("a"), 1)
        sim.submit(frozenset(), frozenset(), 0, 3, None)
    assert one.state == other.state
    other.claim(0)
    assert one.state != other.state


# -- a hand-driven scheduler -------------------------------------------------------------


class Run:
    """decide + apply with explicit times, as service/recording.py does."""

    def __init__(self) -> None:
        self.state = State()
        self.records: list[Recorded] = []

    def commit(self, events: list[ev.Event], at: datetime) -> list[ev.Event]:
        for event in events:
            self.records.append(Recorded(len(self.records) + 1, at, event))
            apply(self.state, event, seq=len(self.records), at=at)
        return events

    def submit(self, at: datetime = T0, **task: object) -> int:
        events, ids = decide.submit(self.state, [NewTask(command="true", **task)])
        self.commit(events, at)
        return ids[0]

    def register(self, at: datetime = T0, slots: int = 1) -> str:
        events = decide.register(self.state, name="w", tags=frozenset(), slots=slots)
        self.commit(events, at)
        return events[0].worker_id  # type: ignore[union-attr]

    def claim(self, worker_id: str, at: datetime = T0) -> ev.TaskClaimed:
        events = self.commit(decide.claim(self.state, worker_id), at)
        assert len(events) == 1
        return events[0]  # type: ignore[return-value]

    def expire(self, at: datetime) -> list[ev.Event]:
        return self.commit(decide.expire(self.state, at, timeout_s=TIMEOUT), at)

    def report(self, claimed: ev.TaskClaimed, **extra: object) -> Completion:
        fields: dict[str, object] = {
            "task_id": claimed.task_id,
            "worker_id": claimed.worker_id,
            "attempt": claimed.attempt,
            "exit_code": 0,
            "duration_s": 1.0,
            **extra,
        }
        return Completion(**fields)


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_lease_expiry_requeues_with_the_next_attempt() -> None:
    run = Run()
    task_id = run.submit()
    worker = run.register()
    claimed = run.claim(worker)
    assert run.expire(later(TIMEOUT)) == []  # exactly at the deadline: still alive
    assert run.expire(later(TIMEOUT + 0.001)) == [
        ev.TaskLeaseExpired(task_id=task_id, worker_id=worker, attempt=1),
        ev.TaskRequeued(task_id=task_id, next_attempt=2, reason="lease_expired"),
        ev.WorkerLost(worker_id=worker),
    ]
    task = run.state.tasks[task_id]
    assert (task.state, task.attempt, task.worker_id) == (TaskState.PENDING, 1, None)
    assert worker not in run.state.workers
    again = run.claim(run.register(later(40)), later(40))
    assert again.attempt == 2
    with pytest.raises(StaleAttempt, match="attempt 1"):
        decide.complete(run.state, run.report(claimed))


def test_heartbeats_and_server_start_keep_a_lease() -> None:
    run = Run()
    run.submit()
    worker = run.register()
    claimed = run.claim(worker)
    events, stop = decide.heartbeat(run.state, worker, [(claimed.task_id, 1)], now=later(20))
    assert stop == []
    run.commit(events, later(20))
    assert run.expire(later(45)) == []
    run.commit(decide.server_started(TIMEOUT), later(70))  # the outage never counts
    assert run.expire(later(95)) == []
    assert [type(e) for e in run.expire(later(101))] == [
        ev.TaskLeaseExpired,
        ev.TaskRequeued,
        ev.WorkerLost,
    ]


def test_an_idle_worker_s_heartbeat_is_an_event_about_once_a_minute() -> None:
    """Nothing running: a heartbeat within IDLE_MARK_S of the log's last sight of the
    worker is no event; expiry counts it through `heard`, so the worker is not lost."""
    run = Run()
    worker = run.register()
    events, stop = decide.heartbeat(run.state, worker, [], now=later(IDLE_MARK_S - 1))
    assert (events, stop) == ([], [])
    heard = {worker: later(IDLE_MARK_S - 1)}
    assert decide.expire(run.state, later(IDLE_MARK_S), timeout_s=TIMEOUT, heard=heard) == []
    assert run.expire(later(IDLE_MARK_S)) == [ev.WorkerLost(worker_id=worker)]  # unheard
    worker = run.register(later(100))
    events, _ = decide.heartbeat(run.state, worker, [], now=later(100 + IDLE_MARK_S))
    assert events == [ev.WorkerHeartbeat(worker_id=worker, running=())]  # the minute's mark


def test_a_busy_worker_s_heartbeats_are_all_events() -> None:
    """A task running, by either side's account: every heartbeat is recorded."""
    run = Run()
    task_id = run.submit()
    worker = run.register()
    claimed = run.claim(worker)
    events, _ = decide.heartbeat(run.state, worker, [(task_id, 1)], now=later(1))
    assert events == [ev.WorkerHeartbeat(worker_id=worker, running=((task_id, 1),))]
    events, _ = decide.heartbeat(run.state, worker, [], now=later(1))  # its claim's answer lost
    assert events == [ev.WorkerHeartbeat(worker_id=worker, running=())]
    assert claimed.task_id == task_id


def test_failure_after_max_attempts() -> None:
    run = Run()
    task_id = run.submit(max_attempts=2)
    at = T0
    for attempt in (1, 2):
        worker = run.register(at)
        assert run.claim(worker, at).attempt == attempt
        at += timedelta(seconds=TIMEOUT + 1)
        events = run.expire(at)
    assert events == [
        ev.TaskLeaseExpired(task_id=task_id, worker_id=worker, attempt=2),
        ev.TaskFailed(task_id=task_id, attempt=2, reason="lease_expired; all 2 attempts used"),
        ev.WorkerLost(worker_id=worker),
    ]
    assert task_id not in run.state.tasks
    assert run.state.counts[TaskState.FAILED] == 1
    assert run.state.counts[TaskState.PENDING] == 0
    assert run.state.matcher.best(frozenset()) is None


def test_a_cancelling_task_whose_worker_is_lost_is_cancelled() -> None:
    run = Run()
    task_id = run.submit()
    worker = run.register()
    run.claim(worker)
    assert run.commit(decide.cancel(run.state, task_id), T0) == [
        ev.TaskCancelRequested(task_id=task_id)
    ]
    assert run.state.tasks[task_id].state is TaskState.CANCELLING
    events = run.expire(later(TIMEOUT + 1))
    assert events[1] == ev.TaskCancelled(task_id=task_id, attempt=1, worker_id=worker)
    assert task_id not in run.state.tasks
    assert run.state.counts[TaskState.CANCELLED] == 1


def test_expiry_only_takes_the_silent_worker() -> None:
    run = Run()
    first, second = run.submit(), run.submit()
    quiet, chatty = run.register(), run.register()
    run.claim(quiet)
    run.claim(chatty)
    run.commit(decide.heartbeat(run.state, chatty, [(second, 1)], now=later(25))[0], later(25))
    lost = [e for e in run.expire(later(40)) if isinstance(e, ev.WorkerLost)]
    assert lost == [ev.WorkerLost(worker_id=quiet)]
    assert run.state.tasks[first].state is TaskState.PENDING
    assert run.state.tasks[second].state is TaskState.RUNNING


def test_stale_and_unknown_completions() -> None:
    run = Run()
    task_id = run.submit()
    worker = run.register()
    claimed = run.claim(worker)
    with pytest.raises(StaleAttempt):
        decide.complete(run.state, run.report(claimed, attempt=2))
    run.commit(decide.complete(run.state, run.report(claimed)), later(1))
    assert run.state.counts[TaskState.SUCCEEDED] == 1
    with pytest.raises(StaleAttempt, match="already finished"):
        decide.complete(run.state, run.report(claimed))  # reported twice
    with pytest.raises(NotFound):
        decide.complete(run.state, run.report(claimed, task_id=task_id + 1))


def test_cancel_rules() -> None:
    run = Run()
    running, pending, done = run.submit(), run.submit(), run.submit()
    worker = run.register(slots=2)
    claimed_running = run.claim(worker)
    assert claimed_running.task_id == running
    assert run.commit(decide.cancel(run.state, pending), T0) == [
        ev.TaskCancelRequested(task_id=pending),
        ev.TaskCancelled(task_id=pending, attempt=0),
    ]
    claimed_done = run.claim(worker)
    assert claimed_done.task_id == done
    run.commit(decide.complete(run.state, run.report(claimed_done, exit_code=3)), T0)
    assert run.state.counts[TaskState.FAILED] == 1
    for finished in (pending, done):
        with pytest.raises(IllegalTransition, match="already finished"):
            decide.cancel(run.state, finished)
    with pytest.raises(NotFound):
        decide.cancel(run.state, 99)
    run.commit(decide.cancel(run.state, running, requested_by="me"), T0)
    assert run.state.tasks[running].state is TaskState.CANCELLING
    assert decide.cancel(run.state, running) == []  # asked twice: nothing new
    _, stop = decide.heartbeat(run.state, worker, [(running, 1)], now=T0)
    assert stop == [running]
    killed = run.report(claimed_running, exit_code=-15, cancelled=True)
    run.commit(decide.complete(run.state, killed), T0)
    assert run.state.tasks == {}
    assert run.state.counts[TaskState.CANCELLED] == 2
    assert replayed(run.records) == run.state


def test_a_killed_attempt_without_cancel_is_requeued() -> None:
    run = Run()
    task_id = run.submit(max_attempts=2)
    worker = run.register()
    claimed = run.claim(worker)
    events = decide.complete(run.state, run.report(claimed, cancelled=True))
    assert events == [ev.TaskRequeued(task_id=task_id, next_attempt=2, reason="worker_stopped")]
    run.commit(events, T0)
    assert run.state.workers[worker].running == set()
    assert run.claim(worker).attempt == 2


def test_stop_worker_requeues_its_tasks() -> None:
    run = Run()
    task_id = run.submit()
    worker = run.register()
    run.claim(worker)
    run.commit(decide.stop_worker(run.state, worker), T0)
    assert run.state.tasks[task_id].state is TaskState.PENDING
    with pytest.raises(IllegalTransition, match="register again"):
        decide.claim(run.state, worker)
    with pytest.raises(NotFound):
        decide.claim(run.state, "w99")


def test_idempotency_keys() -> None:
    run = Run()
    keyed = NewTask(command="a", idempotency_key="k")
    events, ids = decide.submit(run.state, [keyed, NewTask(command="b"), keyed])
    assert ids == [1, 2, 1]
    assert len(events) == 2
    run.commit(events, T0)
    assert decide.submit(run.state, [keyed]) == ([], [1])  # a retry gets the old id
    claimed = run.claim(run.register())
    run.commit(decide.complete(run.state, run.report(claimed)), T0)
    assert 1 not in run.state.tasks  # finished tasks leave memory, their keys stay
    assert decide.submit(run.state, [keyed]) == ([], [1])
    assert replayed(run.records) == run.state
    assert set(run.state.idempotency) == {"k"} and run.state.idempotency["k"][0] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"command": "a again"},
        {"require": frozenset({"cpu"})},
        {"want": frozenset({"gpu"})},
        {"priority": 1},
        {"max_attempts": 1},
        {"timeout_s": 5.0},
    ],
)
def test_a_known_idempotency_key_with_another_request_is_a_conflict(
    change: dict[str, object],
) -> None:
    run = Run()
    keyed = NewTask(command="a", idempotency_key="job-7")
    other = dataclasses.replace(keyed, **change)  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="idempotency key 'job-7'"):
        decide.submit(run.state, [keyed, other])  # within one batch
    run.commit(decide.submit(run.state, [keyed])[0], T0)
    with pytest.raises(Conflict, match="idempotency key 'job-7' already names task 1"):
        decide.submit(run.state, [NewTask(command="b"), other])
    claimed = run.claim(run.register())
    run.commit(decide.complete(run.state, run.report(claimed)), T0)
    with pytest.raises(Conflict, match="'job-7'"):  # also once the task has finished
        decide.submit(run.state, [other])
    assert decide.submit(run.state, [keyed]) == ([], [1])


def test_apply_refuses_an_event_about_an_unknown_task() -> None:
    with pytest.raises(KeyError):
        apply(State(), ev.TaskClaimed(task_id=5, worker_id="w1", attempt=1), seq=1, at=T0)


def test_tag_change_is_a_no_op_when_unchanged() -> None:
    run = Run()
    worker = run.register()
    assert decide.change_tags(run.state, worker, add=frozenset()) == []
    assert decide.change_tags(run.state, worker, add=frozenset({"x"})) == [
        ev.WorkerTagsChanged(worker_id=worker, tags=frozenset({"x"}))
    ]
