"""Opening a kickoff database: pragmas, schema, version checks, the log's triggers.

A kickoff database carries `PRAGMA application_id = KICK` and its schema version in
`PRAGMA user_version`. Anything else (another program's database, a newer schema, a
damaged file) is refused with a DatabaseRefused that says what to do.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from kickoff.errors import DatabaseRefused
from kickoff.projections.schema import PROJECTION_SCHEMA

APPLICATION_ID = 0x4B49434B  # "KICK"
SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"

LOG_SCHEMA = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    task_id INTEGER,
    worker_id TEXT,
    payload TEXT NOT NULL,
    hash BLOB NOT NULL
) STRICT;
CREATE INDEX events_task ON events(task_id) WHERE task_id IS NOT NULL;
CREATE INDEX events_worker ON events(worker_id) WHERE worker_id IS NOT NULL;
CREATE INDEX events_at ON events(at);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'kickoff: the event log is append-only (UPDATE refused)'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'kickoff: the event log is append-only (DELETE refused)'); END;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
"""


def default_db_path() -> Path:
    """`$KICKOFF_DB`, else `$XDG_DATA_HOME/kickoff/kickoff.db` (~/.local/share/...)."""
    if os.environ.get("KICKOFF_DB"):
        return Path(os.environ["KICKOFF_DB"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kickoff" / "kickoff.db"


def _check_header(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise DatabaseRefused(f"cannot read {path}: {exc.strerror}") from exc
    if head and head != SQLITE_MAGIC:
        raise DatabaseRefused(f"{path} is not a SQLite database (and so not kickoff's)")
    if head and len(head) < len(SQLITE_MAGIC):
        raise DatabaseRefused(f"{path} is truncated: not a complete SQLite database")


def _pragma_int(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def _check_identity(conn: sqlite3.Connection, path: Path) -> bool:
    """True when the database is a kickoff one; False when it is empty (new)."""
    app_id = _pragma_int(conn, "application_id")
    version = _pragma_int(conn, "user_version")
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id == 0 and tables == 0:
        return False
    if app_id != APPLICATION_ID:
        raise DatabaseRefused(f"{path} is not a kickoff database (another program's file?)")
    if version > SCHEMA_VERSION:
        raise DatabaseRefused(
            f"{path} has schema version {version}, newer than this kickoff knows "
            f"({SCHEMA_VERSION}); upgrade kickoff to open it"
        )
    return True


def _check_size(conn: sqlite3.Connection, path: Path) -> None:
    """A file shorter than its own page count says is truncated (cheap; verify does more)."""
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return  # recent pages may live in the WAL
    expected = _pragma_int(conn, "page_count") * _pragma_int(conn, "page_size")
    if path.stat().st_size < expected:
        raise DatabaseRefused(
            f"{path} is truncated ({path.stat().st_size} of {expected} bytes); "
            "restore it from a backup"
        )


def _create(conn: sqlite3.Connection) -> None:
    with conn:
        conn.executescript(
            "BEGIN;"
            + LOG_SCHEMA
            + PROJECTION_SCHEMA
            + f"PRAGMA application_id = {APPLICATION_ID};"
            + f"PRAGMA user_version = {SCHEMA_VERSION};"
            + "COMMIT;"
        )


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (creating if needed, unless read-only) a kickoff database.

    Raises:
        DatabaseRefused: not kickoff's, newer schema, damaged, or unreadable.
    """
    path = Path(path)
    memory = str(path) == ":memory:"
    if not memory:
        if path.exists():
            _check_header(path)
        elif readonly:
            raise DatabaseRefused(f"no database at {path}")
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseRefused(f"cannot create {path.parent}: {exc.strerror}") from exc
    try:
        if readonly:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        else:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA cache_size = -65536")
        if not _check_identity(conn, path):
            if readonly:
                raise DatabaseRefused(f"{path} is empty: not a kickoff database yet")
            _create(conn)
        if not memory:
            _check_size(conn, path)
    except sqlite3.DatabaseError as exc:
        raise DatabaseRefused(f"cannot open {path}: {exc}") from exc
    except OSError as exc:
        raise DatabaseRefused(f"cannot open {path}: {exc.strerror}") from exc
    return conn
