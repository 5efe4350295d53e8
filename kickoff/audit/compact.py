"""Log retention: old, redundant WorkerHeartbeat rows move to an archive file, hashes intact.

Only heartbeats a later heartbeat of the same worker supersedes are moved, so the fold and
every projection stay the same; `compacted_runs` keeps the hash each gap chains over, so
`verify` still checks the whole chain. docs/database.md tells the design in full.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kickoff.clock import to_text
from kickoff.errors import DatabaseRefused, InvalidInput
from kickoff.store.db import SQLITE_MAGIC, connect
from kickoff.store.schema import EVENTS_COLUMNS

ARCHIVE_APPLICATION_ID = 0x4B415243  # "KARC": a kickoff archive, never a live database
ARCHIVE_VERSION = 1
CHUNK = 50_000

ARCHIVE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS arch.events {EVENTS_COLUMNS};
CREATE TABLE IF NOT EXISTS arch.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TRIGGER IF NOT EXISTS arch.events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'kickoff: the archive is append-only (UPDATE refused)'); END;
CREATE TRIGGER IF NOT EXISTS arch.events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'kickoff: the archive is append-only (DELETE refused)'); END;
"""

SELECT_TAIL = "SELECT seq FROM events ORDER BY seq DESC LIMIT 1"
SELECT_FIRST_AT = "SELECT min(seq) FROM events WHERE at >= ?"
SELECT_LOG_ID = "SELECT hash FROM events ORDER BY seq LIMIT 1"
SELECT_KEPT = (
    "SELECT max(seq) FROM events WHERE type = 'WorkerHeartbeat' AND seq < ? GROUP BY worker_id"
)
SELECT_CANDIDATES = (
    "SELECT seq FROM events WHERE type = 'WorkerHeartbeat' AND seq > ? AND seq < ? "
    "ORDER BY seq LIMIT ?"
)
COPY_TO_ARCHIVE = (
    "INSERT OR IGNORE INTO arch.events "
    "SELECT e.seq, e.at, e.type, e.version, e.task_id, e.worker_id, e.payload, e.hash "
    "FROM main.events e JOIN temp.chosen c ON c.seq = e.seq"
)
COUNT_ARCHIVED_SAME = (
    "SELECT count(*) FROM temp.chosen c JOIN main.events e ON e.seq = c.seq "
    "JOIN arch.events a ON a.seq = c.seq WHERE a.hash = e.hash AND e.type = 'WorkerHeartbeat'"
)
SELECT_CHOSEN_HASHES = (
    "SELECT e.seq, e.hash FROM main.events e JOIN temp.chosen c ON c.seq = e.seq ORDER BY e.seq"
)
DELETE_CHOSEN = (
    "DELETE FROM main.events "
    "WHERE type = 'WorkerHeartbeat' AND seq IN (SELECT seq FROM temp.chosen)"
)
INSERT_COMPACTION = (
    "INSERT INTO compactions (at, before_seq, first_seq, last_seq, count, digest, archive) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
INSERT_RUN = (
    "INSERT INTO compacted_runs (first_seq, last_seq, last_hash, compaction_id) VALUES (?, ?, ?, ?)"
)


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


def digest(hashes: list[bytes]) -> bytes:
    """sha256 over the archived rows' hashes in seq order: ties a compaction to its rows."""
    h = hashlib.sha256()
    for item in hashes:
        h.update(item)
    return h.digest()


def runs(seqs: list[int]) -> Iterator[tuple[int, int]]:
    """Maximal runs of consecutive integers in a sorted list: [1,2,3,7,8] -> (1,3), (7,8)."""
    start = prev = None
    for seq in seqs:
        if prev is not None and seq == prev + 1:
            prev = seq
            continue
        if start is not None and prev is not None:
            yield start, prev
        start = prev = seq
    if start is not None and prev is not None:
        yield start, prev


def has_compactions(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'compacted_runs'"
    ).fetchone()
    return bool(row[0])


def cut_seq(conn: sqlite3.Connection, before: int | datetime) -> int:
    """The first seq that stays: `before` itself, or the first event at or after a time;
    never past the log's last event (which always stays)."""
    tail_row = conn.execute(SELECT_TAIL).fetchone()
    tail = tail_row[0] if tail_row else 0
    if isinstance(before, datetime):
        first = conn.execute(SELECT_FIRST_AT, (to_text(before),)).fetchone()[0]
        before = tail if first is None else first
    return max(0, min(before, tail))


def _check_archive_file(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as fh:
        if fh.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise InvalidInput(f"{path} is not an SQLite file, so not a kickoff archive")


def _attach_archive(conn: sqlite3.Connection, path: Path, log_id: str) -> None:
    """Attach (creating if new) the archive; refuse another program's file or another
    database's archive (each archive names the hash of its log's first event)."""
    _check_archive_file(path)
    conn.execute("ATTACH DATABASE ? AS arch", (str(path),))
    app_id = conn.execute("PRAGMA arch.application_id").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM arch.sqlite_master").fetchone()[0]
    if tables and app_id != ARCHIVE_APPLICATION_ID:
        raise InvalidInput(f"{path} is not a kickoff archive; choose another --archive file")
    conn.execute("PRAGMA arch.synchronous = FULL")
    conn.execute("BEGIN")
    for statement in _statements(ARCHIVE_SCHEMA):
        conn.execute(statement)
    conn.execute("INSERT OR IGNORE INTO arch.meta (key, value) VALUES ('log_id', ?)", (log_id,))
    conn.execute("INSERT OR IGNORE INTO arch.meta (key, value) VALUES ('kind', 'kickoff archive')")
    conn.execute(f"PRAGMA arch.application_id = {ARCHIVE_APPLICATION_ID}")
    conn.execute(f"PRAGMA arch.user_version = {ARCHIVE_VERSION}")
    conn.execute("COMMIT")
    stored = conn.execute("SELECT value FROM arch.meta WHERE key = 'log_id'").fetchone()[0]
    if stored != log_id:
        raise InvalidInput(f"{path} is the archive of another kickoff database")


def _statements(script: str) -> Iterator[str]:
    """A schema script's statements (triggers hold `;` inside BEGIN ... END)."""
    buffer: list[str] = []
    for line in script.strip().splitlines():
        buffer.append(line)
        text = "\n".join(buffer)
        if text.rstrip().endswith(";") and (
            "CREATE TRIGGER" not in text or text.rstrip().endswith("END;")
        ):
            yield text
            buffer = []


def _choose(conn: sqlite3.Connection, after: int, before: int, kept: set[int]) -> list[int]:
    """The next chunk of removable heartbeat seqs after `after`."""
    chosen: list[int] = []
    while len(chosen) < CHUNK:
        batch = [r[0] for r in conn.execute(SELECT_CANDIDATES, (after, before, CHUNK))]
        if not batch:
            break
        chosen.extend(s for s in batch if s not in kept)
        after = batch[-1]
    return chosen[:CHUNK]


def _copy(conn: sqlite3.Connection, chosen: list[int]) -> None:
    """Copy the chosen rows into the archive and make them durable there."""
    conn.execute("BEGIN")
    conn.execute("DELETE FROM temp.chosen")
    conn.executemany("INSERT INTO temp.chosen (seq) VALUES (?)", [(s,) for s in chosen])
    conn.execute(COPY_TO_ARCHIVE)
    conn.execute("COMMIT")


def _remove(
    conn: sqlite3.Connection, chosen: list[int], before: int, archive: Path, now: datetime
) -> None:
    """In one transaction: check the archive copy, record the runs, delete the rows."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM temp.chosen")
        conn.executemany("INSERT INTO temp.chosen (seq) VALUES (?)", [(s,) for s in chosen])
        same = conn.execute(COUNT_ARCHIVED_SAME).fetchone()[0]
        if same != len(chosen):
            raise DatabaseRefused(
                f"{archive} does not hold exactly the rows to remove ({same} of {len(chosen)} "
                "match); nothing was removed"
            )
        hashes = dict(conn.execute(SELECT_CHOSEN_HASHES).fetchall())
        ordered = [bytes(hashes[s]) for s in chosen]
        (compaction_id,) = conn.execute(
            INSERT_COMPACTION,
            (
                to_text(now),
                before,
                chosen[0],
                chosen[-1],
                len(chosen),
                digest(ordered),
                str(archive),
            ),
        ).fetchone()
        conn.executemany(
            INSERT_RUN,
            [(first, last, bytes(hashes[last]), compaction_id) for first, last in runs(chosen)],
        )
        # the log's DELETE trigger lets through exactly the heartbeats these runs cover
        deleted = conn.execute(DELETE_CHOSEN).rowcount
        if deleted != len(chosen):
            raise DatabaseRefused(f"removed {deleted} rows instead of {len(chosen)}; rolled back")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def compact(path: Path, *, before: int | datetime, archive: Path, now: datetime) -> Result:
    """Archive the redundant heartbeats with seq < `before` (a seq or a time).

    Each worker's latest heartbeat before the cut stays, and so does the log's last row
    (the server continues the chain from it). Per chunk: the rows are copied into the
    archive and committed there first (`_copy`), then checked, deleted and recorded in one
    transaction on the main database (`_remove`). Safe while a server runs: each chunk
    holds the write lock for one short transaction.

    Raises:
        DatabaseRefused: the database cannot be used, or the archive copy does not match.
        InvalidInput: the archive file is another program's or another database's.
    """
    archive = archive.resolve()
    conn = connect(path)
    try:
        cut = cut_seq(conn, before)
        first = conn.execute(SELECT_LOG_ID).fetchone()
        kept = {r[0] for r in conn.execute(SELECT_KEPT, (cut,))}
        result = Result(before_seq=cut, archived=0, kept=len(kept), chunks=0, archive=archive)
        if first is None or cut <= 1:
            return result
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS chosen (seq INTEGER PRIMARY KEY)")
        _attach_archive(conn, archive, bytes(first[0]).hex())
        after, archived, chunks, low, high = 0, 0, 0, None, None
        while chosen := _choose(conn, after, cut, kept):
            _copy(conn, chosen)
            _remove(conn, chosen, cut, archive, now)
            archived, chunks, after = archived + len(chosen), chunks + 1, chosen[-1]
            low, high = chosen[0] if low is None else low, chosen[-1]
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


def vacuum(path: Path) -> None:
    """Give the freed pages back to the file system (rewrites the file; best offline).

    Raises:
        DatabaseRefused: the database cannot be used or is busy.
    """
    conn = connect(path)
    try:
        conn.execute("VACUUM")
    except sqlite3.Error as exc:
        raise DatabaseRefused(f"VACUUM failed: {exc}") from exc
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive seqs a compaction removed; the next kept row chains to `last_hash`."""

    first_seq: int
    last_seq: int
    last_hash: bytes
    compaction_id: int


@dataclass(frozen=True, slots=True)
class Record:
    """One row of the `compactions` table."""

    id: int
    at: str
    first_seq: int
    last_seq: int
    count: int
    digest: bytes
    archive: str


def read_runs(conn: sqlite3.Connection) -> list[Run]:
    """Every compacted run, in seq order (none when the database was never compacted)."""
    if not has_compactions(conn):
        return []
    rows = conn.execute(
        "SELECT first_seq, last_seq, last_hash, compaction_id FROM compacted_runs "
        "ORDER BY first_seq"
    )
    return [Run(r[0], r[1], bytes(r[2]), r[3]) for r in rows]


def read_records(conn: sqlite3.Connection) -> list[Record]:
    if not has_compactions(conn):
        return []
    rows = conn.execute(
        "SELECT id, at, first_seq, last_seq, count, digest, archive FROM compactions ORDER BY id"
    )
    return [Record(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) for r in rows]


def open_archive(path: Path, log_id: bytes | None) -> sqlite3.Connection | None:
    """The archive at `path`, read-only, if it is a kickoff archive of this log; else None."""
    try:
        if not path.is_file():
            return None
        with path.open("rb") as fh:
            if fh.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                return None
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error):
        return None
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        row = conn.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()
        if app_id == ARCHIVE_APPLICATION_ID and row and (log_id is None or row[0] == log_id.hex()):
            return conn
    except sqlite3.Error:
        pass
    conn.close()
    return None
