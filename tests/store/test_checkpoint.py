"""Loading the state from the projections' checkpoint equals folding the whole log."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kickoff.database import Database, replay
from kickoff.events import model as ev
from kickoff.state import decide
from kickoff.state.decide import Completion, NewTask
from kickoff.state.fold import State, apply
from kickoff.state.task_state import TaskState
from kickoff.store.chain import Recorded

TAGS = ["a", "b", "c", "d"]
ASKS = [(), (), (("gpu", 1),), (("gpu", 2),), (("gpu", 1), ("mem", 4 << 30)), (("mem", 1),)]
DECLARED = [(), (("gpu", 2),), (("gpu", 4), ("mem", 16 << 30)), (("gpu", 0), ("mem", 8))]


def some_tags(rng: random.Random) -> frozenset[str]:
    return frozenset(t for t in TAGS if rng.random() < 0.3)


def some_task(rng: random.Random) -> NewTask:
    """A task; one with an idempotency key repeats what that key was first sent with (a
    retry: the same key with another request is refused)."""
    key = rng.choice([None, None, f"k{rng.randint(0, 20)}"])
    made = rng if key is None else random.Random(key)
    return NewTask(
        command=f"cmd {made.random()}",
        require=some_tags(made),
        want=some_tags(made),
        priority=made.randint(-1, 1),
        max_attempts=made.randint(1, 3),
        timeout_s=made.choice([None, 2.5]),
        idempotency_key=key,
        resources=made.choice(ASKS),
    )


def random_run(rng: random.Random, db: Database, steps: int) -> State:
    """Drive the rules at random, writing every event; returns the live state."""
    state, seq, now = State(), 0, datetime(2026, 1, 1, tzinfo=UTC)
    pending_batch: list[Recorded] = []

    def record(events: list[ev.Event]) -> None:
        nonlocal seq
        for event in events:
            seq += 1
            apply(state, event, seq=seq, at=now)
            pending_batch.append(Recorded(seq, now, event))

    for _ in range(steps):
        now += timedelta(seconds=rng.random() * 5)
        roll = rng.random()
        live = sorted(state.workers)
        if roll < 0.3:
            tasks = [some_task(rng) for _ in range(rng.randint(1, 4))]
            record(decide.submit(state, tasks)[0])
        elif roll < 0.4 or not live:
            record(
                decide.register(
                    state,
                    name=f"n{rng.randint(0, 3)}",
                    tags=some_tags(rng),
                    slots=rng.randint(1, 3),
                    resources=rng.choice(DECLARED),
                )
            )
        elif roll < 0.6:
            record(decide.claim(state, rng.choice(live)))
        elif roll < 0.72:
            running = [t for t in state.tasks.values() if t.state is not TaskState.PENDING]
            if running:
                task = rng.choice(running)
                assert task.worker_id is not None
                record(
                    decide.complete(
                        state,
                        Completion(
                            task_id=task.id,
                            worker_id=task.worker_id,
                            attempt=task.attempt,
                            exit_code=rng.choice([0, 0, 1]),
                            duration_s=1.0,
                            cancelled=task.state is TaskState.CANCELLING and rng.random() < 0.5,
                        ),
                    )
                )
        elif roll < 0.8 and state.tasks:
            record(decide.cancel(state, rng.choice(sorted(state.tasks))))
        elif roll < 0.86:
            worker = rng.choice(live)
            running_pairs = [(t, state.tasks[t].attempt) for t in state.workers[worker].running]
            record(decide.heartbeat(state, worker, running_pairs, now=now)[0])
        elif roll < 0.9:
            record(decide.change_tags(state, rng.choice(live), replace=some_tags(rng)))
        elif roll < 0.94:
            record(decide.stop_worker(state, rng.choice(live)))
        elif roll < 0.97:
            record(decide.expire(state, now, timeout_s=8))
        else:
            record(decide.server_started(30.0))
        if pending_batch and rng.random() < 0.3:
            db.write(pending_batch)
            pending_batch.clear()
    if pending_batch:
        db.write(pending_batch)
    return state


def test_checkpoint_equals_full_replay(tmp_path: Path) -> None:
    held = passed = 0
    for seed in range(6):
        db = Database(tmp_path / f"run{seed}.db")
        live = random_run(random.Random(seed), db, 400)
        loaded, tail = db.load()
        assert tail == 0
        assert loaded.snapshot() == live.snapshot()  # holdings, free amounts, passes too
        assert replay(db.recorder).snapshot() == live.snapshot()
        held += sum(len(w.held) for w in live.workers.values())
        passed += len(live.passes)
        db.close()
    assert held and passed  # the runs left tasks holding resources, and blocked ones


def test_checkpoint_plus_tail(tmp_path: Path) -> None:
    """Projections behind the log (as after a crash between two writers) catch up by the tail."""
    db = Database(tmp_path / "tail.db")
    live = random_run(random.Random(42), db, 300)
    db.conn.execute("UPDATE projection_state SET last_seq = 0")  # pretend nothing projected
    db.conn.executescript("DELETE FROM tasks; DELETE FROM workers; UPDATE task_counts SET n = 0;")
    loaded, tail = db.load()
    assert tail == live.last_seq
    assert loaded.snapshot() == live.snapshot()
