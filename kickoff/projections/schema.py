"""The projection tables. Documented in the README ("The database").

The log's own schema is store/schema.py's; writing the rows is tasks.py's and workers.py's.
"""

from __future__ import annotations

PROJECTION_TABLES = ("tasks", "workers", "task_counts", "groups")

PROJECTION_SCHEMA = """
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    command TEXT NOT NULL,
    require TEXT NOT NULL,
    want TEXT NOT NULL,
    priority INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    timeout_s REAL,
    worker_id TEXT,
    exit_code INTEGER,
    timed_out INTEGER NOT NULL,
    duration_s REAL,
    output_tail TEXT,
    reason TEXT,
    idempotency_key TEXT,
    submitted_by TEXT,
    submitted_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    updated_seq INTEGER NOT NULL,
    after TEXT,
    after_any TEXT,
    group_id INTEGER,
    array_index INTEGER,
    retries INTEGER NOT NULL DEFAULT 0,
    retries_left INTEGER NOT NULL DEFAULT 0,
    retry_delay_s REAL,
    retry_on TEXT,
    retry_at TEXT,
    resources TEXT,
    gpu_ids TEXT,
    passes INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX tasks_state ON tasks(state, id);
CREATE INDEX tasks_idempotency ON tasks(idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_on_worker ON tasks(worker_id) WHERE state IN ('running', 'cancelling');
CREATE INDEX tasks_group ON tasks(group_id, state, id) WHERE group_id IS NOT NULL;
CREATE TABLE groups (
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE,
    max_running INTEGER,
    created_at TEXT NOT NULL,
    updated_seq INTEGER NOT NULL
) STRICT;
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    host TEXT,
    tags TEXT NOT NULL,
    slots INTEGER NOT NULL,
    state TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    left_at TEXT,
    updated_seq INTEGER NOT NULL,
    resources TEXT,
    gpu_ids TEXT
) STRICT;
CREATE TABLE task_counts (
    state TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) STRICT;
INSERT INTO task_counts (state, n) VALUES
    ('pending', 0), ('waiting', 0), ('running', 0), ('cancelling', 0),
    ('succeeded', 0), ('failed', 0), ('cancelled', 0);
CREATE TABLE projection_state (
    name TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) STRICT;
INSERT INTO projection_state (name, last_seq)
    VALUES ('tasks', 0), ('workers', 0), ('task_counts', 0), ('groups', 0);
"""

WORKFLOW_MIGRATION = (
    # schema v2 -> v3: the workflow columns (SPEC §12), the groups table and the waiting
    # count. A v2 database has no workflow events, so these are the rows a rebuild gives.
    "ALTER TABLE tasks ADD COLUMN after TEXT",
    "ALTER TABLE tasks ADD COLUMN after_any TEXT",
    "ALTER TABLE tasks ADD COLUMN group_id INTEGER",
    "ALTER TABLE tasks ADD COLUMN array_index INTEGER",
    "ALTER TABLE tasks ADD COLUMN retries INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE tasks ADD COLUMN retries_left INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE tasks ADD COLUMN retry_delay_s REAL",
    "ALTER TABLE tasks ADD COLUMN retry_on TEXT",
    "ALTER TABLE tasks ADD COLUMN retry_at TEXT",
    "CREATE INDEX tasks_group ON tasks(group_id, state, id) WHERE group_id IS NOT NULL",
    """CREATE TABLE groups (
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE,
    max_running INTEGER,
    created_at TEXT NOT NULL,
    updated_seq INTEGER NOT NULL
) STRICT""",
    "INSERT INTO task_counts (state, n) VALUES ('waiting', 0)",
    "INSERT INTO projection_state (name, last_seq) "
    "SELECT 'groups', last_seq FROM projection_state WHERE name = 'tasks'",
)

RESOURCES_MIGRATION = (
    # schema v3 -> v4: counted resources (SPEC §10). A v3 database has no resource
    # requests, declarations or devices, so NULL and 0 are the rows a rebuild gives.
    "ALTER TABLE tasks ADD COLUMN resources TEXT",
    "ALTER TABLE tasks ADD COLUMN gpu_ids TEXT",
    "ALTER TABLE tasks ADD COLUMN passes INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE workers ADD COLUMN resources TEXT",
    "ALTER TABLE workers ADD COLUMN gpu_ids TEXT",
)

RESOURCES_DOWNGRADE = (
    # what RESOURCES_MIGRATION added, taken away again (see WORKFLOW_DOWNGRADE)
    "ALTER TABLE tasks DROP COLUMN resources",
    "ALTER TABLE tasks DROP COLUMN gpu_ids",
    "ALTER TABLE tasks DROP COLUMN passes",
    "ALTER TABLE workers DROP COLUMN resources",
    "ALTER TABLE workers DROP COLUMN gpu_ids",
)

DROP_PROJECTIONS = """
DROP TABLE IF EXISTS tasks;
DROP TABLE IF EXISTS workers;
DROP TABLE IF EXISTS task_counts;
DROP TABLE IF EXISTS groups;
DROP TABLE IF EXISTS projection_state;
"""

WORKFLOW_DOWNGRADE = (
    # what WORKFLOW_MIGRATION added, taken away again: `kickoff verify` compares the
    # projections of a database still at schema version 2 or older (only a writer
    # upgrades it) with a fresh rebuild taken back to that schema. (Only a kickoff that
    # knows workflows writes their events, and it upgrades the schema first.)
    "DELETE FROM task_counts WHERE state = 'waiting' AND n = 0",
    "DELETE FROM projection_state WHERE name = 'groups'",
    "DROP TABLE groups",
    "DROP INDEX tasks_group",
    *(
        f"ALTER TABLE tasks DROP COLUMN {column}"
        for column in (
            "after",
            "after_any",
            "group_id",
            "array_index",
            "retries",
            "retries_left",
            "retry_delay_s",
            "retry_on",
            "retry_at",
        )
    ),
)


def _statements(script: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in script.split(";\n") if s.strip())


PROJECTION_STATEMENTS = _statements(PROJECTION_SCHEMA)  # one by one, for a transaction
DROP_STATEMENTS = _statements(DROP_PROJECTIONS)
