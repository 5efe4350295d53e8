"""`python -m bench`: every SPEC §8 and §15 figure beside its goal, as medians of several runs.

    python -m bench [--quick] [--runs N] [--json PATH] [--only core|http|NAME,...] [--kickoff PATH]

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

from bench import (
    cli,
    cluster,
    core,
    dashboard,
    http,
    loggrowth,
    postgres,
    resources,
    why,
    workflows,
)
from bench.core import BEFORE, Figure


def _median(fn: Callable[[], float], runs: int) -> tuple[float, list[float]]:
    values = [fn() for _ in range(runs)]
    return statistics.median(values), values


def _spread(values: list[float]) -> str:
    return "runs: " + ", ".join(f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in values)


def _bulk(quick: bool, runs: int) -> list[Figure]:
    bulk, values = _median(lambda: http.bulk_submit(2.0 if quick else 5.0), runs)
    return [
        Figure(
            "durable bulk submit over HTTP, batches of 1,000",
            bulk,
            "tasks/s",
            ">= 100,000 tasks/s",
            "yes" if bulk >= 100_000 else "no",
            _spread(values),
            BEFORE["bulk"],
        )
    ]


def _single(quick: bool, runs: int) -> list[Figure]:
    single, values = _median(lambda: http.single_submit(2.0 if quick else 5.0), runs)
    return [
        Figure(
            "single-task submits, 64 concurrent HTTP clients",
            single,
            "tasks/s",
            ">= 3,000 tasks/s",
            "yes" if single >= 3_000 else "no",
            _spread(values),
            BEFORE["single"],
        )
    ]


def _latency(quick: bool, runs: int) -> list[Figure]:
    samples = 50 if quick else 200
    latencies = [http.submit_to_start(samples) for _ in range(runs)]
    p50 = statistics.median(lat[0] for lat in latencies)
    p95 = statistics.median(lat[1] for lat in latencies)
    return [
        Figure(
            "submit -> start latency on an idle worker, p50",
            p50,
            "ms",
            "<= 2 ms",
            "yes" if p50 <= 2 else "no",
            f"p95 {p95:.2f} ms; " + _spread([x[0] for x in latencies]),
            BEFORE["latency"],
        )
    ]


def _drain(quick: bool, runs: int) -> list[Figure]:
    tasks = 500 if quick else 2000
    drains = [http.drain(tasks) for _ in range(runs)]
    rate = statistics.median(d.rate for d in drains)
    cpu = {
        part: statistics.median(getattr(d, f"{part}_ms") for d in drains)
        for part in ("server", "workers", "shells")
    }
    return [
        Figure(
            f"end-to-end drain of {tasks:,} `true` tasks (cpu/gpu), 2 workers",
            rate,
            "tasks/s",
            ">= 1,000 tasks/s (SPEC §15; §8 said 1,300)",
            "yes" if rate >= 1000 else "no",
            "CPU ms per task: "
            + ", ".join(f"{part} {ms:.2f}" for part, ms in cpu.items())
            + f"; server commits per task {statistics.median(d.commits for d in drains):.2f}; "
            + _spread([d.rate for d in drains]),
            "" if quick else BEFORE["drain"],
        ),
        Figure(
            "server CPU per dispatched task in that drain",
            cpu["server"],
            "ms",
            "<= 0.35 ms",
            "yes" if cpu["server"] <= 0.35 else "no",
        ),
    ]


PRINT_1K = "printf '%1023s\\n' x"  # a shell builtin: 1 KiB of output, no extra process


def _output(quick: bool, runs: int) -> list[Figure]:
    """Drains whose tasks each print 1 KiB beside plain ones, alternated run by run (the
    machine is shared: alternating keeps both under the same load)."""
    tasks = 500 if quick else 2000
    plain, printing = [], []
    for run in range(runs):  # which goes first alternates too
        for printed in (False, True) if run % 2 == 0 else (True, False):
            if printed:
                printing.append(http.drain(tasks, command=PRINT_1K).rate)
            else:
                plain.append(http.drain(tasks).rate)
    ratio = statistics.median(printing) / statistics.median(plain)
    return [
        Figure(
            f"drain of {tasks:,} tasks each printing 1 KiB / plain drain",
            ratio * 100,
            "%",
            ">= 80 % (SPEC §15)",
            "yes" if ratio >= 0.8 else "no",
            f"{statistics.median(printing):,.0f} vs {statistics.median(plain):,.0f} tasks/s "
            f"(medians of {runs}, alternated); printing: "
            + _spread(printing)
            + "; plain: "
            + _spread(plain),
        )
    ]


def _cluster(quick: bool, runs: int) -> list[Figure]:
    dispatches = [cluster.dispatch(100, 10_000 if quick else 50_000) for _ in range(runs)]
    rate = statistics.median(d.rate for d in dispatches)
    return [
        Figure(
            "dispatch to 100 simulated remote workers (HTTP, no processes)",
            rate,
            "tasks/s",
            ">= 5,000 tasks/s",
            "yes" if rate >= 5000 else "no",
            f"CPU ms per task: server {statistics.median(d.server_ms for d in dispatches):.3f}, "
            f"simulated workers {statistics.median(d.client_ms for d in dispatches):.3f}; "
            + _spread([d.rate for d in dispatches]),
        )
    ]


def _restart(quick: bool, runs: int) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "big.db"
        n_tasks, n_events = (100_000, 300_000) if quick else (1_000_000, 3_000_000)
        started = time.perf_counter()
        http.make_big_log(db, n_tasks, n_events)
        made = time.perf_counter() - started
        ready, values = _median(lambda: http.restart_to_ready(db), runs)
        return [
            Figure(
                f"restart to ready, {n_tasks:,} tasks / {n_events:,} events",
                ready,
                "s",
                "<= 5 s",
                "yes" if ready <= 5 else "no",
                f"half the tasks pending; log written in {made:.0f} s; " + _spread(values),
                "" if quick else BEFORE["restart"],
            )
        ]


def _cli(quick: bool, runs: int, script: Path | None = None) -> list[Figure]:
    times = cli.wall_times(11 if quick else 21, script)
    figures = []
    for name, values in times.items():
        wall = cli.median([w for w, _ in values])
        cpu = cli.median([c for _, c in values])
        floor = name == cli.FLOOR
        figures.append(
            Figure(
                name,
                wall,
                "ms",
                "(the floor)" if floor else "<= 50 ms",
                "-" if floor else "yes" if wall <= 50 else "no",
                f"wall, median of {len(values)}; CPU {cpu:.1f} ms",
                next((v for k, v in BEFORE.items() if name.startswith(k)), ""),
            )
        )
    return figures


def _dashboard(quick: bool, runs: int) -> list[Figure]:
    tasks = 500 if quick else 2000
    pair = dashboard.drain_pair(tasks, runs)
    ratio = pair.watched / pair.alone
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "big.db"
        n_tasks, n_events = (100_000, 300_000) if quick else (1_000_000, 3_000_000)
        http.make_big_log(db, n_tasks, n_events)
        first, *later = dashboard.first_page(db, runs + 1)
        search = dashboard.search_page(db, "nothing-matches")
    return [
        Figure(
            f"dashboard first page, {n_tasks:,} tasks / {n_events:,} events",
            first,
            "s",
            "< 1 s",
            "yes" if first < 1 else "no",
            f"the first dashboard after a start (fills the chart from the log); later ones "
            f"{statistics.median(later):.3f} s; a search matching nothing (10 windows) "
            f"{search:.3f} s",
        ),
        Figure(
            f"drain of {tasks:,} tasks with one dashboard open / without",
            ratio * 100,
            "%",
            ">= 95 %",
            "yes" if ratio >= 0.95 else "no",
            f"{pair.watched:,.0f} vs {pair.alone:,.0f} tasks/s (medians of {runs})",
        ),
    ]


# The HTTP figures by name (`--only NAME`), each against real server (and worker) processes.
HTTP_FIGURES: dict[str, Callable[[bool, int], list[Figure]]] = {
    "bulk": _bulk,
    "single": _single,
    "latency": _latency,
    "drain": _drain,
    "output": _output,
    "cluster": _cluster,
    "restart": _restart,
    "cli": lambda quick, runs: _cli(quick, runs, CLI_SCRIPT),
    "dashboard": _dashboard,
    # in-process, beside core's claims figure: claims with waiting tasks and a capped group
    "workflows": lambda quick, runs: workflows.measure(quick),
    "why": why.measure,  # in-process: explain beside 10k..1M pending tasks
    # in-process, also part of core: claims with counted resources held and not fitting
    "resources": lambda quick, runs: resources.measure(quick),
    "loggrowth": loggrowth.measure,  # in-process, an hour on an injected clock
    # bulk, single, drain, latency on a local PostgreSQL beside SQLite; failover time
    "postgres": postgres.measure,
}
CLI_SCRIPT: Path | None = None  # --kickoff


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs")
    parser.add_argument("--runs", type=int, default=3, help="runs per HTTP figure (median)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        help="only these: core, http, or HTTP figures by name (" + ", ".join(HTTP_FIGURES) + ")",
    )
    parser.add_argument(
        "--kickoff",
        type=Path,
        metavar="PATH",
        help="the kickoff console script the cli figure times (default: this Python's)",
    )
    args = parser.parse_args(argv)
    global CLI_SCRIPT
    CLI_SCRIPT = args.kickoff
    started = time.perf_counter()
    only = set(args.only.split(",")) if args.only else {"core", "http"}
    unknown = only - {"core", "http", *HTTP_FIGURES}
    if unknown:
        parser.error(f"unknown figure {', '.join(sorted(unknown))}")
    figures: list[Figure] = []
    if "core" in only:
        figures += core.measure(args.quick)
    for name, measure in HTTP_FIGURES.items():
        if "http" in only or name in only:
            figures += measure(args.quick, args.runs)
    print(core.table(figures))
    print(f"\n{'quick' if args.quick else 'full'} run in {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps({"quick": args.quick, "figures": [asdict(f) for f in figures]}, indent=2)
            + "\n"
        )


if __name__ == "__main__":
    main()
