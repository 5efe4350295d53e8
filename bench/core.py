"""In-process figures of the core beside SPEC §8's goals: matcher, group commit, replay, memory
(and bench/workflows.py's: claims with waiting tasks and a capped group, a release).

    .venv/bin/python bench/core.py [--quick] [--json PATH]

No HTTP here (bench/http.py measures that): these are the ceilings the server builds on.
Each figure is the median of several runs where a run is cheap. `--quick` runs a small
version in well under a minute; the full run takes a few minutes and ~3 GB of RAM.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kickoff.database import Database
from kickoff.events import model as ev
from kickoff.server import tune_runtime
from kickoff.service import Service
from kickoff.state import decide
from kickoff.state.decide import NewTask
from kickoff.state.fold import State, apply
from kickoff.store.chain import Recorded

AT = datetime(2026, 1, 1, tzinfo=UTC)
TAGS = tuple(f"t{i}" for i in range(10))
DEFAULT_GC_THRESHOLD = gc.get_threshold()
DEFAULT_SWITCH_INTERVAL = sys.getswitchinterval()
SHAPES = 100

# Part one's figures as stop 9 measured them (issue 7), and the CLI's wall times as issue 13
# found them: each is shown beside today's (`before`), so a change that costs one shows.
BEFORE = {
    "claims 10,000": "269,000 claims/s",
    "claims 100,000": "235,000 claims/s",
    "claims 1,000,000": "209,000 claims/s",
    "memory": "212 bytes",
    "restart": "1.48 s",
    "bulk": "110,000 tasks/s",
    "single": "9,087 tasks/s",
    "latency": "1.96 ms",
    "drain": "702 tasks/s",
    "kickoff --help": "200 ms",
    "kickoff new": "325 ms",
}
BEFORE_NOTE = (
    "before: part one's figures (issue 7, stop 9; full sizes only where the size matters),"
    " the CLI's as issue 13 found them"
)


@dataclass
class Figure:
    name: str
    measured: float
    unit: str
    goal: str
    met: str  # "yes", "no", or a note when the goal is about something else (HTTP)
    note: str = ""
    before: str = ""  # the figure as part one left it (BEFORE), when there is one

    def shown(self) -> str:
        value = f"{self.measured:,.0f}" if self.measured >= 100 else f"{self.measured:,.3g}"
        return f"{value} {self.unit}"


# -- workload ------------------------------------------------------------------------------


def make_shapes(n: int = SHAPES) -> list[tuple[frozenset[str], frozenset[str]]]:
    """n distinct (require, want) pairs over 10 tags: require 0-2 tags, want 0-3."""
    rng = random.Random(0)
    shapes: dict[tuple[frozenset[str], frozenset[str]], None] = {}
    while len(shapes) < n:
        require = frozenset(rng.sample(TAGS, rng.choice((0, 1, 1, 2))))
        want = frozenset(rng.sample(TAGS, rng.choice((0, 1, 2, 3))))
        shapes[(require, want)] = None
    return list(shapes)


WORKER_TAGS = [
    frozenset(TAGS),  # admits every shape
    frozenset(TAGS[:8]),
    frozenset(TAGS[2:]),
    frozenset(TAGS[::2] + TAGS[1:4]),
]


def submitted(
    first: int, count: int, shapes: list[tuple[frozenset[str], frozenset[str]]]
) -> Iterator[ev.TaskSubmitted]:
    for task_id in range(first, first + count):
        require, want = shapes[task_id % len(shapes)]
        yield ev.TaskSubmitted(
            task_id=task_id,
            command=f"./job {task_id}",
            require=require,
            want=want,
            priority=task_id % 5 - 2,
        )


def pending_state(pending: int) -> tuple[State, list[str]]:
    """A State with `pending` tasks over 100 shapes and 4 workers (effectively unlimited slots)."""
    state, seq = State(), 0
    shapes = make_shapes()
    workers = []
    for tags in WORKER_TAGS:
        (event,) = decide.register(state, name="bench", tags=tags, slots=1 << 40)
        seq += 1
        apply(state, event, seq=seq, at=AT)
        workers.append(event.worker_id)  # type: ignore[union-attr]
    gc.disable()
    for event in submitted(1, pending, shapes):
        seq += 1
        apply(state, event, seq=seq, at=AT)
    gc.enable()
    gc.collect()
    gc.freeze()  # as the server does after replay: the long-lived state leaves the GC's scans
    return state, workers


# -- figures ---------------------------------------------------------------------------------


def claims_per_second(sizes: tuple[int, ...], claims: int, runs: int) -> dict[int, float]:
    """Median claims/s (decide.claim + apply of the TaskClaimed) for each pending count.

    All states are built first and the runs alternate between them, so background load
    skews every size alike. Claims are timed in chunks of at most a tenth of the pending
    count; an untimed refill after each chunk keeps pending steady.
    """
    states = {size: pending_state(size) for size in sizes}
    shapes = make_shapes()
    cursor = {size: (size + 1, states[size][0].last_seq) for size in sizes}
    rates: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(runs):
        for size, (state, workers) in states.items():
            chunk = max(1, min(1_000, size // 10))
            next_id, seq = cursor[size]
            spent = 0.0
            for _ in range(claims // chunk):
                started = time.perf_counter()
                for i in range(chunk):
                    (event,) = decide.claim(state, workers[i & 3])
                    seq += 1
                    apply(state, event, seq=seq, at=AT)
                spent += time.perf_counter() - started
                for event in submitted(next_id, chunk, shapes):
                    seq += 1
                    apply(state, event, seq=seq, at=AT)
                next_id += chunk
            cursor[size] = (next_id, seq)
            rates[size].append(chunk * (claims // chunk) / spent)
    gc.unfreeze()
    return {size: statistics.median(r) for size, r in rates.items()}


def durable_submits(
    tmp: Path, *, bulk_tasks: int, singles: int, clients: int = 64
) -> tuple[float, float, float, float]:
    """Through Service.submit on a real database: bulk tasks/s in batches of 1,000 from one
    caller and from 4 concurrent callers; single submits/s from `clients` concurrent callers;
    commits per single submit."""

    async def run() -> tuple[float, float, float, float]:
        service = Service(tmp / "submit.db")
        await service.start()
        tune_runtime()  # as `kickoff server` does
        try:
            batch = [NewTask(command="true", require=frozenset({"cpu"})) for _ in range(1000)]

            async def bulk_client(batches: int) -> None:
                for _ in range(batches):
                    await service.submit(batch)

            started = time.perf_counter()
            await bulk_client(bulk_tasks // 1000)
            bulk = bulk_tasks / (time.perf_counter() - started)
            started = time.perf_counter()
            await asyncio.gather(*(bulk_client(bulk_tasks // 4000) for _ in range(4)))
            bulk4 = bulk_tasks / (time.perf_counter() - started)

            one = [NewTask(command="true")]
            per_client = singles // clients
            commits_before = service.writer_stats()[0]

            async def client() -> None:
                for _ in range(per_client):
                    await service.submit(one)

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            single = per_client * clients / (time.perf_counter() - started)
            commits = service.writer_stats()[0] - commits_before
            return bulk, bulk4, single, commits / (per_client * clients)
        finally:
            await service.stop()
            gc.unfreeze()
            gc.set_threshold(*DEFAULT_GC_THRESHOLD)
            sys.setswitchinterval(DEFAULT_SWITCH_INTERVAL)

    return asyncio.run(run())


def log_events(total: int) -> Iterator[ev.Event]:
    """A realistic log: 10 workers, then rounds of 1,000 submits each claimed and completed,
    except every tenth round, which stays pending (replay rebuilds a busy matcher)."""
    yield ev.ServerStarted(version="bench", heartbeat_timeout_s=30.0)
    shapes = make_shapes()
    workers = [f"w{i}" for i in range(1, 11)]
    for worker in workers:
        yield ev.WorkerRegistered(worker_id=worker, name=worker, tags=frozenset(TAGS), slots=1000)
    produced, task_id, rounds = 11, 0, 0
    while produced < total:
        size = min(1000, total - produced)
        first = task_id + 1
        yield from submitted(first, size, shapes)
        task_id += size
        produced += size
        rounds += 1
        if rounds % 10 == 0 or produced + 2 * size > total:
            continue  # this round stays pending
        for t in range(first, first + size):
            worker = workers[t % 10]
            yield ev.TaskClaimed(task_id=t, worker_id=worker, attempt=1)
            yield ev.TaskCompleted(
                task_id=t, worker_id=worker, attempt=1, exit_code=0, duration_s=0.1
            )
        produced += 2 * size
        yield from (ev.WorkerHeartbeat(worker_id=w) for w in workers)
        produced += len(workers)


def write_log(path: Path, total: int, batch: int = 50_000) -> tuple[int, float]:
    """Generate a log of ~`total` events with Database.write; returns (events, seconds)."""
    db = Database(path)
    started = time.perf_counter()
    records: list[Recorded] = []
    at = AT
    seq = 0
    for event in log_events(total):
        seq += 1
        if seq % 1000 == 0:
            at += timedelta(seconds=1)
        records.append(Recorded(seq, at, event))
        if len(records) >= batch:
            db.write(records)
            records = []
    if records:
        db.write(records)
    db.close()
    return seq, time.perf_counter() - started


def replay_figures(path: Path, runs: int) -> dict[str, float]:
    """Median seconds of a full fold, of the checkpoint load, and of Service.start()."""
    full, load, start = [], [], []
    for _ in range(runs):
        db = Database(path)
        gc.collect()
        started = time.perf_counter()
        state = db.replay()
        full.append(time.perf_counter() - started)
        pending = state.counts["pending"]  # type: ignore[index]
        del state
        gc.collect()
        started = time.perf_counter()
        db.load()
        load.append(time.perf_counter() - started)
        db.close()
        gc.collect()
        start.append(_service_start(path))
    return {
        "full_s": statistics.median(full),
        "load_s": statistics.median(load),
        "start_s": statistics.median(start),
        "pending": pending,
    }


def _service_start(path: Path) -> float:
    async def run() -> float:
        service = Service(path)
        started = time.perf_counter()
        await service.start()
        ready = time.perf_counter() - started
        await service.stop()
        return ready

    return asyncio.run(run())


def cycle_cost_after_tag_changes(changes: int, cycles: int = 2_000) -> tuple[float, float]:
    """Microseconds per submit + claim + complete for one worker, before and after its tags
    took `changes` distinct values (the matcher keeps a view per tag set it has seen)."""
    state, seq = State(), 0

    def commit(events: list[ev.Event]) -> None:
        nonlocal seq
        for event in events:
            seq += 1
            apply(state, event, seq=seq, at=AT)

    (registered,) = decide.register(state, name="w", tags=frozenset({"cpu"}), slots=1)
    commit([registered])
    worker = registered.worker_id  # type: ignore[union-attr]
    task = [NewTask(command="true", require=frozenset({"cpu"}))]

    def cycle() -> float:
        started = time.perf_counter()
        for _ in range(cycles):
            events, (task_id,) = decide.submit(state, task)
            commit(events)
            commit(decide.claim(state, worker))
            done = decide.Completion(
                task_id=task_id, worker_id=worker, attempt=1, exit_code=0, duration_s=0.0
            )
            commit(decide.complete(state, done))
        return (time.perf_counter() - started) / cycles * 1e6

    before = cycle()
    for k in range(changes):
        commit(decide.change_tags(state, worker, replace=frozenset({"cpu", f"mem={k}"})))
        state.matcher.best(state.workers[worker].tags)  # what a claim with these tags does
    commit(decide.change_tags(state, worker, replace=frozenset({"cpu"})))
    return before, cycle()


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(pending: int) -> None:
    """Run in a fresh interpreter: bytes per pending task by RSS delta and by tracemalloc."""
    shapes = make_shapes()
    state = State()
    gc.collect()
    before = rss_bytes()
    gc.disable()
    for seq, event in enumerate(submitted(1, pending, shapes), 1):
        apply(state, event, seq=seq, at=AT)
    gc.enable()
    gc.collect()
    rss = (rss_bytes() - before) / pending
    del state
    gc.collect()
    tracemalloc.start()
    state = State()
    base = tracemalloc.get_traced_memory()[0]
    for seq, event in enumerate(submitted(1, pending, shapes), 1):
        apply(state, event, seq=seq, at=AT)
    traced = (tracemalloc.get_traced_memory()[0] - base) / pending
    tracemalloc.stop()
    print(json.dumps({"rss": rss, "traced": traced, "tasks": len(state.tasks)}))


def memory_per_task(pending: int) -> dict[str, float]:
    out = subprocess.run(  # as a module: run as a script, bench/http.py would shadow `http`
        [sys.executable, "-m", "bench.core", "--memory-child", str(pending)],
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout))


# -- main -------------------------------------------------------------------------------------


def timed(label: str, fn: Callable[[], object]) -> object:
    print(f"  {label} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = fn()
    print(f"  {label}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return result


def measure(quick: bool, events: int | None = None) -> list[Figure]:
    sizes = (10_000, 50_000) if quick else (10_000, 100_000, 1_000_000)
    claims, runs = (5_000, 3) if quick else (20_000, 7)
    figures: list[Figure] = []
    rates = timed("claims", lambda: claims_per_second(sizes, claims, runs))
    assert isinstance(rates, dict)
    flat = rates[sizes[-1]] / rates[sizes[0]]
    for size in sizes:
        big = size == sizes[-1]
        figures.append(
            Figure(
                f"in-process claims, {size:,} pending over {SHAPES} shapes",
                rates[size],
                "claims/s",
                ">= 100,000 claims/s" + (", flat 10k -> 1M" if big else ""),
                "yes" if rates[size] >= 100_000 and (not big or flat >= 0.7) else "no",
                f"{sizes[-1]:,} vs {sizes[0]:,}: {flat:.2f}x" if big else "",
                BEFORE.get(f"claims {size:,}", ""),
            )
        )

    from bench import resources  # beside the claims: the same with counted resources in use

    figures += timed("claims with resources", lambda: resources.measure(quick))  # type: ignore[arg-type]

    with tempfile.TemporaryDirectory(prefix="kickoff-bench-") as tmp:
        bulk_tasks, singles = (20_000, 5_000) if quick else (200_000, 40_000)
        bulk, bulk4, single, per_submit = timed(  # type: ignore[misc]
            "durable submits",
            lambda: durable_submits(Path(tmp), bulk_tasks=bulk_tasks, singles=singles),
        )
        for rate, how in ((bulk, "1 caller"), (bulk4, "4 concurrent callers")):
            figures.append(
                Figure(
                    f"durable bulk submit, batches of 1,000, {how} (Service.submit, no HTTP)",
                    rate,
                    "tasks/s",
                    ">= 100,000 tasks/s over HTTP",
                    "ceiling ok" if rate >= 100_000 else "ceiling < goal",
                    "the HTTP figure cannot beat this in-process ceiling",
                )
            )
        figures.append(
            Figure(
                "single-task submits, 64 concurrent callers (Service.submit, no HTTP)",
                single,
                "tasks/s",
                ">= 3,000 tasks/s over HTTP",
                "ceiling ok" if single >= 3_000 else "ceiling < goal",
                f"group commit: {per_submit:.3f} commits per submit",
            )
        )

        events = events or (100_000 if quick else 1_000_000)
        log = Path(tmp) / "replay.db"
        written, write_s = timed(f"write a {events:,}-event log", lambda: write_log(log, events))  # type: ignore[misc]
        figures.append(
            Figure(
                f"log generation with Database.write, batches of 50,000 ({written:,} events)",
                written / write_s,
                "events/s",
                "-",
                "-",
                "log + projections in one transaction",
            )
        )
        replay = timed("replay", lambda: replay_figures(log, 1 if quick or written > 2e6 else 3))
        assert isinstance(replay, dict)
        size_mb = log.stat().st_size / 1e6
        figures.append(
            Figure(
                f"full replay rate (read, decode, fold every event), {written:,} events",
                written / replay["full_s"],
                "events/s",
                "-",
                "-",
                f"{size_mb:,.0f} MB file",
            )
        )
        figures.append(
            Figure(
                f"checkpoint load (projections + tail) of {written:,} events",
                replay["load_s"],
                "s",
                "-",
                "-",
                f"{replay['pending']:,} tasks pending after replay",
            )
        )
        per_3m = replay["start_s"] * max(1.0, 3_000_000 / written)
        figures.append(
            Figure(
                f"Service.start() to ready, {written:,} events",
                replay["start_s"],
                "s",
                "<= 5 s for 3,000,000 events",
                "yes" if per_3m <= 5 else "no",
                f"3M events, linear upper bound: {per_3m:.2f} s" if written < 3_000_000 else "",
            )
        )
        full_3m = replay["full_s"] * max(1.0, 3_000_000 / written)
        figures.append(
            Figure(
                f"full replay (no checkpoint: `full_replay=True`), {written:,} events",
                replay["full_s"],
                "s",
                "-",
                "-",
                f"3M events, linear estimate: {full_3m:.1f} s" if written < 3_000_000 else "",
            )
        )

    changes = 2_000 if quick else 10_000
    before, after = timed("tag changes", lambda: cycle_cost_after_tag_changes(changes))  # type: ignore[misc]
    figures.append(
        Figure(
            f"submit+claim+complete after a worker had {changes:,} tag sets (in-process)",
            after,
            "us",
            "-",
            "-",
            f"{before:.1f} us before the tag changes: views of old tag sets are dropped",
        )
    )

    from bench import workflows  # it builds on this module's workload

    more = timed("workflows", lambda: workflows.measure(quick))
    assert isinstance(more, list)
    figures += more

    pending = 100_000 if quick else 1_000_000
    memory = timed("memory per pending task", lambda: memory_per_task(pending))
    assert isinstance(memory, dict)
    figures.append(
        Figure(
            f"resident memory per pending task ({pending:,} pending, RSS delta)",
            memory["rss"],
            "bytes",
            "<= 300 bytes",
            "yes" if memory["rss"] <= 300 else "no",
            f"tracemalloc: {memory['traced']:.0f} bytes",
            "" if quick else BEFORE["memory"],
        )
    )
    return figures


def table(figures: list[Figure]) -> str:
    rows = [("figure", "measured", "before", "goal", "met?", "note")]
    rows += [(f.name, f.shown(), f.before or "-", f.goal, f.met, f.note) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    if any(f.before for f in figures):
        lines.append(f"\n{BEFORE_NOTE}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small version (well under a minute)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--events", type=int, metavar="N", help="events in the replay log (default 1,000,000)"
    )
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return
    started = time.perf_counter()
    figures = measure(args.quick, args.events)
    print(table(figures))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n{'quick' if args.quick else 'full'} run: {time.perf_counter() - started:.0f} s, "
        f"peak RSS {peak:,.0f} MB, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"quick": args.quick, "figures": [asdict(f) for f in figures]}, indent=2)
            + "\n"
        )


if __name__ == "__main__":
    main()
