"""Projections rebuilt from the log equal the incrementally written ones; old rows replay."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from kickoff.clock import to_text
from kickoff.database import Database, replay
from kickoff.errors import DatabaseRefused
from kickoff.events import model as ev
from kickoff.projections import queries
from kickoff.projections.rebuild import rebuild
from kickoff.state.task_state import TaskState
from kickoff.store.chain import Recorded, chain_hash
from kickoff.store.sqlite import EVENT_VALUES, INSERT_EVENTS, SqliteRecorder
from tests.store._checks import (
    assert_log_is_whole,
    assert_projections_agree_with,
    projections,
    write_in_batches,
)
from tests.unit._sim import Sim, random_operations

AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("seed", range(4))
def test_rebuild_yields_exactly_the_live_rows(database: Database, seed: int) -> None:
    sim = Sim().run(random_operations(random.Random(seed), 1000))
    write_in_batches(database, sim.records, random.Random(seed))
    live = projections(database.conn)
    assert live["tasks"] and live["workers"]
    assert_projections_agree_with(database.conn, sim.state)
    assert rebuild(database.conn, SqliteRecorder(database.conn)) == len(sim.records)
    assert projections(database.conn) == live
    assert rebuild(database.conn, SqliteRecorder(database.conn)) == len(sim.records)  # and again
    assert projections(database.conn) == live
    assert database.replay() == sim.state
    state, tail = database.load()
    assert (state, tail) == (sim.state, 0)


def test_rebuild_of_an_empty_log(database: Database) -> None:
    empty = projections(database.conn)
    assert rebuild(database.conn, SqliteRecorder(database.conn)) == 0
    assert projections(database.conn) == empty


def test_rebuild_continues_where_writes_go_on(database: Database) -> None:
    sim = Sim().run(random_operations(random.Random(7), 400))
    half = len(sim.records) // 2
    database.write(sim.records[:half])
    rebuild(database.conn, SqliteRecorder(database.conn))
    write_in_batches(database, sim.records[half:], random.Random(7))
    assert_projections_agree_with(database.conn, sim.state)
    live = projections(database.conn)
    rebuild(database.conn, SqliteRecorder(database.conn))
    assert projections(database.conn) == live


V1_PAYLOAD = orjson.dumps(
    {
        "command": "make -j8",
        "max_attempts": 2,
        "priority": 3,
        "require": ["cpu"],
        "task_id": 1,
        "want": ["ssd"],
    },
    option=orjson.OPT_SORT_KEYS,
).decode()


def insert_raw(
    database: Database,
    seq: int,
    type_name: str,
    version: int,
    task_id: int | None,
    worker_id: str | None,
    payload: str,
) -> None:
    """A row as an older kickoff wrote it, chained correctly to the tail."""
    at = to_text(AT)
    prev = database.recorder.last_hash
    digest = chain_hash(prev, seq, at, type_name, version, task_id, worker_id, payload)
    database.conn.execute(
        f"{INSERT_EVENTS} VALUES {EVENT_VALUES}",
        (seq, at, type_name, version, task_id, worker_id, payload, digest),
    )
    database.recorder.reset()


def test_a_v1_task_submitted_row_replays(db_path: Path) -> None:
    database = Database(db_path)
    insert_raw(database, 1, "TaskSubmitted", 1, 1, None, V1_PAYLOAD)
    rebuild(database.conn, SqliteRecorder(database.conn))
    database.close()

    database = Database(db_path)  # reopened: the tail is the v1 row
    try:
        database.write(
            [
                Recorded(
                    2, AT, ev.WorkerRegistered(worker_id="w1", name="n", tags=frozenset({"cpu"}))
                ),
                Recorded(3, AT, ev.TaskClaimed(task_id=1, worker_id="w1", attempt=1)),
            ]
        )
        assert_log_is_whole(database.conn)
        state = database.replay()
        task = state.tasks[1]
        assert (task.state, task.attempt, task.priority, task.max_attempts) == (
            TaskState.RUNNING,
            1,
            3,
            2,
        )
        assert (task.shape.require, task.shape.want) == ({"cpu"}, {"ssd"})
        assert database.load() == (state, 0)
        assert_projections_agree_with(database.conn, state)
        row = queries.run(database.conn, queries.get_task(1))
        assert row["timeout_s"] is None and row["idempotency_key"] is None
        assert row["command"] == "make -j8" and row["state"] == "running"
        first = queries.run(database.conn, queries.list_events(database.recorder, limit=1))[0]
        assert first["data"]["timeout_s"] is None  # shown upcast to the current version
        assert first["data"]["submitted_by"] is None
    finally:
        database.close()


def test_a_row_from_a_newer_kickoff_stops_replay(database: Database) -> None:
    insert_raw(database, 1, "TaskSubmitted", 99, 1, None, V1_PAYLOAD)
    with pytest.raises(DatabaseRefused, match="newer"):
        replay(database.recorder)
