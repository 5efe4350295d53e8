"""Workflow figures beside SPEC §15's claims goal: claims/s with half of the pending tasks
waiting on dependencies and a capped group of 100k, and the release of 10,000 dependents.

    python -m bench --only workflows [--quick]     (or: python -m bench.workflows)

In-process (decide + apply, as bench/core.py's claims figure): the matcher's ceiling.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from bench.core import AT, WORKER_TAGS, Figure, make_shapes, table
from kickoff.events import model as ev
from kickoff.state import decide
from kickoff.state.decide import GroupRequest, NewTask
from kickoff.state.fold import State, apply

CAPPED = 100_000  # tasks of the capped group (at full size)
CAP = 64


class Run:
    """A State and the seq of its last event."""

    def __init__(self) -> None:
        self.state = State()
        self.seq = 0

    def commit(self, events: list[ev.Event]) -> list[ev.Event]:
        for event in events:
            self.seq += 1
            apply(self.state, event, seq=self.seq, at=AT)
        return events


def workflow_state(pending: int) -> tuple[Run, list[str]]:
    """`pending` live tasks over 100 shapes: half waiting on a dependency, a group of
    CAPPED * pending / 1M capped at CAP, the rest plain; 4 workers (unlimited slots)."""
    run, shapes = Run(), make_shapes()
    workers = []
    for tags in WORKER_TAGS:
        (event,) = run.commit(decide.register(run.state, name="bench", tags=tags, slots=1 << 40))
        workers.append(event.worker_id)  # type: ignore[union-attr]
    gc.disable()
    roots = run.commit(
        decide.submit(run.state, [NewTask(command="root", require=frozenset({"x"}))])[0]
    )
    root = roots[0].task_id  # type: ignore[union-attr]
    capped = CAPPED * pending // 1_000_000
    waiting = pending // 2
    plain = pending - waiting - capped

    def tasks(count: int, **extra: object) -> list[NewTask]:
        out = []
        for i in range(count):
            require, want = shapes[i % len(shapes)]
            out.append(
                NewTask(command="./job", require=require, want=want, priority=i % 5 - 2, **extra)
            )  # type: ignore[arg-type]
        return out

    for start in range(0, waiting, 10_000):
        batch = tasks(min(10_000, waiting - start), after=(root,))
        run.commit(decide.submit(run.state, batch)[0])
    group = GroupRequest(name="capped", max_running=CAP)
    for start in range(0, capped, 10_000):
        run.commit(decide.submit(run.state, tasks(min(10_000, capped - start)), group=group)[0])
    for start in range(0, plain, 10_000):
        run.commit(decide.submit(run.state, tasks(min(10_000, plain - start)))[0])
    gc.enable()
    gc.collect()
    gc.freeze()
    return run, workers


def claims_per_second(
    sizes: tuple[int, ...], claims: int, runs: int
) -> dict[int, tuple[float, float]]:
    """Median claims/s (decide.claim + apply) per size, by the wall clock and by this
    thread's CPU time (the machine is shared: the CPU figure is what other processes do not
    stretch). Between timed chunks (untimed), the group's running tasks complete, so it
    leaves its cap and reaches it again in the next chunk, and plain tasks refill what was
    claimed."""
    built = {size: workflow_state(size) for size in sizes}
    rates: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
    for _ in range(runs):
        for size, (run, workers) in built.items():
            chunk = max(1, min(1_000, size // 10))
            spent = cpu = 0.0
            for _ in range(claims // chunk):
                claimed: list[ev.TaskClaimed] = []
                state = run.state
                started, started_cpu = time.perf_counter(), time.thread_time()
                for i in range(chunk):
                    (event,) = decide.claim(state, workers[i & 3])
                    run.seq += 1
                    apply(state, event, seq=run.seq, at=AT)
                    claimed.append(event)  # type: ignore[arg-type]
                cpu += time.thread_time() - started_cpu
                spent += time.perf_counter() - started
                _settle(run, claimed)
            done = chunk * (claims // chunk)
            rates[size].append((done / spent, done / cpu))
    gc.unfreeze()
    return {
        size: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
        for size, r in rates.items()
    }


def _settle(run: Run, claimed: list[ev.TaskClaimed]) -> None:
    """Complete the claimed tasks of the capped group; queue as many plain ones again."""
    state, refill = run.state, 0
    for event in claimed:
        task = state.tasks[event.task_id]
        if task.group is not None:
            done = decide.Completion(
                task_id=task.id, worker_id=event.worker_id, attempt=1, exit_code=0, duration_s=0
            )
            run.commit(decide.complete(state, done))
        refill += 1
    shapes = make_shapes()
    batch = [
        NewTask(command="./job", require=shapes[i % 100][0], want=shapes[i % 100][1])
        for i in range(refill)
    ]
    run.commit(decide.submit(state, batch)[0])


def release_seconds(dependents: int, runs: int = 5) -> float:
    """Median seconds to decide and apply the end of a task that `dependents` wait on
    (its TaskCompleted and one TaskReleased each), beside 100k other waiting tasks."""
    times = []
    for _ in range(runs):
        run = Run()
        (registered,) = run.commit(decide.register(run.state, name="w", tags=frozenset(), slots=8))
        worker = registered.worker_id  # type: ignore[union-attr]
        other = run.commit(decide.submit(run.state, [NewTask(command="other")])[0])[0]
        roots = run.commit(decide.submit(run.state, [NewTask(command="root")])[0])
        root = roots[0].task_id  # type: ignore[union-attr]
        unrelated = [NewTask(command="w", after=(other.task_id,)) for _ in range(100_000)]  # type: ignore[union-attr]
        for start in range(0, len(unrelated), 10_000):
            run.commit(decide.submit(run.state, unrelated[start : start + 10_000])[0])
        waiting = [NewTask(command="d", after=(root,)) for _ in range(dependents)]
        for start in range(0, dependents, 10_000):
            run.commit(decide.submit(run.state, waiting[start : start + 10_000])[0])
        claims = run.commit(decide.claim(run.state, worker)) + run.commit(
            decide.claim(run.state, worker)
        )
        claim = next(c for c in claims if c.task_id == root)  # type: ignore[union-attr]
        done = decide.Completion(
            task_id=root,
            worker_id=worker,
            attempt=claim.attempt,
            exit_code=0,
            duration_s=0,  # type: ignore[union-attr]
        )
        gc.collect()
        started = time.perf_counter()
        events = run.commit(decide.complete(run.state, done))
        times.append(time.perf_counter() - started)
        assert len(events) == dependents + 1
    return statistics.median(times)


def bytes_per_task(kind: str, count: int = 100_000) -> float:
    """tracemalloc bytes per live task of a kind: waiting on a dependency, in a capped
    group, or with retries (a plain pending task: bench/core.py's memory figure)."""
    import tracemalloc

    run = Run()
    (root,) = run.commit(decide.submit(run.state, [NewTask(command="root")])[0])
    extra: dict[str, object] = {
        "waiting": {"after": (root.task_id,)},  # type: ignore[union-attr]
        "retries": {"retries": 2, "retry_delay_s": 5.0},
    }.get(kind, {})
    group = GroupRequest(name="capped", max_running=CAP) if kind == "capped" else None
    batch = [NewTask(command="./job", **extra) for _ in range(10_000)]  # type: ignore[arg-type]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(count // len(batch)):
        run.commit(decide.submit(run.state, batch, group=group)[0])
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used / count


def measure(quick: bool) -> list[Figure]:
    sizes = (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)
    claims, runs = (5_000, 3) if quick else (20_000, 5)
    rates = claims_per_second(sizes, claims, runs)
    # by CPU time: on a shared machine the wall clock also counts other processes' turns
    flat = rates[sizes[-1]][1] / rates[sizes[0]][1]
    figures = []
    for size in sizes:
        big = size == sizes[-1]
        wall, cpu = rates[size]
        figures.append(
            Figure(
                f"in-process claims (CPU time), {size:,} live: half waiting on dependencies, "
                f"a group of {CAPPED * size // 1_000_000:,} capped at {CAP}",
                cpu,
                "claims/s",
                ">= 100,000 claims/s" + (", flat" if big else ""),
                "yes" if cpu >= 100_000 and (not big or flat >= 0.7) else "no",
                f"wall clock {wall:,.0f}/s"
                + (f"; {sizes[-1]:,} vs {sizes[0]:,}: {flat:.2f}x" if big else ""),
            )
        )
    dependents = 10_000
    release = release_seconds(dependents)
    figures.append(
        Figure(
            f"release of {dependents:,} dependents of one task (decide + apply; 100k other "
            "tasks waiting)",
            release * 1000,
            "ms",
            "-",
            "-",
            f"{release / dependents * 1e6:.2f} us per dependent",
        )
    )
    for kind, what in (
        ("waiting", "waiting on a dependency"),
        ("capped", "pending in a capped group"),
        ("retries", "pending with --retries"),
    ):
        figures.append(
            Figure(
                f"memory per task {what} (tracemalloc, 100,000 tasks)",
                bytes_per_task(kind),
                "bytes",
                "<= 300 bytes (goal for a pending task)",
                "-",
                "beside bench/core.py's plain pending task",
            )
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(table(measure(args.quick)))


if __name__ == "__main__":
    main()
