"""A real log, written by a real Service with an injected clock, and what it knew on the way.

The scenario covers every event type: claims, heartbeats, a lost worker and a requeue, a
success, a failure, a cancel while running, a cancel while pending, a tag change, a clean
stop and a restart. After each request the test records the live State's snapshot and
the projections' rows, keyed by the last seq, so replays can be compared with them.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kickoff.service import Service
from kickoff.state.decide import Completion, NewTask

TABLES = (
    ("tasks", "id"),
    ("workers", "id"),
    ("task_counts", "state"),
    ("groups", "id"),
    ("projection_state", "name"),
)
START = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def projection_rows(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {t: conn.execute(f"SELECT * FROM {t} ORDER BY {k}").fetchall() for t, k in TABLES}


@dataclass
class Scenario:
    path: Path
    ids: dict[str, int] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)
    seen: dict[int, tuple[dict[str, Any], dict[str, list[tuple[Any, ...]]]]] = field(
        default_factory=dict
    )

    def copy(self, to: Path) -> Path:
        target = to / "copy.db"
        shutil.copy(self.path, target)
        return target


class _Run:
    def __init__(self, path: Path, start: datetime) -> None:
        self.path = path
        self.now = [start]
        self.scenario = Scenario(path)
        self.service = self._service()
        self.reader: sqlite3.Connection | None = None

    def _service(self) -> Service:
        return Service(
            self.path, clock=lambda: self.now[0], heartbeat_timeout_s=30, expire_every_s=3600
        )

    def tick(self, seconds: float) -> None:
        self.now[0] += timedelta(seconds=seconds)

    def record(self) -> None:
        assert self.reader is not None
        self.scenario.seen[self.service.last_seq] = (
            self.service.state.snapshot(),
            projection_rows(self.reader),
        )

    async def beat(self, worker: str, running: list[tuple[int, int]], times: int) -> list[int]:
        stop: list[int] = []
        for _ in range(times):
            self.tick(5)
            stop = await self.service.heartbeat(worker, running)
            self.record()
        return stop

    async def start(self) -> None:
        await self.service.start()
        if self.reader is None:
            self.reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        self.record()

    async def play(self) -> Scenario:
        s, sc = self.service, self.scenario
        await self.start()
        w1 = await s.register(name="alpha", tags=frozenset({"cpu"}), slots=1, host="h1")
        w2 = await s.register(name="beta", tags=frozenset({"gpu"}), slots=2, host="h2")
        self.record()
        ids = await s.submit(
            [
                NewTask(command="echo one", require=frozenset({"cpu"})),
                NewTask(
                    command="./train.sh",
                    require=frozenset({"gpu"}),
                    want=frozenset({"big"}),
                    priority=5,
                    timeout_s=60,
                ),
                NewTask(command="sleep 100", max_attempts=1),
                NewTask(
                    command="echo keyed", require=frozenset({"nowhere"}), idempotency_key="k-1"
                ),
            ],
            submitted_by="127.0.0.1",
        )
        sc.ids = {"lost": ids[0], "fails": ids[1], "cancelled": ids[2], "pending": ids[3]}
        self.record()
        self.tick(1)
        (claim,) = await s.claim(w1, max_tasks=1, wait_s=0)
        self.record()
        for _ in range(12):
            await self.beat(w1, [(claim.task_id, claim.attempt)], 1)
            await s.heartbeat(w2, [])
            self.record()
        self.tick(20)
        await s.heartbeat(w2, [])
        self.tick(11)
        await s.expire()  # w1 lost (w2 was heard from): its task is requeued for attempt 2
        self.record()
        w3 = await s.register(name="gamma", tags=frozenset({"cpu"}), slots=1)
        self.record()
        self.tick(2)
        (again,) = await s.claim(w3, max_tasks=1, wait_s=0)
        self.record()
        await self.beat(w3, [(again.task_id, again.attempt)], 3)
        two = await s.claim(w2, max_tasks=2, wait_s=0)
        self.record()
        running = [(c.task_id, c.attempt) for c in two]
        await self.beat(w2, running, 2)
        await s.cancel(sc.ids["cancelled"], requested_by="127.0.0.1")
        self.record()
        assert await self.beat(w2, running, 1) == [sc.ids["cancelled"]]
        await s.complete(
            Completion(
                task_id=sc.ids["cancelled"],
                worker_id=w2,
                attempt=1,
                exit_code=-15,
                duration_s=20.0,
                output_tail="killed\n",
                cancelled=True,
            )
        )
        self.record()
        self.tick(3)
        await s.complete(
            Completion(
                task_id=again.task_id,
                worker_id=w3,
                attempt=2,
                exit_code=0,
                duration_s=17.5,
                output_tail="one\nall done\n",
            )
        )
        self.record()
        await s.complete(
            Completion(
                task_id=sc.ids["fails"],
                worker_id=w2,
                attempt=1,
                exit_code=3,
                duration_s=31.0,
                output_tail="Traceback\n",
            )
        )
        self.record()
        await s.change_tags(w3, add=frozenset({"gpu"}))
        self.record()
        (doomed,) = await s.submit([NewTask(command="never")])
        await s.cancel(doomed)
        sc.ids["never"] = doomed
        self.record()
        await s.stop_worker(w2)
        self.record()
        await self.beat(w3, [], 4)
        await s.stop()
        self.tick(60)
        self.service = self._service()  # a restart: ServerStarted, leases start afresh
        await self.start()
        self.tick(1)
        (sleeper,) = await self.service.submit([NewTask(command="sleep 1000")])
        sc.ids["running"] = sleeper
        (started,) = await self.service.claim(w3, max_tasks=1, wait_s=0)
        self.record()
        await self.beat(w3, [(started.task_id, started.attempt)], 2)
        await self.service.stop()
        if self.reader is not None:
            self.reader.close()
        closing = sqlite3.connect(self.path)  # the last connection: the WAL goes into the file
        closing.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        closing.close()
        sc.workers = {"w1": w1, "w2": w2, "w3": w3}
        return sc


def play(path: Path, *, start: datetime = START) -> Scenario:
    """Run the scenario on a new database; its clock starts at `start`."""
    return asyncio.run(_Run(path, start).play())


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """The scenario's database (shared: copy it before changing it)."""
    return play(tmp_path_factory.mktemp("scenario") / "kickoff.db")
