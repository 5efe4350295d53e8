"""`kickoff migrate SRC DST`: a log copied to another database, SQLite to PostgreSQL or
back (or to the same engine). The rows go as stored, hashes kept, each checked against
the chain as it is read (and across compacted runs, whose records go too); the
projections are built beside them, all in one transaction on the destination: a failed
copy leaves it as it was. A destination that holds any event is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kickoff.database import open_connection, recorder_of
from kickoff.dblocation import Location
from kickoff.errors import DatabaseRefused
from kickoff.projections.project import project
from kickoff.store.chain import Row
from kickoff.store.query import Connection, run
from kickoff.store.sqlite import SqliteRecorder

CHUNK = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What one migrate copied."""

    events: int
    last_seq: int
    compactions: int
    seconds: float


def migrate(src: Location, dst: Location) -> Result:
    """Copy the log at `src` (read-only, one snapshot: a live server may keep writing)
    into the empty database `dst` (created if missing).

    Raises:
        DatabaseRefused: either cannot be opened, `dst` holds a log already, or a row of
            `src` does not verify (nothing is written then).
    """
    if str(src) == str(dst):
        raise DatabaseRefused(f"{src} is both the source and the destination")
    began = time.perf_counter()
    source = open_connection(src, readonly=True)
    try:
        target = open_connection(dst)
        try:
            reader, writer = recorder_of(source), recorder_of(target)
            held = run(target, writer.count())
            if held:
                raise DatabaseRefused(
                    f"{dst} already holds a log ({held:,} events): migrate copies into an "
                    "empty database only (a new file, or an empty PostgreSQL database)"
                )
            with reader.snapshot():
                events, compactions = _copy(reader, target, writer)
        finally:
            target.close()
    finally:
        source.close()
    return Result(
        events=events,
        last_seq=writer.last_seq,
        compactions=compactions,
        seconds=time.perf_counter() - began,
    )


def _copy(reader: SqliteRecorder, target: Connection, writer: SqliteRecorder) -> tuple[int, int]:
    """Every verified row, the compaction records and the projections, in one transaction."""
    target.execute("BEGIN IMMEDIATE")
    try:
        compactions = reader.compactions()
        writer.copy_compactions(compactions, reader.runs())
        events, batch = 0, []
        for row in reader.verified_rows():
            batch.append(row)
            if len(batch) >= CHUNK:
                events += _write(target, writer, batch)
                batch = []
        events += _write(target, writer, batch)
        target.execute("COMMIT")
    except BaseException:
        if target.in_transaction:
            target.execute("ROLLBACK")
        writer.reset()
        raise
    return events, len(compactions)


def _write(target: Connection, writer: SqliteRecorder, rows: list[Row]) -> int:
    writer.copy(rows)
    project(target, [row.decode() for row in rows])
    return len(rows)
