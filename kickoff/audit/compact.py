"""Log retention, the policy: which WorkerHeartbeat rows may leave the log for an archive.

Only heartbeats a later heartbeat of the same worker supersedes are moved, so the fold and
every projection stay the same; the compaction records keep the hash each gap chains
over, so `verify` still checks the whole chain. Moving them is store/archive.py's job;
docs/database.md tells the design in full.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kickoff.clock import to_text
from kickoff.database import open_connection, recorder_of
from kickoff.dblocation import Location
from kickoff.errors import DatabaseRefused
from kickoff.store.archive import Archiver, CopyArchiver
from kickoff.store.chain import Row
from kickoff.store.query import Connection, Query, run
from kickoff.store.recorder import Recorder
from kickoff.store.sqlite import SqliteRecorder

CHUNK = 50_000
HEARTBEAT = "WorkerHeartbeat"


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What one `compact` did."""

    before_seq: int  # events with seq < this were considered
    archived: int  # heartbeats moved to the archive
    kept: int  # heartbeats before the cut kept (each worker's latest)
    chunks: int
    archive: Path
    first_seq: int | None = None
    last_seq: int | None = None


def _one(conn: Connection, query: Query) -> Row | None:
    found: list[Row] = run(conn, query)
    return found[0] if found else None


def cut_seq(recorder: SqliteRecorder, before: int | datetime) -> int:
    """The first seq that stays: `before` itself, or the first event at or after a time;
    never past the log's last event (which always stays)."""
    tail: int = run(recorder.conn, recorder.tail())
    if isinstance(before, datetime):
        first = _one(recorder.conn, recorder.select(since=to_text(before), limit=1))
        before = tail if first is None else first.seq
    return max(0, min(before, tail))


def _choose(
    recorder: Recorder, conn: Connection, after: int, before: int, kept: set[int]
) -> list[int]:
    """The next chunk of removable heartbeat seqs after `after` (and before `before`)."""
    chosen: list[int] = []
    while len(chosen) < CHUNK:
        query = recorder.select(
            after_seq=after, until_seq=before - 1, types=[HEARTBEAT], limit=CHUNK
        )
        batch = [row.seq for row in run(conn, query)]
        if not batch:
            break
        chosen.extend(s for s in batch if s not in kept)
        after = batch[-1]
    return chosen[:CHUNK]


def compact(path: Location, *, before: int | datetime, archive: Path, now: datetime) -> Result:
    """Archive the redundant heartbeats with seq < `before` (a seq or a time).

    Each worker's latest heartbeat before the cut stays, and so does the log's last row
    (the server continues the chain from it). Per chunk the rows are copied into the
    archive and committed there first, then checked, recorded and deleted in one
    transaction on the main database (store/archive.py). Safe while a server runs: each
    chunk holds the write lock for one short transaction.

    Raises:
        DatabaseRefused: the database cannot be used, or the archive copy does not match.
        InvalidInput: the archive file is another program's or another database's.
    """
    archive = archive.resolve()
    conn = open_connection(path)
    try:
        recorder = recorder_of(conn)
        cut = cut_seq(recorder, before)
        first = _one(conn, recorder.select(limit=1))
        kept = recorder.last_of_each_worker(HEARTBEAT, before_seq=cut)
        result = Result(before_seq=cut, archived=0, kept=len(kept), chunks=0, archive=archive)
        if first is None or cut <= 1:
            return result
        archiver: Archiver | CopyArchiver
        if isinstance(conn, sqlite3.Connection):
            archiver = Archiver(conn, archive, first.hash)
        else:  # PostgreSQL: the archive is an SQLite file all the same
            archiver = CopyArchiver(conn, archive, first.hash)
        after, archived, chunks, low, high = 0, 0, 0, None, None
        try:
            while chosen := _choose(recorder, conn, after, cut, kept):
                archiver.move(chosen, before_seq=cut, now=now)
                archived, chunks, after = archived + len(chosen), chunks + 1, chosen[-1]
                low, high = chosen[0] if low is None else low, chosen[-1]
        finally:
            if isinstance(archiver, CopyArchiver):
                archiver.close()
        return Result(
            before_seq=cut,
            archived=archived,
            kept=len(kept),
            chunks=chunks,
            archive=archive,
            first_seq=low,
            last_seq=high,
        )
    except sqlite3.Error as exc:
        raise DatabaseRefused(
            f"compaction failed; nothing of the failed chunk was removed: {exc}"
        ) from exc
    finally:
        conn.close()


def vacuum(path: Location) -> None:
    """Give the freed pages back to the file system (rewrites the file; best offline).

    Raises:
        DatabaseRefused: the database cannot be used or is busy.
    """
    conn = open_connection(path)
    try:
        conn.execute("VACUUM")
    except sqlite3.Error as exc:
        raise DatabaseRefused(f"VACUUM failed: {exc}") from exc
    finally:
        conn.close()
