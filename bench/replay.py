"""Replay speed: `kickoff replay` on a generated 1,000,000-event log.

    .venv/bin/python bench/replay.py [--events N] [--keep PATH]

Generates a realistic log (10 workers; tasks submitted in batches, claimed, heart-beaten
and completed; the last few thousand still pending) with Database.write in big batches,
then times the real `kickoff replay --db PATH --json` (a subprocess: start-up, read,
decode, fold and point-in-time projections) and prints the time and events/s.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kickoff.database import Database
from kickoff.events import model as ev
from kickoff.store.chain import Recorded

WORKERS = 10
TASKS_PER_ROUND = 1_000
WRITE_BATCH = 50_000


def _events(total: int) -> Iterator[ev.Event]:
    """Register workers, then rounds of submit / claim / heartbeat / complete."""
    yield ev.ServerStarted(version="bench", heartbeat_timeout_s=30.0)
    workers = [f"w{i}" for i in range(1, WORKERS + 1)]
    for i, worker in enumerate(workers, 1):
        yield ev.WorkerRegistered(worker_id=worker, name=f"bench-{i}", tags=frozenset({"cpu"}))
    produced, task_id = 1 + WORKERS, 0
    while True:
        first = task_id + 1
        for _ in range(TASKS_PER_ROUND):
            task_id += 1
            yield ev.TaskSubmitted(
                task_id=task_id,
                command=f"./job.sh {task_id}",
                require=frozenset({"cpu"}),
                submitted_by="127.0.0.1",
            )
        produced += TASKS_PER_ROUND
        if produced + 5 * TASKS_PER_ROUND > total:  # leave the last round pending
            break
        for tid in range(first, task_id + 1):
            worker = workers[tid % WORKERS]
            yield ev.TaskClaimed(task_id=tid, worker_id=worker, attempt=1)
            yield ev.WorkerHeartbeat(worker_id=worker, running=((tid, 1),))
            yield ev.WorkerHeartbeat(worker_id=worker, running=((tid, 1),))
            yield ev.TaskCompleted(
                task_id=tid,
                worker_id=worker,
                attempt=1,
                exit_code=tid % 17 == 0,
                duration_s=0.25,
                output_tail=f"done {tid}\n",
            )
        produced += 4 * TASKS_PER_ROUND
    while produced < total:
        yield ev.WorkerHeartbeat(worker_id=workers[produced % WORKERS])
        produced += 1


def generate(path: Path, total: int) -> int:
    """Write `total` events to a new database at `path`; returns the count written."""
    db = Database(path)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    batch: list[Recorded] = []
    seq = 0
    for event in _events(total):
        seq += 1
        batch.append(Recorded(seq, start + timedelta(milliseconds=seq), event))
        if len(batch) >= WRITE_BATCH:
            db.write(batch)
            batch = []
    db.write(batch)
    db.close()
    return seq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="write the log here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.db"
        if not path.exists():
            began = time.perf_counter()
            n = generate(path, args.events)
            print(f"generated {n:,} events in {time.perf_counter() - began:.1f}s ({path})")
        with contextlib.closing(sqlite3.connect(path)) as conn:
            n, beats = conn.execute(
                "SELECT count(*), sum(type = 'WorkerHeartbeat') FROM events"
            ).fetchone()
        command = [sys.executable, "-m", "kickoff", "replay", "--db", str(path), "--json"]
        began = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        took = time.perf_counter() - began
        print(
            f"kickoff replay: {n:,} events ({beats:,} heartbeats) in {took:.2f}s "
            f"= {n / took:,.0f} events/s (no goal in SPEC.md)"
        )


if __name__ == "__main__":
    main()
