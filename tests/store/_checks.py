"""What every store test checks about a database: the log's shape and the projections.

Shared by the contract tests, the rebuild tests and the kill -9 test.
"""

from __future__ import annotations

import random
import sqlite3
from typing import Any

import orjson

from kickoff.clock import to_text
from kickoff.database import Database
from kickoff.state.fold import State
from kickoff.store.chain import GENESIS, Recorded, chain_hash
from kickoff.store.sqlite import SqliteRecorder

PROJECTION_TABLES = ("tasks", "workers", "task_counts", "groups", "projection_state")


def dump(conn: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    """Every row of a table, in a stable order."""
    return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def projections(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {table: dump(conn, table) for table in PROJECTION_TABLES}


def assert_log_is_whole(conn: sqlite3.Connection) -> int:
    """seq is 1..N without a gap and every hash recomputes; returns N."""
    count, low, high = conn.execute("SELECT count(*), min(seq), max(seq) FROM events").fetchone()
    assert (low, high) == ((1, count) if count else (None, None)), (count, low, high)
    prev, expected_seq = GENESIS, 0
    for row in SqliteRecorder(conn).rows(chunk=997):
        expected_seq += 1
        assert row.seq == expected_seq
        digest = chain_hash(
            prev, row.seq, row.at, row.type, row.version, row.task_id, row.worker_id, row.payload
        )
        assert digest == row.hash, f"chain broken at seq {row.seq}"
        prev = digest
    assert expected_seq == count
    return int(count)


def assert_projections_agree_with(conn: sqlite3.Connection, state: State) -> None:
    """The projections are as of the log's last seq and count what the fold counts."""
    last = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    assert dict(conn.execute("SELECT name, last_seq FROM projection_state")) == {
        "tasks": last,
        "workers": last,
        "task_counts": last,
        "groups": last,
    }
    assert state.last_seq == last
    counts = dict(conn.execute("SELECT state, n FROM task_counts"))
    assert counts == {str(s): n for s, n in state.counts.items()}
    by_state = dict(conn.execute("SELECT state, count(*) FROM tasks GROUP BY state"))
    assert {s: n for s, n in counts.items() if n} == by_state
    submitted = conn.execute("SELECT count(*) FROM events WHERE type = 'TaskSubmitted'")
    assert submitted.fetchone()[0] == conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    alive = conn.execute("SELECT id, tags, slots, last_seen FROM workers WHERE state = 'alive'")
    assert sorted(alive) == sorted(
        (w.id, orjson.dumps(sorted(w.tags)).decode(), w.slots, to_text(w.last_seen))
        for w in state.workers.values()
    )
    for task in state.tasks.values():
        row = conn.execute("SELECT state, attempt, worker_id FROM tasks WHERE id = ?", (task.id,))
        assert row.fetchone() == (str(task.state), task.attempt, task.worker_id), task.id


def write_in_batches(db: Database, records: list[Recorded], rng: random.Random) -> int:
    """Write records as the group writer would: in batches of random size; returns batches."""
    batches, i = 0, 0
    while i < len(records):
        size = rng.choice((1, 1, 2, 3, 7, 20, 100))
        db.write(records[i : i + size])
        i += size
        batches += 1
    return batches
