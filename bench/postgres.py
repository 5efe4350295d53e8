"""PostgreSQL figures of SPEC §15: bulk submit, single submits, drain and latency with the
log on a local PostgreSQL (its own throw-away cluster, fsync and synchronous_commit on),
beside the same figures on SQLite; and the failover time: `kill -9` of the leader until
a standby serves claims again.

    python -m bench --only postgres
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import http
from bench.core import Figure


@contextlib.contextmanager
def _on_postgres(cluster: Any) -> Iterator[None]:
    """Every server started meanwhile gets a new database on the cluster."""
    http.DATABASES = cluster.database
    try:
        yield
    finally:
        http.DATABASES = None


def _figures(quick: bool, runs: int) -> dict[str, Callable[[], float]]:
    seconds, tasks, samples = (2.0, 500, 50) if quick else (5.0, 2000, 200)
    return {
        "bulk submit over HTTP, batches of 1,000 (tasks/s)": lambda: http.bulk_submit(seconds),
        "single-task submits, 64 clients (tasks/s)": lambda: http.single_submit(seconds),
        f"drain of {tasks:,} `true` tasks, 2 workers (tasks/s)": lambda: http.drain(tasks).rate,
        "submit -> start latency, p50 (ms)": lambda: http.submit_to_start(samples)[0],
    }


def failover_s(cluster: Any, lease_timeout_s: float) -> float:
    """Seconds from `kill -9` of the leader until the standby answers a worker's claim."""
    url = cluster.database()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        lease = ("--lease-timeout", str(lease_timeout_s))
        leader, _ = http.start_server(Path(a), url, *lease)
        standby, _ = http.start_server(Path(b), url, *lease)
        try:
            with leader.http() as api:
                worker = api.post("/v1/workers", json={"name": "w", "tags": []}).json()
                api.post("/v1/tasks", json={"tasks": [{"command": "true"}] * 100})
            leader.proc.kill()
            leader.proc.wait()
            killed = time.perf_counter()
            claim = f"/v1/workers/{worker['worker_id']}/claim"
            with standby.http() as api:
                while True:
                    try:
                        if api.post(claim, json={"max_tasks": 1, "wait_s": 0}).status_code == 200:
                            return time.perf_counter() - killed
                    except httpx.TransportError:
                        pass
                    time.sleep(0.01)
        finally:
            http.stop(leader.proc)
            http.stop(standby.proc)


def measure(quick: bool, runs: int) -> list[Figure]:
    from tests import _postgres

    figures: list[Figure] = []
    with _postgres.cluster(durable=True) as cluster:
        for name, fn in _figures(quick, runs).items():
            on_sqlite = statistics.median(fn() for _ in range(runs))
            with _on_postgres(cluster):
                on_pg = statistics.median(fn() for _ in range(runs))
            unit = name.rsplit("(", 1)[1].rstrip(")")
            figures.append(
                Figure(
                    f"PostgreSQL: {name.rsplit(' (', 1)[0]}",
                    on_pg,
                    unit,
                    "reported beside SQLite",
                    "-",
                    f"SQLite: {on_sqlite:,.0f} {unit}"
                    if on_sqlite >= 100
                    else f"SQLite: {on_sqlite:.3g} {unit}",
                )
            )
        times = [failover_s(cluster, 3.0) for _ in range(runs)]
    took = statistics.median(times)
    figures.append(
        Figure(
            "failover: kill -9 of the leader until a standby serves claims (lease 3 s)",
            took,
            "s",
            "<= 5 s",
            "yes" if took <= 5 else "no",
            "runs: " + ", ".join(f"{t:.2f}" for t in times),
        )
    )
    return figures
