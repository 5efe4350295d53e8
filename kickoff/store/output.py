"""Task output, kept outside the event log: `<db>.output`, a SQLite file of its own beside
the database (its own lock and WAL: a task writing fast never holds up the log's writer).

Each attempt's bytes are chunks in `output_chunks` at their byte offset; `output_attempts`
has, per attempt, the bytes kept (`size`, at most the cap) and the bytes its task wrote as
far as the worker said (`total`: what is over the cap was dropped, and counted). Offsets
make an append idempotent: a chunk sent again (its answer was lost) is kept once.
Retention: past a budget of bytes for all output, the oldest tasks' output goes first.
Not thread-safe: one thread uses one `OutputFile` (kickoff/service/output.py's).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kickoff.dblocation import Location, beside
from kickoff.errors import Conflict, DatabaseRefused
from kickoff.store.connection import explain

APPLICATION_ID = 0x4B4F5554  # "KOUT": a kickoff output file
VERSION = 1

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS output_attempts (
        task_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        size INTEGER NOT NULL,
        total INTEGER NOT NULL,
        PRIMARY KEY (task_id, attempt)
    ) STRICT, WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS output_chunks (
        task_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        start INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (task_id, attempt, start)
    ) STRICT""",
)
SELECT_ATTEMPT = "SELECT size, total FROM output_attempts WHERE task_id = ? AND attempt = ?"
UPSERT_ATTEMPT = """INSERT INTO output_attempts (task_id, attempt, size, total)
    VALUES (?, ?, ?, ?)
    ON CONFLICT (task_id, attempt) DO UPDATE SET size = excluded.size, total = excluded.total"""
INSERT_CHUNK = "INSERT INTO output_chunks (task_id, attempt, start, data) VALUES (?, ?, ?, ?)"
# The chunks that overlap [offset, offset + limit): the one holding offset, and those after.
SELECT_CHUNKS = """SELECT start, data FROM output_chunks
    WHERE task_id = ? AND attempt = ? AND start >= (
        SELECT coalesce(max(start), 0) FROM output_chunks
        WHERE task_id = ? AND attempt = ? AND start <= ?)
      AND start < ?
    ORDER BY start"""
SELECT_KEPT = "SELECT coalesce(sum(size), 0) FROM output_attempts"
SELECT_OLDEST = """SELECT task_id, sum(size) FROM output_attempts
    GROUP BY task_id ORDER BY task_id LIMIT ? OFFSET ?"""
DELETE_CHUNKS = "DELETE FROM output_chunks WHERE task_id = ?"
DELETE_ATTEMPTS = "DELETE FROM output_attempts WHERE task_id = ?"


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """What is kept of one attempt's output: `size` bytes from offset 0; `total` bytes
    written by the task as far as known (`total - size` were dropped at the cap)."""

    size: int = 0
    total: int = 0

    @property
    def dropped(self) -> int:
        return self.total - self.size


def output_path(db_path: Location | str) -> Path:
    """Where a database's task output is kept: beside it (for PostgreSQL, in this
    machine's data directory: dblocation.beside)."""
    return beside(db_path, ".output")


class OutputFile:
    """One output file, opened (made if missing) for reading and writing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # task output may hold secrets: the owner's alone, as the token file is
            # (SQLite gives its WAL the same permissions); beside a database on
            # PostgreSQL, the data directory may not be there yet
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._prepare()
        except sqlite3.Error as exc:
            raise DatabaseRefused(f"{path}: {explain(exc)}") from exc
        except OSError as exc:
            raise DatabaseRefused(f"cannot open {path}: {exc.strerror}") from exc
        self.kept = self.conn.execute(SELECT_KEPT).fetchone()[0]  # bytes, all tasks

    def _prepare(self) -> None:
        conn = self.conn
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if tables and app_id != APPLICATION_ID:
            raise DatabaseRefused(f"{self.path} is not a kickoff output file; move it away")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > VERSION:
            raise DatabaseRefused(f"{self.path} was written by a newer kickoff (v{version})")
        conn.execute("PRAGMA journal_mode = WAL")
        # Output survives the server's process ending at any point (a commit is in the
        # OS's hands); a power cut may lose the last commits' worth, as the file says.
        conn.execute("PRAGMA synchronous = NORMAL")
        if not tables:
            with conn:
                conn.execute("BEGIN")
                for statement in SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {VERSION}")

    def stored(self, task_id: int, attempt: int) -> Stored:
        row = self.conn.execute(SELECT_ATTEMPT, (task_id, attempt)).fetchone()
        return Stored() if row is None else Stored(size=row[0], total=row[1])

    def append(self, task_id: int, attempt: int, offset: int, data: bytes, *, cap: int) -> Stored:
        """Keep the bytes of `data` (written by the task at `offset`) that are new and
        under the cap; count the rest.

        Raises:
            Conflict: offset is past what is stored (bytes before it never arrived); the
                message names the offset to send from.
        """
        before = self.stored(task_id, attempt)
        # (once capped, nothing more is kept: a worker then only says how far it got)
        if offset > before.total and before.size < cap:
            raise Conflict(
                f"output of task {task_id} attempt {attempt}: offset {offset} is past the "
                f"{before.total} bytes received; send from {before.total}"
            )
        fresh = data[max(0, before.total - offset) :]
        keep = fresh[: max(0, cap - before.size)]
        total = max(before.total, offset + len(data))
        after = Stored(size=before.size + len(keep), total=total)
        if after == before:
            return before
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if keep:
                conn.execute(INSERT_CHUNK, (task_id, attempt, before.size, keep))
            conn.execute(UPSERT_ATTEMPT, (task_id, attempt, after.size, after.total))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.kept += len(keep)
        return after

    def read(self, task_id: int, attempt: int, offset: int, limit: int) -> bytes:
        """Up to `limit` kept bytes from `offset` on."""
        end = offset + limit
        rows = self.conn.execute(
            SELECT_CHUNKS, (task_id, attempt, task_id, attempt, offset, end)
        ).fetchall()
        parts = []
        for start, data in rows:
            parts.append(data[max(0, offset - start) : max(0, end - start)])
        return b"".join(parts)

    def prune(self, budget: int, *, keep: Callable[[int], bool] = lambda task_id: False) -> int:
        """Delete the output of the oldest tasks (lowest ids) but those `keep` names (the
        running ones) until all output fits in `budget` bytes; returns how many tasks
        lost theirs."""
        deleted = 0
        skipped = 0
        while self.kept > budget:
            rows = self.conn.execute(SELECT_OLDEST, (64, skipped)).fetchall()
            if not rows:
                break
            oldest = [(task_id, size) for task_id, size in rows if not keep(task_id)]
            skipped += len(rows) - len(oldest)
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for task_id, size in oldest:
                    if self.kept <= budget:
                        break
                    self.conn.execute(DELETE_CHUNKS, (task_id,))
                    self.conn.execute(DELETE_ATTEMPTS, (task_id,))
                    self.kept -= size
                    deleted += 1
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return deleted

    def close(self) -> None:
        self.conn.close()
