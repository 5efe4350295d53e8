"""`python -m bench`: every SPEC §8 figure beside its goal, as medians of several runs.

    python -m bench [--quick] [--runs N] [--json PATH] [--only http|core]

In-process figures come from bench/core.py, HTTP figures from bench/http.py (real server
and worker processes on loopback). The machine is shared and noisy: read medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench import core, http
from bench.core import Figure


def _median(fn: Callable[[], float], runs: int) -> tuple[float, list[float]]:
    values = [fn() for _ in range(runs)]
    return statistics.median(values), values


def _spread(values: list[float]) -> str:
    return "runs: " + ", ".join(f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in values)


def http_figures(quick: bool, runs: int) -> list[Figure]:
    seconds = 2.0 if quick else 5.0
    figures = []
    bulk, values = _median(lambda: http.bulk_submit(seconds), runs)
    figures.append(
        Figure(
            "durable bulk submit over HTTP, batches of 1,000",
            bulk,
            "tasks/s",
            ">= 100,000 tasks/s",
            "yes" if bulk >= 100_000 else "no",
            _spread(values),
        )
    )
    single, values = _median(lambda: http.single_submit(seconds), runs)
    figures.append(
        Figure(
            "single-task submits, 64 concurrent HTTP clients",
            single,
            "tasks/s",
            ">= 3,000 tasks/s",
            "yes" if single >= 3_000 else "no",
            _spread(values),
        )
    )
    samples = 50 if quick else 200
    latencies = [http.submit_to_start(samples) for _ in range(runs)]
    p50 = statistics.median(lat[0] for lat in latencies)
    p95 = statistics.median(lat[1] for lat in latencies)
    figures.append(
        Figure(
            "submit -> start latency on an idle worker, p50",
            p50,
            "ms",
            "<= 2 ms",
            "yes" if p50 <= 2 else "no",
            f"p95 {p95:.2f} ms; " + _spread([x[0] for x in latencies]),
        )
    )
    tasks = 500 if quick else 2000
    drains = [http.drain(tasks) for _ in range(runs)]
    rate = statistics.median(d.rate for d in drains)
    cpu = {
        part: statistics.median(getattr(d, f"{part}_ms") for d in drains)
        for part in ("server", "workers", "shells")
    }
    figures.append(
        Figure(
            f"end-to-end drain of {tasks:,} `true` tasks (cpu/gpu), 2 workers",
            rate,
            "tasks/s",
            ">= 1,300 tasks/s",
            "yes" if rate >= 1300 else "no",
            "CPU ms per task: "
            + ", ".join(f"{part} {ms:.2f}" for part, ms in cpu.items())
            + "; "
            + _spread([d.rate for d in drains]),
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "big.db"
        n_tasks, n_events = (100_000, 300_000) if quick else (1_000_000, 3_000_000)
        started = time.perf_counter()
        http.make_big_log(db, n_tasks, n_events)
        made = time.perf_counter() - started
        ready, values = _median(lambda: http.restart_to_ready(db), runs)
        figures.append(
            Figure(
                f"restart to ready, {n_tasks:,} tasks / {n_events:,} events",
                ready,
                "s",
                "<= 5 s",
                "yes" if ready <= 5 else "no",
                f"half the tasks pending; log written in {made:.0f} s; " + _spread(values),
            )
        )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs")
    parser.add_argument("--runs", type=int, default=3, help="runs per HTTP figure (median)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--only", choices=("http", "core"), help="one half of the figures")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    figures: list[Figure] = []
    if args.only != "http":
        figures += core.measure(args.quick)
    if args.only != "core":
        figures += http_figures(args.quick, args.runs)
    print(core.table(figures))
    print(f"\n{'quick' if args.quick else 'full'} run in {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps({"quick": args.quick, "figures": [asdict(f) for f in figures]}, indent=2)
            + "\n"
        )


if __name__ == "__main__":
    main()
