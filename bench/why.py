"""`kickoff why`'s cost in-process: explaining the youngest pending task (the most tasks
rank ahead of it) beside 10k..1M pending, on the event loop's time.

    .venv/bin/python -m bench --only why [--quick]

The log reads around it are bounded (the task's events, at most 10 claims per worker and
their submissions); `ahead` walks only the heap entries that rank ahead, up to
why.AHEAD_COUNTED per worker tag set, so the figure must stay flat.
"""

from __future__ import annotations

import gc
import statistics
import time

from bench.core import AT, Figure, make_shapes, pending_state
from kickoff.events import model as ev
from kickoff.state import why


def explain_seconds(pending: int, runs: int) -> float:
    """Median seconds of one `why.explain` of the youngest of `pending` tasks."""
    state, _ = pending_state(pending)
    require, want = make_shapes()[pending % 100]
    submitted = ev.TaskSubmitted(
        task_id=pending, command="./job", require=require, want=want, priority=pending % 5 - 2
    )
    log = why.LogSlice(own=[(pending + 4, AT, submitted)])
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = why.explain(state, pending, log, AT)
        times.append(time.perf_counter() - started)
    assert answer.workers, answer.summary
    gc.unfreeze()
    return statistics.median(times)


def measure(quick: bool, runs: int) -> list[Figure]:
    sizes = (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)
    figures = []
    for size in sizes:
        seconds = explain_seconds(size, max(runs, 3))
        figures.append(
            Figure(
                f"kickoff why of the youngest of {size:,} pending tasks (explain, 4 workers)",
                seconds * 1000,
                "ms",
                "<= 5 ms, flat (the event loop waits for it)",
                "yes" if seconds <= 0.005 else "no",
                f"ahead counted up to {why.AHEAD_COUNTED:,} per worker tag set",
            )
        )
    return figures
