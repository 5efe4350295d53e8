"""The log's schema on PostgreSQL: store/schema.py's tables in PostgreSQL's types, the
previous hash beside each row, and the append-only rules as triggers (PostgreSQL's cannot
hold a subquery in WHEN: the DELETE rule is a function) and grants. No connection here.

`seq` is the primary key and `prev` (the hash the row chains to) is unique: a second
writer that appends from a stale tail conflicts instead of forking the chain.
"""

from __future__ import annotations

from kickoff.store import schema
from kickoff.store.dialect import postgres_ddl

LOG_TABLES = (
    *(postgres_ddl(sql) for sql in schema.TABLES),
    "ALTER TABLE events ADD COLUMN prev BYTEA NOT NULL UNIQUE",
)

FUNCTIONS: dict[str, str] = {
    "kickoff_refuse": """BEGIN
    RAISE EXCEPTION 'kickoff: % (% refused)', TG_ARGV[0], TG_OP;
END""",
    # a compaction deletes archived heartbeats: only those, and only once the run that
    # covers them is recorded in compacted_runs (append-only itself), in one transaction
    "kickoff_events_delete": """BEGIN
    IF OLD.type = 'WorkerHeartbeat' AND coalesce((SELECT r.last_seq FROM compacted_runs r
            WHERE r.first_seq <= OLD.seq ORDER BY r.first_seq DESC LIMIT 1) >= OLD.seq,
            false) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'kickoff: the event log is append-only (DELETE refused)';
END""",
}

_LOG = "'the event log is append-only'"
_RECORDS = "'compaction records are append-only'"
TRIGGERS: dict[str, str] = {
    "events_no_update": f"BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION "
    f"kickoff_refuse({_LOG})",
    "events_no_delete": "BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION "
    "kickoff_events_delete()",
    "events_no_truncate": f"BEFORE TRUNCATE ON events FOR EACH STATEMENT EXECUTE FUNCTION "
    f"kickoff_refuse({_LOG})",
    **{
        f"{table}_no_{verb.lower()}": (
            f"BEFORE {verb} ON {table} FOR EACH {'STATEMENT' if verb == 'TRUNCATE' else 'ROW'} "
            f"EXECUTE FUNCTION kickoff_refuse({_RECORDS})"
        )
        for table in ("compactions", "compacted_runs")
        for verb in ("UPDATE", "DELETE", "TRUNCATE")
    },
}
"""Every trigger of the log's tables, by name: `kickoff verify` checks each is there,
enabled, and its function as written here."""

GRANTS = (  # nobody but the tables' owner changes a row (see docs/postgresql.md)
    "REVOKE UPDATE, DELETE, TRUNCATE ON events, compactions, compacted_runs FROM PUBLIC",
)


def statements() -> tuple[str, ...]:
    """Everything that creates the log's part of a new database, in order."""
    return (
        *LOG_TABLES,
        *(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $kickoff${body}$kickoff$"
            for name, body in FUNCTIONS.items()
        ),
        *(f"CREATE TRIGGER {name} {rest}" for name, rest in TRIGGERS.items()),
        *GRANTS,
    )
