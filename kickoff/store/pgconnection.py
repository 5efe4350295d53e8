"""Opening a kickoff database on PostgreSQL: the connection, its identity and schema
version (rows of the `meta` table), a new database's schema, the lock its writer holds.
No event SQL here (postgres.py).

`PgConnection` takes the statements the rules are written in (SQLite's words: see
store/dialect.py) and raises the standard DB-API (PEP 249) error classes, those of the
standard library's sqlite3 module, chained to psycopg's: the layers above catch one
family for both engines. It runs in autocommit, so `BEGIN ... COMMIT` is the caller's,
as with SQLite; a connection lost between transactions is made again at the next one.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kickoff.dblocation import ServerUrl
from kickoff.errors import DatabaseRefused
from kickoff.store import pgschema
from kickoff.store.connection import Layout
from kickoff.store.dialect import postgres_ddl, to_postgres
from kickoff.store.sqlite import NULL

logger = logging.getLogger(__name__)

LOCK_KEY = 0x4B49434B  # "KICK": the advisory lock of a database's one writer
CREATE_KEY = LOCK_KEY + 1  # held while a new database's schema is created
MAX_PARAMETERS = 65_535  # what one statement of PostgreSQL's protocol binds at most
APPLICATION = "kickoff"

SELECT_IDENTITY = (
    "SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
    "AND tablename <> 'kickoff_lease'), "  # (the lease may come first: store/lease.py)
    "to_regclass('meta') IS NOT NULL"
)
SELECT_META = "SELECT key, value FROM meta WHERE key IN ('application', 'schema_version')"
SET_META = "INSERT INTO meta (key, value) VALUES (?, ?)"
UPDATE_VERSION = "UPDATE meta SET value = ? WHERE key = 'schema_version'"


def _dbapi(exc: Exception) -> sqlite3.Error:
    """psycopg's error as the DB-API class of the same name (its message, PostgreSQL's
    primary message only: the rest is psycopg's detail)."""
    names = [cls.__name__ for cls in type(exc).__mro__]
    for name in ("IntegrityError", "OperationalError", "ProgrammingError", "DataError"):
        if name in names:
            return getattr(sqlite3, name)(str(exc).strip())  # type: ignore[no-any-return]
    return sqlite3.DatabaseError(str(exc).strip())


def _bound(params: Any) -> Any:
    """The parameters as psycopg binds them: the rules' NULL (see sqlite.NULL) as None."""
    if isinstance(params, Mapping):
        return {k: None if v is NULL else v for k, v in params.items()}
    return [None if v is NULL else v for v in params]


class PgConnection:
    """One connection to a PostgreSQL database, shaped as the rules use sqlite3's."""

    def __init__(self, where: ServerUrl, *, readonly: bool = False, exclusive: bool = False):
        self.where = where
        self.readonly = readonly
        self.exclusive = exclusive  # hold the writer's lock (taken again on reconnecting)
        self.raw = self._connect()

    def _connect(self) -> Any:
        import psycopg

        try:
            raw = psycopg.connect(
                self.where.url, autocommit=True, connect_timeout=10, application_name="kickoff"
            )
        except psycopg.Error as exc:
            raise DatabaseRefused(f"cannot connect to {self.where}: {exc}".strip()) from exc
        try:
            if self.readonly:
                raw.execute("SET default_transaction_read_only = on")
            if self.exclusive:
                found = raw.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
                if not (found and found[0]):
                    raise DatabaseRefused(
                        f"{self.where} is in use by another kickoff server; stop it first, "
                        "or pass another --db"
                    )
        except BaseException:
            raw.close()
            raise
        return raw

    def _ready(self) -> Any:
        """The connection, made again if it was lost between transactions."""
        if self.raw.broken or self.raw.closed:
            try:
                self.raw = self._connect()
            except DatabaseRefused as exc:
                raise sqlite3.OperationalError(exc.message) from exc
            logger.warning("connected to %s again", self.where)
        return self.raw

    def execute(self, sql: str, params: Any = None, /) -> Any:
        import psycopg

        raw = self._ready()
        try:
            if not params:
                return raw.execute(to_postgres(sql, params=False))
            return raw.execute(to_postgres(sql, params=True), _bound(params))
        except psycopg.Error as exc:
            raise _dbapi(exc) from exc

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]], /) -> Any:
        import psycopg

        raw = self._ready()
        try:
            cursor = raw.cursor()
            cursor.executemany(to_postgres(sql, params=True), [_bound(p) for p in seq_of_params])
            return cursor
        except psycopg.Error as exc:
            raise _dbapi(exc) from exc

    @property
    def in_transaction(self) -> bool:
        from psycopg import pq

        return bool(self.raw.info.transaction_status != pq.TransactionStatus.IDLE)

    def getlimit(self, category: int, /) -> int:
        """As sqlite3's, for SQLITE_LIMIT_VARIABLE_NUMBER: the parameters one statement binds."""
        return MAX_PARAMETERS

    def close(self) -> None:
        self.raw.close()


def _rollback(conn: PgConnection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _create(conn: PgConnection, layout: Layout) -> None:
    """The log's schema, then the rest (the projections'), in one transaction; nothing if
    another process created it meanwhile."""
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (CREATE_KEY,))
        tables, _ = conn.execute(SELECT_IDENTITY).fetchone()
        if tables == 0:
            for sql in pgschema.statements():
                conn.execute(sql)
            for sql in layout.rest:
                conn.execute(postgres_ddl(sql))
            conn.execute(SET_META, ("application", APPLICATION))
            conn.execute(SET_META, ("schema_version", str(layout.version)))
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _check_identity(conn: PgConnection, newest: int) -> int | None:
    """The schema version of a kickoff database; None when it is empty (new)."""
    tables, has_meta = conn.execute(SELECT_IDENTITY).fetchone()
    if tables == 0:
        return None
    meta = dict(conn.execute(SELECT_META).fetchall()) if has_meta else {}
    if meta.get("application") != APPLICATION:
        raise DatabaseRefused(
            f"{conn.where} is not a kickoff database (it holds other tables); pass an empty "
            "database or another kickoff's"
        )
    version = int(meta.get("schema_version", 0))
    if version > newest:
        raise DatabaseRefused(
            f"{conn.where} has schema version {version}, newer than this kickoff knows "
            f"({newest}); upgrade kickoff to open it"
        )
    return version


def _migrate(conn: PgConnection, version: int, layout: Layout) -> None:
    """Bring an older kickoff database up to this schema version, in one transaction."""
    if version >= layout.version:
        return
    conn.execute("BEGIN")
    try:
        for step in range(version, layout.version):
            for sql in layout.migrations[step]:
                conn.execute(postgres_ddl(sql))
        conn.execute(UPDATE_VERSION, (str(layout.version),))
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    logger.info("upgraded %s from schema version %d to %d", conn.where, version, layout.version)


def connect(
    where: ServerUrl,
    layout: Layout,
    *,
    readonly: bool = False,
    create: bool = False,
    exclusive: bool = False,
) -> PgConnection:
    """Open a kickoff database on PostgreSQL laid out as `layout` (a writer upgrades an
    older one); with `create`, an empty one gets the schema. `exclusive`: the one writer,
    a second is refused.

    Raises:
        DatabaseRefused: unreachable, not kickoff's, newer schema, or in use (exclusive).
    """
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise DatabaseRefused(
            "PostgreSQL databases need psycopg: pip install 'kickoff[postgresql]'"
        ) from None
    conn = PgConnection(where, readonly=readonly, exclusive=exclusive)
    try:
        version = _check_identity(conn, layout.version)
        if version is None:
            if readonly or not create:
                raise DatabaseRefused(f"{where} is empty: not a kickoff database yet")
            _create(conn, layout)
            version = _check_identity(conn, layout.version)
            assert version is not None
        if not readonly:
            _migrate(conn, version, layout)
    except sqlite3.Error as exc:
        conn.close()
        raise DatabaseRefused(f"cannot open {where}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def lock_exclusive(where: ServerUrl) -> PgConnection:
    """Hold the database's writer lock (a session advisory lock) so that a second server
    on it is refused; closing the connection releases it, and so does the process's end.

    Raises:
        DatabaseRefused: another process holds the lock, or the database is unreachable.
    """
    return PgConnection(where, exclusive=True)


SET_TOKEN = "INSERT INTO meta (key, value) VALUES ('token', ?) ON CONFLICT (key) DO NOTHING"
REPLACE_TOKEN = (
    "INSERT INTO meta (key, value) VALUES ('token', ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
GET_TOKEN = "SELECT value FROM meta WHERE key = 'token'"


def shared_token(conn: PgConnection, candidate: str, *, replace: bool = False) -> str:
    """The access token every server on the database uses: `candidate` if there is none
    yet (or `replace`), else the one there.

    Raises:
        DatabaseRefused: it cannot be read or written.
    """
    try:
        conn.execute(REPLACE_TOKEN if replace else SET_TOKEN, (candidate,))
        return str(conn.execute(GET_TOKEN).fetchone()[0])
    except sqlite3.Error as exc:
        raise DatabaseRefused(f"cannot read the token in {conn.where}: {exc}") from exc
