"""Workflows in the fold and the rules (SPEC §12): dependencies, groups with a running cap,
retries. Pure: decide + apply with explicit times."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kickoff.errors import Conflict, NotFound
from kickoff.events import model as ev
from kickoff.state import decide
from kickoff.state.decide import GroupRequest, NewTask
from kickoff.state.fold import State, apply
from kickoff.state.task_state import TaskState
from tests.unit.test_fold import T0, Run, later

WAITING, PENDING, RUNNING = TaskState.WAITING, TaskState.PENDING, TaskState.RUNNING


class Flow(Run):
    """Run, with workflow submits and a worker of many slots."""

    def __init__(self) -> None:
        super().__init__()
        self.worker = self.register(slots=100)

    def add(self, group: GroupRequest | None = None, **task: object) -> int:
        events, ids = decide.submit(self.state, [NewTask(command="true", **task)], group=group)
        self.commit(events, T0)
        return ids[0]

    def start(self) -> ev.TaskClaimed:
        return self.claim(self.worker)

    def finish(
        self, claimed: ev.TaskClaimed, exit_code: int = 0, **extra: object
    ) -> list[ev.Event]:
        report = self.report(claimed, exit_code=exit_code, **extra)
        return self.commit(decide.complete(self.state, report), T0)

    def state_of(self, task_id: int) -> TaskState | str:
        task = self.state.tasks.get(task_id)
        if task is not None:
            return task.state
        return (
            "failed"
            if task_id in self.state.failed_ids
            else ("cancelled" if task_id in self.state.cancelled_ids else "succeeded")
        )

    def replay_equals_live(self) -> None:
        fresh = State()
        for rec in self.records:
            apply(fresh, rec.event, seq=rec.seq, at=rec.at)
        assert fresh == self.state


# -- dependencies --------------------------------------------------------------------------


def test_a_chain_runs_in_order_and_waiting_tasks_are_not_in_the_matcher() -> None:
    run = Flow()
    first = run.add()
    second = run.add(after=(first,))
    third = run.add(after=(second,))
    assert [run.state_of(t) for t in (first, second, third)] == [PENDING, WAITING, WAITING]
    assert run.state.counts[WAITING] == 2
    assert [ids for _, ids in run.state.matcher.pending_ids() if ids] == [[first]]
    claimed = run.start()
    assert claimed.task_id == first
    assert decide.claim(run.state, run.worker) == []  # the others wait
    assert run.finish(claimed)[1:] == [ev.TaskReleased(task_id=second)]
    assert run.state_of(second) is PENDING and run.state_of(third) is WAITING
    run.finish(run.start())
    assert run.start().task_id == third
    run.replay_equals_live()


def test_a_failed_dependency_cancels_the_chain_with_reasons() -> None:
    run = Flow()
    first = run.add()
    second = run.add(after=(first,))
    third = run.add(after=(second,))
    either = run.add(after_any=(second,))
    events = run.finish(run.start(), exit_code=3)
    assert events[1:] == [
        ev.TaskCancelled(task_id=second, attempt=0, reason=f"dependency {first} failed"),
        ev.TaskCancelled(task_id=third, attempt=0, reason=f"dependency {second} was cancelled"),
        ev.TaskReleased(task_id=either),  # after-any: any end will do
    ]
    assert run.state_of(either) is PENDING
    run.replay_equals_live()


def test_cancelling_a_waiting_task_cancels_its_dependents() -> None:
    run = Flow()
    first = run.add()
    second = run.add(after=(first,))
    third = run.add(after=(second,))
    events = run.commit(decide.cancel(run.state, second), T0)
    assert [type(e) for e in events] == [ev.TaskCancelRequested, ev.TaskCancelled, ev.TaskCancelled]
    assert events[2] == ev.TaskCancelled(
        task_id=third, attempt=0, reason=f"dependency {second} was cancelled"
    )
    # first ends later: its dependents index still names second (lazily), nothing follows
    assert run.finish(run.start())[1:] == []
    run.replay_equals_live()


def test_every_dependency_must_end_and_repeats_count_once() -> None:
    run = Flow()
    a, b = run.add(), run.add()
    both = run.add(after=(a, b, a), after_any=(b,))
    run.finish(run.start())
    assert run.state_of(both) is WAITING
    assert run.state.waiting_for(both) == [b]
    assert run.finish(run.start())[1:] == [ev.TaskReleased(task_id=both)]


def test_dependencies_that_ended_before_the_submit_are_resolved_at_once() -> None:
    run = Flow()
    ok, bad = run.add(), run.add()
    run.finish(run.start())
    run.finish(run.start(), exit_code=1)
    events, (after_ok,) = decide.submit(run.state, [NewTask(command="x", after=(ok,))])
    assert events[1:] == [ev.TaskReleased(task_id=after_ok)]
    run.commit(events, T0)
    events, (after_bad,) = decide.submit(run.state, [NewTask(command="x", after=(ok, bad))])
    assert events[1:] == [
        ev.TaskCancelled(task_id=after_bad, attempt=0, reason=f"dependency {bad} failed")
    ]
    run.commit(events, T0)
    any_bad = run.add(after_any=(bad,))
    assert run.state_of(any_bad) is PENDING
    run.replay_equals_live()


def test_dependencies_within_one_batch() -> None:
    run = Flow()
    failed = run.add()
    run.finish(run.start(), exit_code=1)
    batch = [
        NewTask(command="a", after=(failed,)),  # cancelled at once
        NewTask(command="b", after=(failed + 1,)),  # so this one too
        NewTask(command="c"),
        NewTask(command="d", after=(failed + 3,)),  # waits for c
    ]
    events, ids = decide.submit(run.state, batch)
    run.commit(events, T0)
    assert [run.state_of(i) for i in ids] == ["cancelled", "cancelled", PENDING, WAITING]


@pytest.mark.parametrize("field", ["after", "after_any"])
def test_unknown_dependencies_are_refused(field: str) -> None:
    run = Flow()
    known = run.add()
    for bad in (known + 1, known + 5, 0):
        with pytest.raises(NotFound, match=f"{field}: no task {bad}"):
            decide.submit(run.state, [NewTask(command="x", **{field: (known, bad)})])
    with pytest.raises(NotFound):  # a later task of the same batch is no dependency either
        decide.submit(run.state, [NewTask(command="x", after=(known + 2,)), NewTask(command="y")])


def test_releasing_many_dependents_touches_only_them() -> None:
    run = Flow()
    root = run.add()
    unrelated = [run.add() for _ in range(50)]
    dependents = [run.add(after=(root,)) for _ in range(200)]
    claimed = run.claim(run.worker)
    assert claimed.task_id == root
    events = run.finish(claimed)
    assert events[1:] == [ev.TaskReleased(task_id=d) for d in dependents]
    assert all(run.state_of(t) is PENDING for t in unrelated)


# -- groups ---------------------------------------------------------------------------------


def test_a_group_cap_holds_back_its_tasks_without_scanning_them() -> None:
    run = Flow()
    cap = GroupRequest(name="shot12", max_running=2)
    frames = [run.add(group=cap) for _ in range(5)]
    other = run.add()
    first, second = run.start(), run.start()
    assert {first.task_id, second.task_id} == set(frames[:2])
    assert run.start().task_id == other  # the group is at its cap: the rest are skipped
    assert decide.claim(run.state, run.worker) == []
    run.finish(first)
    assert run.start().task_id == frames[2]
    assert run.state.groups[1].running == 2
    run.replay_equals_live()


def test_a_new_shape_of_a_group_at_its_cap_waits_too() -> None:
    run = Flow()
    cap = GroupRequest(name="g-a", max_running=1)
    run.add(group=cap)
    held = run.start()
    late = run.add(group=GroupRequest(name="g-a"), priority=5, want=frozenset({"x"}))
    assert decide.claim(run.state, run.worker) == []
    run.finish(held)
    assert run.start().task_id == late


def test_a_lost_worker_frees_the_groups_slot() -> None:
    run = Flow()
    cap = GroupRequest(max_running=1)
    task = run.add(group=cap)
    lost = run.register(slots=1)
    assert run.claim(lost).task_id == task
    run.expire(later(100))  # both workers lost: the task is requeued
    assert run.state.groups[1].running == 0
    fresh = run.register(later(100))
    assert run.claim(fresh, later(100)).task_id == task


def test_groups_are_named_or_numbered_and_a_cap_cannot_change() -> None:
    run = Flow()
    events, _ = decide.submit(run.state, [NewTask(command="a")], group=GroupRequest(max_running=3))
    assert events[0] == ev.GroupCreated(group_id=1, name=None, max_running=3)
    run.commit(events, T0)
    again, _ = decide.submit(run.state, [NewTask(command="b")], group=GroupRequest(name="g1"))
    assert again[0].group_id == 1  # type: ignore[union-attr]
    with pytest.raises(Conflict, match="group g1 has --max-running 3"):
        decide.submit(
            run.state, [NewTask(command="c")], group=GroupRequest(name="g1", max_running=4)
        )
    with pytest.raises(NotFound, match="no group g7"):
        decide.submit(run.state, [NewTask(command="c")], group=GroupRequest(name="g7"))
    assert decide.find_group(run.state, "g1") == 1


def test_cancel_group_cancels_its_live_tasks_and_what_waits_on_them() -> None:
    run = Flow()
    group = GroupRequest(name="batch")
    running = run.add(group=group)
    waiting = run.add(group=group, after=(running,))
    outside = run.add(after=(waiting,))
    run.start()
    events = run.commit(decide.cancel_group(run.state, 1), T0)
    assert [type(e).__name__ for e in events] == [
        "TaskCancelRequested",  # the running one: its worker kills it
        "TaskCancelRequested",
        "TaskCancelled",
        "TaskCancelled",  # outside the group, but it waited on the cancelled one
    ]
    assert events[3] == ev.TaskCancelled(
        task_id=outside, attempt=0, reason=f"dependency {waiting} was cancelled"
    )
    assert run.state_of(running) is TaskState.CANCELLING


# -- retries -----------------------------------------------------------------------------------


def test_an_immediate_retry_is_a_new_attempt_and_max_attempts_stays_apart() -> None:
    run = Flow()
    task = run.add(retries=2, max_attempts=1)
    events = run.finish(run.start(), exit_code=1)
    assert events == [
        ev.TaskCompleted(
            task_id=task,
            worker_id=run.worker,
            attempt=1,
            exit_code=1,
            duration_s=1.0,
            retry_in_s=0.0,
        ),
        ev.TaskRequeued(task_id=task, next_attempt=2, reason="retry 1 of 2"),
    ]
    second = run.start()
    assert second.attempt == 2
    run.finish(second, exit_code=1)
    third = run.start()
    assert third.attempt == 3
    assert run.finish(third, exit_code=1)[0].retry_in_s is None  # type: ignore[union-attr]
    assert run.state_of(task) == "failed"


def test_delayed_retries_double_and_are_decided_at_an_explicit_now() -> None:
    run = Flow()
    task = run.add(retries=2, retry_delay_s=10.0)
    events = run.finish(run.start(), exit_code=1)
    assert events[0].retry_in_s == 10.0  # type: ignore[union-attr]
    assert run.state_of(task) is WAITING and run.state.retry_due[task] == later(10)
    assert decide.claim(run.state, run.worker) == []
    assert decide.retries_due(run.state, later(9.999)) == []
    assert run.commit(decide.retries_due(run.state, later(10)), later(10)) == [
        ev.TaskRequeued(task_id=task, next_attempt=2, reason="retry 1 of 2")
    ]
    events = run.finish(run.start(), exit_code=1)
    assert events[0].retry_in_s == 20.0  # type: ignore[union-attr]
    run.replay_equals_live()


def test_retry_on_limits_the_codes_and_a_timeout() -> None:
    run = Flow()
    only_3 = run.add(retries=1, retry_on=(3,))
    timeouts = run.add(retries=1, retry_on=("timeout",))
    assert run.finish(run.start(), exit_code=4)[0].retry_in_s is None  # type: ignore[union-attr]
    assert run.state_of(only_3) == "failed"
    done = run.finish(run.start(), exit_code=-9, timed_out=True)
    assert done[0].retry_in_s == 0.0  # type: ignore[union-attr]
    assert run.state_of(timeouts) is PENDING


def test_a_retry_waiting_task_is_cancelled_at_once_and_its_dependents_follow() -> None:
    run = Flow()
    task = run.add(retries=1, retry_delay_s=60)
    dependent = run.add(after=(task,))
    run.finish(run.start(), exit_code=1)
    events = run.commit(decide.cancel(run.state, task), T0)
    assert events[-1] == ev.TaskCancelled(
        task_id=dependent, attempt=0, reason=f"dependency {task} was cancelled"
    )
    assert run.state.retry_due == {} and run.state.retry_heap == []
    assert decide.retries_due(run.state, later(120)) == []
    run.replay_equals_live()


def test_only_a_final_failure_cancels_dependents() -> None:
    run = Flow()
    task = run.add(retries=1)
    dependent = run.add(after=(task,))
    run.finish(run.start(), exit_code=1)  # retried: the dependent still waits
    assert run.state_of(dependent) is WAITING
    assert run.finish(run.start())[1:] == [ev.TaskReleased(task_id=dependent)]


def test_retry_due_times_survive_replay_at_their_recorded_time() -> None:
    run = Flow()
    task = run.add(retries=1, retry_delay_s=5)
    claimed = run.start()
    report = run.report(claimed, exit_code=2)
    run.commit(decide.complete(run.state, report), later(100))
    assert run.state.retry_due[task] == later(105)
    run.replay_equals_live()
    assert timedelta(seconds=5) == run.state.retry_due[task] - later(100)
