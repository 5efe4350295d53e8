"""The group-commit writer: who writes which batch, in order, one batch at a time."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

from kickoff.database import Database
from kickoff.events import model as ev
from kickoff.store.chain import Recorded, Row
from kickoff.store.writer import INLINE_MAX_RECORDS, GroupWriter
from tests.store._checks import assert_log_is_whole

AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


class Watched(Database):
    """A real database that notes which thread wrote each batch, and how many rows; a
    big batch's write waits for `release` once it has begun (`begun`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[tuple[str, int]] = []
        self.begun = threading.Event()
        self.release = threading.Event()

    def write(self, records: list[Recorded], encoded: object = None) -> list[Row]:
        if len(records) > INLINE_MAX_RECORDS:
            self.begun.set()
            self.release.wait(10)
        rows = super().write(records, encoded)  # type: ignore[arg-type]
        self.writes.append((threading.current_thread().name, len(records)))
        return rows


def tasks(first: int, n: int) -> list[Recorded]:
    return [
        Recorded(seq, AT, ev.TaskSubmitted(task_id=seq, command=f"echo {seq}"))
        for seq in range(first, first + n)
    ]


def test_small_batches_are_written_on_the_loop_big_ones_by_the_thread(db_path: Path) -> None:
    """An idle writer's small batch is committed at the end of the event loop's turn
    (no thread hand-off); what is queued in the same turn shares that commit; a big batch
    goes to the writer thread, and what is queued while it writes follows it there."""
    db = Watched(db_path)

    async def main() -> None:
        writer = GroupWriter(db)
        writer.start()
        try:
            await asyncio.gather(writer.submit(tasks(1, 3)), writer.submit(tasks(4, 2)))
            big = INLINE_MAX_RECORDS + 1
            first = writer.submit(tasks(6, big))
            await asyncio.to_thread(db.begun.wait, 10)  # the thread is writing it
            after = writer.submit(tasks(6 + big, 1))
            db.release.set()
            await asyncio.gather(first, after)
        finally:
            await writer.close()

    asyncio.run(main())
    loop_thread = threading.main_thread().name
    assert db.writes[0] == (loop_thread, 5)
    assert db.writes[1] == ("kickoff-writer", INLINE_MAX_RECORDS + 1)
    assert db.writes[2:] == [("kickoff-writer", 1)]
    assert [r.seq for r in db.recorder.rows()] == list(range(1, 8 + INLINE_MAX_RECORDS))
    assert_log_is_whole(db.conn)
    db.close()
