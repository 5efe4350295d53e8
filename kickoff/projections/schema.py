"""The projection tables. Documented in the README ("The database")."""

from __future__ import annotations

PROJECTION_TABLES = ("tasks", "workers", "task_counts")

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
    updated_seq INTEGER NOT NULL
) STRICT;
CREATE INDEX tasks_state ON tasks(state, id);
CREATE INDEX tasks_idempotency ON tasks(idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_on_worker ON tasks(worker_id) WHERE state IN ('running', 'cancelling');
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
    updated_seq INTEGER NOT NULL
) STRICT;
CREATE TABLE task_counts (
    state TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) STRICT;
INSERT INTO task_counts (state, n) VALUES
    ('pending', 0), ('running', 0), ('cancelling', 0),
    ('succeeded', 0), ('failed', 0), ('cancelled', 0);
CREATE TABLE projection_state (
    name TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) STRICT;
INSERT INTO projection_state (name, last_seq)
    VALUES ('tasks', 0), ('workers', 0), ('task_counts', 0);
"""

DROP_PROJECTIONS = """
DROP TABLE IF EXISTS tasks;
DROP TABLE IF EXISTS workers;
DROP TABLE IF EXISTS task_counts;
DROP TABLE IF EXISTS projection_state;
"""
