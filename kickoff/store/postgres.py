"""The PostgreSQL recorder: the SQLite recorder's statements in PostgreSQL's dialect
(store/dialect.py), and what is the engine's own: the previous hash written beside each
row, a snapshot as a repeatable-read transaction, the checks of the triggers and grants.
Opening a database is store/pgconnection.py's job.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

from kickoff.store import pgschema
from kickoff.store.chain import Row
from kickoff.store.dialect import POSTGRES, Dialect, agreement_sql
from kickoff.store.recorder import Agreement
from kickoff.store.sqlite import SqliteRecorder, insert_rows

INSERT_EVENTS = (
    "INSERT INTO events (seq, at, type, version, task_id, worker_id, payload, hash, prev)"
)
EVENT_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
SELECT_VERSION = "SELECT value FROM meta WHERE key = 'schema_version'"
SELECT_COLUMNS = (
    "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
    "AND table_schema = current_schema() ORDER BY ordinal_position"
)
SELECT_TRIGGERS = (
    "SELECT t.tgname, t.tgenabled, p.proname, p.prosrc FROM pg_trigger t "
    "JOIN pg_proc p ON p.oid = t.tgfoid "
    "WHERE NOT t.tgisinternal AND t.tgrelid IN "
    "(to_regclass('events'), to_regclass('compactions'), to_regclass('compacted_runs'))"
)
SELECT_WRITERS = (  # roles other than the owner that may change the log's rows
    "SELECT DISTINCT grantee FROM information_schema.role_table_grants "
    "WHERE table_name IN ('events', 'compactions', 'compacted_runs') "
    "AND privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE') AND grantee <> "
    "(SELECT tableowner FROM pg_tables WHERE tablename = 'events' "
    "AND schemaname = current_schema())"
)


class PostgresRecorder(SqliteRecorder):
    """The events table of one PostgreSQL database, through one PgConnection."""

    dialect: Dialect = POSTGRES

    def _insert(self, rows: list[Row], params: list[object]) -> None:
        prev = self._last_hash
        values: list[object] = []
        for row in rows:
            values.extend(row)
            values.append(prev)
            prev = row.hash
        insert_rows(self.conn, INSERT_EVENTS, EVENT_VALUES, values)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):  # a read: nothing to lose
                self.conn.execute("COMMIT")

    def _has_runs(self) -> bool:
        return True  # the compaction tables are part of every PostgreSQL database

    def disagreeing(self, agreement: Agreement, *, checkpoint_seq: int) -> Iterator[Any]:
        a = agreement
        try:
            found = self.conn.execute(agreement_sql(a, self.dialect), {"seq": checkpoint_seq})
            keys = found.fetchall()
        except sqlite3.DataError:  # a payload that is not JSON at all: every row is suspect
            keys = self.conn.execute(f"SELECT p.{a.key} FROM {a.table} p WHERE ({a.where})")
            keys = keys.fetchall()
        for (key,) in keys:
            yield key

    def schema_version(self) -> int:
        found = self.conn.execute(SELECT_VERSION).fetchone()
        return int(found[0]) if found else 0

    def columns(self, table: str) -> list[str]:
        return [r[0] for r in self.conn.execute(SELECT_COLUMNS, (table,)).fetchall()]

    def quick_check(self) -> str | None:
        """None: PostgreSQL keeps its pages whole itself (its write-ahead log, and data
        checksums where the cluster has them); `kickoff verify` reads every row."""
        return None

    def schema_problems(self) -> list[str]:
        """Every trigger of the log in place, enabled and running its function as written;
        no role but the owner granted UPDATE, DELETE or TRUNCATE on the log."""
        problems: list[str] = []
        found = {name: (enabled, proc, src) for name, enabled, proc, src in self._triggers()}
        for name, rest in pgschema.TRIGGERS.items():
            if name not in found:
                problems.append(f"trigger {name} is missing: {_guards(name)}")
                continue
            enabled, proc, src = found[name]
            if enabled == "D":
                problems.append(f"trigger {name} is disabled: {_guards(name)}")
            elif f"FUNCTION {proc}(" not in rest or src != pgschema.FUNCTIONS[proc]:
                problems.append(f"trigger {name} was changed: {_guards(name)}")
        for (grantee,) in self.conn.execute(SELECT_WRITERS).fetchall():
            problems.append(
                f"role {grantee} may change or delete the log's rows (REVOKE UPDATE, DELETE, "
                "TRUNCATE ON events, compactions, compacted_runs FROM it)"
            )
        return problems

    def _triggers(self) -> list[tuple[str, str, str, str]]:
        return [tuple(r) for r in self.conn.execute(SELECT_TRIGGERS).fetchall()]


def _guards(trigger: str) -> str:
    table, verb = trigger.rsplit("_no_", 1)
    return f"the {table} table no longer refuses every {verb.upper()} it must"
