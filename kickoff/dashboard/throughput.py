"""The throughput chart's numbers: tasks finished per second over the last hour.

Counted in memory from the live log, from the first time a dashboard asks (a server that
nobody watches pays nothing). The past is filled once from the log's last
THROUGHPUT_SEED_EVENTS rows, read by seq (the primary key), so a busy log costs a bounded
read; `since` says from when the counts are complete. A counter that falls behind the
live rows catches up from the log by seq, as an event stream does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from kickoff import defaults
from kickoff.clock import from_text, to_text
from kickoff.projections.queries import Query
from kickoff.service import Service
from kickoff.store.chain import Row
from kickoff.store.recorder import Recorder

logger = logging.getLogger(__name__)

FINISHED = ("TaskCompleted", "TaskCancelled", "TaskFailed")
PAGE = 10_000


def _finished(recorder: Recorder, after_seq: int, until_seq: int) -> Query:
    """(seq, time) of finishing events in a range of seqs: bounded by the range (the log's
    primary key), whatever the log holds."""
    rows = recorder.select(after_seq=after_seq, until_seq=until_seq, types=FINISHED, limit=PAGE)
    return Query(rows.sql, rows.params, lambda found: [(r.seq, r.at) for r in rows.shape(found)])


def _first_at(recorder: Recorder, after_seq: int) -> Query:
    rows = recorder.select(after_seq=after_seq, limit=1)
    return Query(rows.sql, rows.params, lambda found: next((r.at for r in rows.shape(found)), None))


class Throughput:
    """Finished tasks per second (see the module docstring)."""

    def __init__(self, service: Service, *, window_s: int = defaults.THROUGHPUT_WINDOW_S) -> None:
        self.service = service
        self.window_s = window_s
        self.per_second: Counter[str] = Counter()  # "YYYY-MM-DDTHH:MM:SS" -> finished
        self.since: str | None = None  # counts are complete from this time on
        self.counted_seq = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def _read_log(self, until_seq: int) -> None:
        """Count the finished tasks of the log's rows after counted_seq, up to until_seq."""
        while True:
            rows = await self.service.query(
                _finished(self.service.recorder, self.counted_seq, until_seq)
            )
            for seq, at in rows:
                self.counted_seq = seq
                self.per_second[at[:19]] += 1
            if len(rows) < PAGE:
                break
        self.counted_seq = max(self.counted_seq, until_seq)

    def _count_live(self, rows: list[Row]) -> None:
        for row in rows:
            if row.seq > self.counted_seq:
                self.counted_seq = row.seq
                if row.type in FINISHED:
                    self.per_second[row.at[:19]] += 1

    async def _follow(self) -> None:
        with self.service.subscribers.subscribe() as live:
            last = self.service.last_seq
            self.counted_seq = max(0, last - defaults.THROUGHPUT_SEED_EVENTS)
            self.since = await self.service.query(
                _first_at(self.service.recorder, self.counted_seq)
            )
            await self._read_log(last)
            self._ready.set()
            while not live.ended:
                if live.behind:
                    live.resume()
                    await self._read_log(self.service.last_seq)
                self._count_live(live.take())
                await live.wait(defaults.STREAM_KEEP_ALIVE_S)

    async def start(self) -> None:
        """Start counting (once), and wait until the past is filled in."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())
            self._task.add_done_callback(self._done)
        await self._ready.wait()

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("throughput counter stopped: %r", task.exception())
        self._task = None
        self._ready.clear()

    def _prune(self, oldest: str) -> None:
        for key in [k for k in self.per_second if k < oldest]:
            del self.per_second[key]

    async def series(self, *, step_s: int, span_s: int) -> dict[str, Any]:
        """Finished tasks in each `step_s` interval of the last `span_s` seconds, oldest first."""
        await self.start()
        now = self.service.clock()
        end = now.replace(microsecond=0) + timedelta(seconds=1)
        start = end - timedelta(seconds=span_s)
        start -= timedelta(seconds=int(start.timestamp()) % step_s)
        self._prune(to_text(end - timedelta(seconds=self.window_s))[:19])
        buckets = [0] * ((int((end - start).total_seconds()) + step_s - 1) // step_s)
        for key, n in self.per_second.items():
            offset = (_parse(key) - start).total_seconds()
            if 0 <= offset < len(buckets) * step_s:
                buckets[int(offset // step_s)] += n
        return {
            "start": to_text(start),
            "step_s": step_s,
            "finished": buckets,
            "since": self.since,
            "now": to_text(now),
        }


def _parse(key: str) -> datetime:
    return from_text(key + "Z")
