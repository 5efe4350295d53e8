"""The log's SQLite schema: tables, indexes, the append-only triggers, and the log's
steps of the migrations between schema versions. No connection handling here (see
connection.py); the database's schema version, which counts the projections' changes too,
is kickoff/database.py's.

A migration is a list of statements that takes a database from one version to the next;
they run in order, in one transaction, when a writer opens an older database. Never edit
a migration once it has shipped.
"""

from __future__ import annotations

import re

TRIGGERS_SINCE = 2  # the version that wrote the triggers below (see V1_TRIGGERS)

EVENTS_COLUMNS = """(
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    task_id INTEGER,
    worker_id TEXT,
    payload TEXT NOT NULL,
    hash BLOB NOT NULL
) STRICT"""  # the log's columns; a compaction archive has the same

COMPACTION_TABLES = (
    """CREATE TABLE IF NOT EXISTS compactions (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    before_seq INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    digest BLOB NOT NULL,
    archive TEXT NOT NULL
) STRICT""",
    """CREATE TABLE IF NOT EXISTS compacted_runs (
    first_seq INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    last_hash BLOB NOT NULL,
    compaction_id INTEGER NOT NULL
) STRICT""",
)

WORKER_CHANGES_INDEX = (
    "CREATE INDEX IF NOT EXISTS events_worker_changes ON events(worker_id) "
    "WHERE type IN ('WorkerRegistered', 'WorkerTagsChanged')"
)  # a worker's registration and tag changes without walking its heartbeats

TABLES = (
    f"CREATE TABLE events {EVENTS_COLUMNS}",
    "CREATE INDEX events_task ON events(task_id) WHERE task_id IS NOT NULL",
    "CREATE INDEX events_worker ON events(worker_id) WHERE worker_id IS NOT NULL",
    "CREATE INDEX events_at ON events(at)",
    WORKER_CHANGES_INDEX,
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",
    *COMPACTION_TABLES,
)


def _refuse(name: str, what: str) -> str:
    return f"SELECT RAISE(ABORT, 'kickoff: {what} ({name} refused)')"


# A compaction deletes archived heartbeats: only those, and only once the run that covers
# them is recorded in compacted_runs (append-only itself), in the same transaction.
_ARCHIVED = (
    "OLD.type = 'WorkerHeartbeat' AND coalesce((SELECT r.last_seq FROM compacted_runs r "
    "WHERE r.first_seq <= OLD.seq ORDER BY r.first_seq DESC LIMIT 1) >= OLD.seq, 0)"
)

TRIGGERS: dict[str, str] = {
    "events_no_update": (
        "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
        f"BEGIN {_refuse('UPDATE', 'the event log is append-only')}; END"
    ),
    "events_no_delete": (
        f"CREATE TRIGGER events_no_delete BEFORE DELETE ON events WHEN NOT ({_ARCHIVED}) "
        f"BEGIN {_refuse('DELETE', 'the event log is append-only')}; END"
    ),
    "events_no_replace": (
        "CREATE TRIGGER events_no_replace BEFORE INSERT ON events "
        "WHEN EXISTS (SELECT 1 FROM events WHERE seq = NEW.seq) "
        f"BEGIN {_refuse('REPLACE', 'the event log is append-only')}; END"
    ),
    **{
        f"{table}_no_{verb.lower()}": (
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN {_refuse(verb, 'compaction records are append-only')}; END"
        )
        for table in ("compactions", "compacted_runs")
        for verb in ("UPDATE", "DELETE")
    },
}
"""Every trigger of the log's tables, by name: `kickoff verify` checks each is in place
exactly as written here."""

V1_TRIGGERS = ("events_no_update", "events_no_delete", "events_no_replace")
"""The triggers a version 1 database has (not migrated while only readers opened it)."""

LOG_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # v1 -> v2: the compaction tables become part of the schema (a v1 compaction created
    # them, with these columns, outside it), the log's DELETE trigger lets a compaction
    # remove archived heartbeats without being dropped, every trigger is as written above,
    # and an index finds a worker's registration and tag changes at start-up. (These refer
    # to today's TRIGGERS: a later change to one copies its old text here first.)
    1: (
        *COMPACTION_TABLES,
        *(
            f"DROP TRIGGER IF EXISTS {name}"
            for name in (*TRIGGERS, "compactions_no_change", "compacted_runs_no_change")
        ),
        *TRIGGERS.values(),
        WORKER_CHANGES_INDEX,
    ),
}


def statements() -> tuple[str, ...]:
    """Everything that creates the log's part of a new database, in order."""
    return (*TABLES, *TRIGGERS.values())


def same_sql(a: str, b: str) -> bool:
    """Two CREATE statements alike but for white space and an IF NOT EXISTS."""

    def norm(sql: str) -> str:
        return re.sub(r"\s+", " ", sql.replace("IF NOT EXISTS ", "")).strip().rstrip(";")

    return norm(a) == norm(b)
