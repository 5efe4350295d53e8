"""Log growth of a cluster that sits idle, and of one that is busy (issue 19.4): events
written per worker-hour.

    .venv/bin/python -m bench --only loggrowth

An hour on an injected clock, through a real Service on a real database: idle workers
heartbeat with nothing running and re-poll their claim (as `kickoff worker` does, every
25 s); busy workers heartbeat with a long task running. Beats come at the interval the
server suggests (5 s at the default 30 s timeout), lease expiry runs after every beat.
Only the clock is simulated: the figure is the events the server's rules record.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.core import Figure
from kickoff import defaults
from kickoff.service import Service
from kickoff.state.decide import NewTask

WORKERS = 4  # of each kind
HOUR_S = 3600


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def _hour(db: Path) -> dict[str, float]:
    """Events per worker-hour, by kind of worker ("idle", "busy")."""
    clock = _Clock()
    service = Service(db, clock=clock, expire_every_s=HOUR_S)
    await service.start()
    try:
        kinds: dict[str, str] = {}
        for kind in ("idle", "busy"):
            for n in range(WORKERS):
                tags = frozenset({kind})
                worker = await service.register(name=f"{kind}{n}", tags=tags, slots=1)
                kinds[worker] = kind
        busy = [w for w, k in kinds.items() if k == "busy"]
        await service.submit([NewTask(command="sleep 7200", require=frozenset({"busy"}))] * WORKERS)
        running = {}
        for worker in busy:
            (task,) = await service.claim(worker, max_tasks=1, wait_s=0)
            running[worker] = [(task.task_id, task.attempt)]
        first = service.last_seq
        interval = min(defaults.HEARTBEAT_INTERVAL_S, service.heartbeat_timeout_s / 3)
        polls = round(defaults.WORKER_CLAIM_WAIT_S / interval)
        for beat in range(round(HOUR_S / interval)):
            clock.now += timedelta(seconds=interval)
            beats = [service.heartbeat(w, running.get(w, [])) for w in kinds]
            await asyncio.gather(*beats)
            if beat % polls == 0:  # an idle worker's long-poll ends empty and comes again
                for worker, kind in kinds.items():
                    if kind == "idle":
                        assert await service.claim(worker, max_tasks=1, wait_s=0) == []
            assert await service.expire() == 0
        rows = await service.query(service.recorder.select(after_seq=first, limit=10**7))
        written = Counter(kinds[r.worker_id] for r in rows if r.worker_id in kinds)
        return {kind: written[kind] / WORKERS for kind in ("idle", "busy")}
    finally:
        await service.stop()


def per_worker_hour() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_hour(Path(tmp) / "hour.db"))


def measure(quick: bool, runs: int) -> list[Figure]:
    hour = per_worker_hour()  # deterministic: one run
    return [
        Figure(
            "log growth of an idle worker (heartbeats, claim re-polls)",
            hour["idle"],
            "events/worker-hour",
            "<= 120 events/worker-hour",
            "yes" if hour["idle"] <= 120 else "no",
            "an hour on an injected clock, real Service and database; 720 before (issue 19.4)",
        ),
        Figure(
            "log growth of a busy worker (one long task running)",
            hour["busy"],
            "events/worker-hour",
            "(reported)",
            "-",
            "every heartbeat of a worker running tasks is an event; a drain adds 2 per task",
        ),
    ]
