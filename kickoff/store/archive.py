"""A compaction archive: an SQLite file holding rows moved out of the log, hashes intact.

`Archiver` moves chosen rows in two steps per chunk: copy them into the archive and commit
there; then, in one transaction on the log, check the archive holds exactly those rows,
record the compaction and its runs, and delete them (the log's DELETE trigger lets through
only heartbeats a recorded run covers). Which rows to move is audit/compact.py's choice.
`CopyArchiver` does the same for a log on PostgreSQL, through a connection of its own to
the archive. `open_archive` and `archived_rows` read an archive back for verify.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from kickoff.clock import to_text
from kickoff.errors import DatabaseRefused, InvalidInput
from kickoff.store.chain import Row
from kickoff.store.connection import SQLITE_MAGIC
from kickoff.store.query import Connection
from kickoff.store.schema import EVENTS_COLUMNS
from kickoff.store.sqlite import COLUMNS, row_of

ARCHIVE_APPLICATION_ID = 0x4B415243  # "KARC": a kickoff archive, never a live database
ARCHIVE_VERSION = 1

ARCHIVE_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS arch.events {EVENTS_COLUMNS}",
    "CREATE TABLE IF NOT EXISTS arch.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",
    "CREATE TRIGGER IF NOT EXISTS arch.events_no_update BEFORE UPDATE ON events "
    "BEGIN SELECT RAISE(ABORT, 'kickoff: the archive is append-only (UPDATE refused)'); END",
    "CREATE TRIGGER IF NOT EXISTS arch.events_no_delete BEFORE DELETE ON events "
    "BEGIN SELECT RAISE(ABORT, 'kickoff: the archive is append-only (DELETE refused)'); END",
)
COPY_TO_ARCHIVE = (
    f"INSERT OR IGNORE INTO arch.events SELECT {', '.join('e.' + c for c in COLUMNS.split(', '))} "
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
INSERT_NEXT_COMPACTION = (  # the id spelled out: PostgreSQL's INTEGER key numbers nothing
    "INSERT INTO compactions (id, at, before_seq, first_seq, last_seq, count, digest, archive) "
    "VALUES ((SELECT coalesce(max(id), 0) + 1 FROM compactions), ?, ?, ?, ?, ?, ?, ?) "
    "RETURNING id"
)
INSERT_RUN = (
    "INSERT INTO compacted_runs (first_seq, last_seq, last_hash, compaction_id) VALUES (?, ?, ?, ?)"
)
ARCHIVED_ROWS = f"SELECT {COLUMNS} FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq"


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


class Archiver:
    """Moves heartbeat rows of one log into one archive file (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, archive: Path, log_id: bytes) -> None:
        """Attach (creating if new) the archive.

        Raises:
            InvalidInput: another program's file, or the archive of another database (each
                archive names the hash of its log's first event).
        """
        self.conn, self.archive = conn, archive
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS chosen (seq INTEGER PRIMARY KEY)")
        _check_archive_file(archive)
        conn.execute("ATTACH DATABASE ? AS arch", (str(archive),))
        app_id = conn.execute("PRAGMA arch.application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM arch.sqlite_master").fetchone()[0]
        if tables and app_id != ARCHIVE_APPLICATION_ID:
            raise InvalidInput(f"{archive} is not a kickoff archive; choose another --archive file")
        conn.execute("PRAGMA arch.synchronous = FULL")
        conn.execute("BEGIN")
        for statement in ARCHIVE_SCHEMA:
            conn.execute(statement)
        meta = "INSERT OR IGNORE INTO arch.meta (key, value) VALUES (?, ?)"
        conn.execute(meta, ("log_id", log_id.hex()))
        conn.execute(meta, ("kind", "kickoff archive"))
        conn.execute(f"PRAGMA arch.application_id = {ARCHIVE_APPLICATION_ID}")
        conn.execute(f"PRAGMA arch.user_version = {ARCHIVE_VERSION}")
        conn.execute("COMMIT")
        stored = conn.execute("SELECT value FROM arch.meta WHERE key = 'log_id'").fetchone()[0]
        if stored != log_id.hex():
            raise InvalidInput(f"{archive} is the archive of another kickoff database")

    def move(self, chosen: list[int], *, before_seq: int, now: datetime) -> None:
        """Copy the chosen heartbeats into the archive (durable there), then check, record
        and delete them in one transaction on the log.

        Raises:
            DatabaseRefused: the archive does not hold exactly those rows (nothing removed).
        """
        self._choose(chosen, begin="BEGIN")
        self.conn.execute(COPY_TO_ARCHIVE)
        self.conn.execute("COMMIT")
        self._choose(chosen, begin="BEGIN IMMEDIATE")
        try:
            self._remove(chosen, before_seq, now)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _choose(self, chosen: list[int], *, begin: str) -> None:
        self.conn.execute(begin)
        self.conn.execute("DELETE FROM temp.chosen")
        self.conn.executemany("INSERT INTO temp.chosen (seq) VALUES (?)", [(s,) for s in chosen])

    def _remove(self, chosen: list[int], before_seq: int, now: datetime) -> None:
        same = self.conn.execute(COUNT_ARCHIVED_SAME).fetchone()[0]
        if same != len(chosen):
            raise DatabaseRefused(
                f"{self.archive} does not hold exactly the rows to remove ({same} of "
                f"{len(chosen)} match); nothing was removed"
            )
        hashes = dict(self.conn.execute(SELECT_CHOSEN_HASHES).fetchall())
        ordered = [bytes(hashes[s]) for s in chosen]
        record = (to_text(now), before_seq, chosen[0], chosen[-1], len(chosen))
        (compaction_id,) = self.conn.execute(
            INSERT_COMPACTION, (*record, digest(ordered), str(self.archive))
        ).fetchone()
        self.conn.executemany(
            INSERT_RUN,
            [(first, last, bytes(hashes[last]), compaction_id) for first, last in runs(chosen)],
        )
        # the log's DELETE trigger lets through exactly the heartbeats these runs cover
        deleted = self.conn.execute(DELETE_CHOSEN).rowcount
        if deleted != len(chosen):
            raise DatabaseRefused(f"removed {deleted} rows instead of {len(chosen)}; rolled back")


class CopyArchiver:
    """As Archiver, for a log the archive cannot be attached to (PostgreSQL): the chosen
    rows are read from the log and written into the archive through a connection of its
    own, and committed there; then, in one transaction on the log, the archive's copies
    are compared with the log's rows, the compaction recorded and the rows deleted."""

    def __init__(self, conn: Connection, archive: Path, log_id: bytes) -> None:
        """Raises: InvalidInput: another program's file, or another database's archive."""
        self.conn, self.archive = conn, archive
        _check_archive_file(archive)
        self.arch = sqlite3.connect(archive, isolation_level=None)
        try:
            _prepare(self.arch, archive, log_id)
        except BaseException:
            self.arch.close()
            raise

    def move(self, chosen: list[int], *, before_seq: int, now: datetime) -> None:
        """Raises: DatabaseRefused: the archive does not hold exactly those rows."""
        rows = self._rows(chosen)
        self.arch.execute("BEGIN")
        self.arch.executemany(
            f"INSERT OR IGNORE INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        self.arch.execute("COMMIT")
        self.conn.execute("BEGIN")
        try:
            rows = self._rows(chosen)  # as they are now, inside the transaction
            kept = archived_rows_at(self.arch, chosen)
            if (
                len(rows) != len(chosen)
                or rows != kept
                or any(r.type != "WorkerHeartbeat" for r in rows)
            ):
                raise DatabaseRefused(
                    f"{self.archive} does not hold exactly the rows to remove; nothing was removed"
                )
            hashes = {r.seq: r.hash for r in rows}
            record = (to_text(now), before_seq, chosen[0], chosen[-1], len(chosen))
            ordered = [hashes[s] for s in chosen]
            (compaction_id,) = self.conn.execute(
                INSERT_NEXT_COMPACTION, (*record, digest(ordered), str(self.archive))
            ).fetchone()
            self.conn.executemany(
                INSERT_RUN, [(a, b, hashes[b], compaction_id) for a, b in runs(chosen)]
            )
            marks = ", ".join("?" * len(chosen))
            deleted = self.conn.execute(
                f"DELETE FROM events WHERE type = 'WorkerHeartbeat' AND seq IN ({marks})", chosen
            ).rowcount
            if deleted != len(chosen):
                raise DatabaseRefused(f"removed {deleted} rows instead of {len(chosen)}")
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def _rows(self, seqs: list[int]) -> list[Row]:
        marks = ", ".join("?" * len(seqs))
        found = self.conn.execute(
            f"SELECT {COLUMNS} FROM events WHERE seq IN ({marks}) ORDER BY seq", seqs
        )
        return [row_of(r) for r in found.fetchall()]

    def close(self) -> None:
        self.arch.close()


def _prepare(conn: sqlite3.Connection, archive: Path, log_id: bytes) -> None:
    """An archive file opened on its own: Archiver's schema and checks, unattached."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if tables and app_id != ARCHIVE_APPLICATION_ID:
        raise InvalidInput(f"{archive} is not a kickoff archive; choose another --archive file")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("BEGIN")
    for statement in ARCHIVE_SCHEMA:
        conn.execute(statement.replace("arch.", ""))
    meta = "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)"
    conn.execute(meta, ("log_id", log_id.hex()))
    conn.execute(meta, ("kind", "kickoff archive"))
    conn.execute(f"PRAGMA application_id = {ARCHIVE_APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {ARCHIVE_VERSION}")
    conn.execute("COMMIT")
    stored = conn.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()[0]
    if stored != log_id.hex():
        raise InvalidInput(f"{archive} is the archive of another kickoff database")


def archived_rows_at(conn: sqlite3.Connection, seqs: list[int]) -> list[Row]:
    """An archive's rows of these seqs, in order (those it holds)."""
    found: list[Row] = []
    for start in range(0, len(seqs), 500):
        part = seqs[start : start + 500]
        sql = f"SELECT {COLUMNS} FROM events WHERE seq IN ({', '.join('?' * len(part))})"
        found.extend(row_of(r) for r in conn.execute(sql + " ORDER BY seq", part))
    return found


def _check_archive_file(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as fh:
        if fh.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise InvalidInput(f"{path} is not an SQLite file, so not a kickoff archive")


def open_archive(path: Path, log_id: bytes | None) -> sqlite3.Connection | None:
    """The archive at `path`, read-only, if it is a kickoff archive of this log; else None."""
    try:
        if not path.is_file():
            return None
        with path.open("rb") as fh:
            if fh.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                return None
        conn = sqlite3.connect(
            f"file:{quote(str(path))}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
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


def archived_rows(conn: sqlite3.Connection, first_seq: int, last_seq: int) -> list[Row] | None:
    """Rows first_seq..last_seq of an archive, or None when it does not hold them all."""
    try:
        rows = [row_of(r) for r in conn.execute(ARCHIVED_ROWS, (first_seq, last_seq))]
    except sqlite3.Error:
        return None
    if [r.seq for r in rows] != list(range(first_seq, last_seq + 1)):
        return None
    return rows
