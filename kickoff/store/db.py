"""Opening a kickoff database: pragmas, schema, version checks, the log's triggers.

A kickoff database carries `PRAGMA application_id = KICK` and its schema version in
`PRAGMA user_version`. Anything else (another program's database, a newer schema, a
damaged file) is refused with a DatabaseRefused that says what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from kickoff.errors import DatabaseRefused
from kickoff.projections.schema import PROJECTION_SCHEMA
from kickoff.store import schema
from kickoff.store.schema import SCHEMA_VERSION

logger = logging.getLogger(__name__)

APPLICATION_ID = 0x4B49434B  # "KICK"
SQLITE_MAGIC = b"SQLite format 3\x00"


def default_db_path() -> Path:
    """`$KICKOFF_DB`, else `$XDG_DATA_HOME/kickoff/kickoff.db` (~/.local/share/...)."""
    if os.environ.get("KICKOFF_DB"):
        return Path(os.environ["KICKOFF_DB"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kickoff" / "kickoff.db"


_EXPLAINED = (
    ("database or disk is full", "the disk is full; free some space"),
    (
        "readonly database",
        "the database is read-only (check the file, its directory and the mount)",
    ),
    (
        "unable to open database file",
        "cannot open the file (missing directory, permissions or a read-only file system?)",
    ),
    ("disk I/O error", "disk I/O error (a full disk, a read-only file system or a failing disk?)"),
    ("file is not a database", "not a SQLite database (damaged, or another program's file)"),
    ("malformed", "the database is damaged; run `kickoff verify` and restore it from a backup"),
    ("database is locked", "the database is locked by another process"),
)


def explain(exc: sqlite3.Error) -> str:
    """SQLite's message, with what it means for a kickoff user in front."""
    text = str(exc)
    for needle, meaning in _EXPLAINED:
        if needle in text:
            return f"{meaning} ({text})"
    return text


def lock_exclusive(path: Path) -> int:
    """Hold `<db>.lock` so that a second server on the same database is refused.

    Returns the lock's descriptor (closing it releases the lock; so does exiting).

    Raises:
        DatabaseRefused: another process holds the lock, or it cannot be created.
    """
    lock = Path(f"{path}.lock")
    try:
        lock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise DatabaseRefused(f"cannot create {lock}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise DatabaseRefused(
            f"{path} is in use by another kickoff server; stop it first, or pass another --db"
        ) from None
    return fd


def _header_size(header: bytes) -> int | None:
    """The database size its 100-byte header claims, None if the header does not say."""
    if len(header) < 100 or header[24:28] != header[92:96]:
        return None  # valid only while the change counter equals "version-valid-for"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    return page_size * pages or None


def _check_header(path: Path) -> None:
    """Refuse before SQLite sees it: not SQLite at all, or shorter than it says it is."""
    try:
        with path.open("rb") as fh:
            header = fh.read(100)
        size = path.stat().st_size
    except OSError as exc:
        raise DatabaseRefused(f"cannot read {path}: {exc.strerror}") from exc
    head = header[: len(SQLITE_MAGIC)]
    if head and len(head) < len(SQLITE_MAGIC) and SQLITE_MAGIC.startswith(head):
        raise DatabaseRefused(f"{path} is truncated: not a complete SQLite database")
    if head and head != SQLITE_MAGIC:
        raise DatabaseRefused(f"{path} is not a SQLite database (and so not kickoff's)")
    expected = _header_size(header) if head else None
    if expected is not None and size < expected and not _wal_has_frames(path):
        raise DatabaseRefused(
            f"{path} is truncated ({size} of {expected} bytes); restore it from a backup"
        )
    if head and len(header) < 100:
        raise DatabaseRefused(f"{path} is truncated: not a complete SQLite database")


def _wal_has_frames(path: Path) -> bool:
    """Recent pages may live in the write-ahead log, not yet in the file."""
    wal = Path(f"{path}-wal")
    return wal.exists() and wal.stat().st_size > 0


def _pragma_int(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def _check_not_emptied(path: Path) -> None:
    """Refuse a 0-byte file: SQLite would take it for a new, empty database, and a server
    would start afresh on it without a word. But a database file emptied by accident (an
    interrupted copy or restore, `> kickoff.db`, a full disk) is data lost, and numbering
    tasks from 1 again on top of it hides the loss and muddles any later restore. kickoff
    itself never leaves one (see _create_file)."""
    if path.stat().st_size == 0 and not _wal_has_frames(path):
        raise DatabaseRefused(
            f"{path} is an empty file (0 bytes), not a kickoff database: if it held one, it "
            "was truncated (restore it from a backup); to start a new database, delete it "
            "or pass another --db"
        )


def _create_file(path: Path) -> None:
    """Make a new database beside `path`, complete and durable, then link it into place: a
    crash leaves either no file or a whole new database, never an empty one.

    Raises:
        DatabaseRefused: the directory cannot be created or written.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseRefused(f"cannot create {path.parent}: {exc.strerror}") from exc
    new = path.with_name(f".{path.name}.new-{os.getpid()}")
    parts = [new, Path(f"{new}-wal"), Path(f"{new}-shm")]
    try:
        for part in parts:
            part.unlink(missing_ok=True)
        conn = sqlite3.connect(str(new), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            _create(conn)
        finally:
            conn.close()  # the last connection: the WAL is written into the file
        _fsync(new)
        with contextlib.suppress(FileExistsError):  # another process made one meanwhile:
            os.link(new, path)  # that one is opened
        _fsync(path.parent)
    except sqlite3.Error as exc:
        raise DatabaseRefused(f"cannot create {path}: {explain(exc)}") from exc
    except OSError as exc:
        raise DatabaseRefused(f"cannot create {path}: {exc.strerror}") from exc
    finally:
        for part in parts:
            with contextlib.suppress(OSError):
                part.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    if _wal_has_frames(path):
        return
    expected = _pragma_int(conn, "page_count") * _pragma_int(conn, "page_size")
    if path.stat().st_size < expected:
        raise DatabaseRefused(
            f"{path} is truncated ({path.stat().st_size} of {expected} bytes); "
            "restore it from a backup"
        )


def _check_writable(conn: sqlite3.Connection) -> None:
    """Fail now, not at the first event: SQLite silently opens an unwritable file (an
    immutable one, say) read-only, and only a write tells."""
    version = _pragma_int(conn, "user_version")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"PRAGMA user_version = {version}")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    try:
        for sql in schema.statements():
            conn.execute(sql)
        _script(conn, PROJECTION_SCHEMA)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring an older kickoff database up to this schema version, in one transaction."""
    version = _pragma_int(conn, "user_version")
    if version >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        schema.migrate(conn, version)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    logger.info("upgraded %s from schema version %d to %d", path, version, SCHEMA_VERSION)


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
            if not readonly:
                _check_not_emptied(path)
        elif readonly:
            raise DatabaseRefused(f"no database at {path}")
        else:
            _create_file(path)
    conn: sqlite3.Connection | None = None
    try:
        if readonly:
            uri = f"file:{quote(str(path))}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA cache_size = -65536")
        # Identity first: switching to WAL rewrites the header, and another program's
        # database must be left exactly as it was.
        known = _check_identity(conn, path)
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        if not known:
            if readonly:
                raise DatabaseRefused(f"{path} is empty: not a kickoff database yet")
            _create(conn)
        elif not readonly:
            _check_writable(conn)
            _migrate(conn, path)
        if not memory:
            _check_size(conn, path)
    except BaseException as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, sqlite3.Error):
            raise DatabaseRefused(f"cannot open {path}: {explain(exc)}") from exc
        if isinstance(exc, OSError):
            raise DatabaseRefused(f"cannot open {path}: {exc.strerror}") from exc
        raise
    return conn
