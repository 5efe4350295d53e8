"""Claims with counted resources in use (SPEC §15): claims/s at 10k/100k/1M pending over
100 shapes, a third of them asking for gpu (1-4), a third for mem (1-8G), the rest for
nothing, on 4 workers of gpu=8, mem=64G and 32 slots each.

    .venv/bin/python -m bench.resources [--quick]

In-process (decide + apply, as bench/core.py's claims figure). A timed round fills every
worker's slots (the resources run out first: later claims walk past the shapes that no
longer fit, and the tasks gone ahead of soon have the worker keep their resources); an
untimed step then completes every running task and queues one like each. So every
claim is made with resources held, most of them with some shapes not fitting.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from functools import cache

from bench.core import AT, WORKER_TAGS, Figure, make_shapes, table
from kickoff.events import model as ev
from kickoff.state import decide
from kickoff.state.decide import NewTask
from kickoff.state.fold import State, apply

SLOTS = 32
DECLARED = (("gpu", 8), ("mem", 64 << 30))


def asks(shape: int) -> tuple[tuple[str, int], ...]:
    """What the tasks of shape number `shape` ask for."""
    if shape % 3 == 0:
        return (("gpu", 1 + shape % 4),)
    if shape % 3 == 1:
        return (("mem", (1 + shape % 8) << 30),)
    return ()


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


@cache
def shapes() -> list[tuple[frozenset[str], frozenset[str]]]:
    return make_shapes()


def tasks(first: int, count: int) -> list[NewTask]:
    out = []
    for n in range(first, first + count):
        require, want = shapes()[n % 100]
        out.append(
            NewTask(
                command="./job",
                require=require,
                want=want,
                priority=n % 5 - 2,
                resources=asks(n % 100),
            )
        )
    return out


def resource_state(pending: int) -> tuple[Run, list[str]]:
    run, workers = Run(), []
    for tags in WORKER_TAGS:
        registered = decide.register(
            run.state, name="bench", tags=tags, slots=SLOTS, resources=DECLARED
        )
        (event,) = run.commit(registered)
        workers.append(event.worker_id)  # type: ignore[union-attr]
    gc.disable()
    for start in range(0, pending, 10_000):
        run.commit(decide.submit(run.state, tasks(start, min(10_000, pending - start)))[0])
    gc.enable()
    gc.collect()
    gc.freeze()
    return run, workers


def claims_per_second(
    sizes: tuple[int, ...], claims: int, runs: int
) -> dict[int, tuple[float, float, float]]:
    """Median claims/s per size, by the wall clock and by this thread's CPU time, and the
    share of claims that went ahead of a task that did not fit."""
    built = {size: resource_state(size) for size in sizes}
    rates: dict[int, list[tuple[float, float, float]]] = {size: [] for size in sizes}
    for _ in range(runs):
        for size, (run, workers) in built.items():
            spent = cpu = 0.0
            done = ahead = 0
            while done < claims:
                state, claimed = run.state, []
                started, started_cpu = time.perf_counter(), time.thread_time()
                for worker in workers:
                    for _ in range(SLOTS):
                        for event in decide.claim(state, worker):  # none: nothing fits it
                            run.seq += 1
                            apply(state, event, seq=run.seq, at=AT)
                            claimed.append(event)
                cpu += time.thread_time() - started_cpu
                spent += time.perf_counter() - started
                done += len(claimed)
                ahead += sum(1 for e in claimed if e.ahead_of is not None)  # type: ignore[union-attr]
                _settle(run, claimed)  # type: ignore[arg-type]
            rates[size].append((done / spent, done / cpu, ahead / done))
    gc.unfreeze()
    return {
        size: tuple(statistics.median(r[i] for r in found) for i in range(3))  # type: ignore[misc]
        for size, found in rates.items()
    }


def _settle(run: Run, claimed: list[ev.TaskClaimed]) -> None:
    """Complete every claimed task; queue one like each (so every size stays as it was)."""
    again = []
    for event in claimed:
        task = run.state.tasks[event.task_id]
        shape = task.shape
        again.append(
            NewTask(
                command="./job",
                require=shape.require,
                want=shape.want,
                priority=task.priority,
                resources=shape.resources,
            )
        )
        done = decide.Completion(
            task_id=event.task_id,
            worker_id=event.worker_id,
            attempt=event.attempt,
            exit_code=0,
            duration_s=0,
        )
        run.commit(decide.complete(run.state, done))
    run.commit(decide.submit(run.state, again)[0])


def measure(quick: bool) -> list[Figure]:
    sizes = (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)
    claims, runs = (5_000, 3) if quick else (20_000, 5)
    rates = claims_per_second(sizes, claims, runs)
    flat = rates[sizes[-1]][1] / rates[sizes[0]][1]
    figures = []
    for size in sizes:
        wall, cpu, ahead = rates[size]
        big = size == sizes[-1]
        figures.append(
            Figure(  # by CPU time, as bench/workflows.py: the machine is shared
                f"in-process claims (CPU time) with resources in use, {size:,} pending over "
                "100 shapes",
                cpu,
                "claims/s",
                ">= 100,000 claims/s" + (", flat" if big else ""),
                "yes" if cpu >= 100_000 and (not big or flat >= 0.7) else "no",
                f"wall clock {wall:,.0f}/s; {ahead:.0%} went ahead of a task that did not fit"
                + (f"; {sizes[-1]:,} vs {sizes[0]:,}: {flat:.2f}x" if big else ""),
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
