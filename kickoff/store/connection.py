"""Opening a kickoff database file: its header, identity, schema version and pragmas;
the lock a server holds; the WAL's health while it writes. No event SQL here (sqlite.py).

A kickoff database carries `PRAGMA application_id = KICK` and its schema version in
`PRAGMA user_version`. Anything else (another program's database, a newer schema, a
damaged or emptied file) is refused with a DatabaseRefused that says what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from kickoff import dblocation
from kickoff.errors import DatabaseRefused
from kickoff.store import schema

logger = logging.getLogger(__name__)

APPLICATION_ID = 0x4B49434B  # "KICK"
SQLITE_MAGIC = b"SQLite format 3\x00"


def default_db_path() -> dblocation.Location:
    """`$KICKOFF_DB`, else `$XDG_DATA_HOME/kickoff/kickoff.db` (~/.local/share/...).

    Raises:
        InvalidInput: `$KICKOFF_DB` is a URL this build does not support.
    """
    if os.environ.get("KICKOFF_DB"):
        return dblocation.parse(os.environ["KICKOFF_DB"])
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


@dataclass(frozen=True, slots=True)
class Layout:
    """What a kickoff database holds, as the unit above store/ (kickoff/database.py)
    composes it: the schema version, what a new one holds beside the log (the projections),
    and the statements that take an older one to the next version, log's and projections'."""

    version: int
    rest: tuple[str, ...]
    migrations: Mapping[int, tuple[str, ...]]


def _create_file(path: Path, layout: Layout) -> None:
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
            _create(conn, layout)
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


def _check_identity(conn: sqlite3.Connection, path: Path, newest: int) -> bool:
    """True when the database is a kickoff one; False when it is empty (new)."""
    app_id = _pragma_int(conn, "application_id")
    version = _pragma_int(conn, "user_version")
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id == 0 and tables == 0:
        return False
    if app_id != APPLICATION_ID:
        raise DatabaseRefused(f"{path} is not a kickoff database (another program's file?)")
    if version > newest:
        raise DatabaseRefused(
            f"{path} has schema version {version}, newer than this kickoff knows "
            f"({newest}); upgrade kickoff to open it"
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


def _create(conn: sqlite3.Connection, layout: Layout) -> None:
    """The log's schema, then the rest (the projections'), in one transaction."""
    conn.execute("BEGIN")
    try:
        for sql in (*schema.statements(), *layout.rest):
            conn.execute(sql)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {layout.version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection, path: Path, layout: Layout) -> None:
    """Bring an older kickoff database up to this schema version, in one transaction."""
    version = _pragma_int(conn, "user_version")
    if version >= layout.version:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in range(version, layout.version):
            for sql in layout.migrations[step]:
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {layout.version}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    logger.info("upgraded %s from schema version %d to %d", path, version, layout.version)


def connect(
    path: Path | str, layout: Layout, *, readonly: bool = False, create: bool = False
) -> sqlite3.Connection:
    """Open a kickoff database laid out as `layout` (a writer upgrades an older one); with
    `create`, a missing or empty one is created.

    Raises:
        DatabaseRefused: missing, not kickoff's, newer schema, damaged, or unreadable.
        InvalidInput: a URL (as text) this build does not support.
    """
    where = dblocation.location(path)
    if isinstance(where, dblocation.ServerUrl):
        raise DatabaseRefused(f"{where} is not a file (store/pgconnection.py opens it)")
    path = where
    memory = str(path) == ":memory:"
    if not memory:
        if path.exists():
            _check_header(path)
            if not readonly:
                _check_not_emptied(path)
        elif readonly or not create:
            raise DatabaseRefused(f"no database at {path}")
        else:
            _create_file(path, layout)
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
        known = _check_identity(conn, path, layout.version)
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        if not known:
            if readonly or not create:
                raise DatabaseRefused(f"{path} is empty: not a kickoff database yet")
            _create(conn, layout)
        elif not readonly:
            _check_writable(conn)
            _migrate(conn, path, layout)
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


def second_reader(path: Path) -> sqlite3.Connection:
    """Another, read-only connection to a database the caller has open (checks that run
    beside the writer's work)."""
    conn = sqlite3.connect(
        f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


WAL_LIMIT_BYTES = 32 << 20  # PRAGMA journal_size_limit: a WAL is cut back to this
WAL_ALARM_BYTES = 64 << 20  # a WAL past this may not be written back (see WalWatch)


class WalWatch:
    """Says so when the WAL cannot be written back into the database file.

    SQLite copies the WAL into the file every ~1,000 pages and ignores a failure to do so:
    with the file unwritable (`chattr +i`, say) commits still go to the WAL, which then
    grows with each of them, without a word. A WAL past WAL_ALARM_BYTES (healthy, it stays
    under WAL_LIMIT_BYTES) gets a write-back tried after a commit: a failure is logged at
    once, and again each time the WAL has doubled since; success after one, once. Commits
    carry on meanwhile: they are durable in the WAL.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn, self.path = conn, path
        self.wal = Path(f"{path}-wal")
        self.stuck = 0  # the WAL's size when a write-back last failed and was logged
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")

    def after_commit(self) -> None:
        try:
            size = self.wal.stat().st_size
        except OSError:
            return
        if size < WAL_ALARM_BYTES and not self.stuck:
            return
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            if size >= 2 * self.stuck:
                logger.error(
                    "cannot write the write-ahead log back into %s: %s; it has grown to "
                    "%d MiB and grows with every commit (every commit is still durable) "
                    "until the file can be written again (immutable? `lsattr %s`)",
                    self.path,
                    explain(exc),
                    size >> 20,
                    self.path,
                )
                self.stuck = size
            return
        if self.stuck:
            logger.info("the write-ahead log is written back into %s again", self.path)
            self.stuck = 0
