"""The schema version and its migrations: a version 1 database (tests/data, written by
kickoff before version 2) is upgraded when a writer opens it, and reads the same before
and after; readers leave it as it is; the log's triggers are exactly the schema's."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kickoff.audit import compact
from kickoff.audit.verify import verify
from kickoff.database import SCHEMA_VERSION, Database, replay
from kickoff.database import open_connection as connect
from kickoff.events import model as ev
from kickoff.state.task_state import TaskState
from kickoff.store.chain import Recorded
from kickoff.store.schema import TRIGGERS, same_sql
from kickoff.store.sqlite import SqliteRecorder

DATA = Path(__file__).parent.parent / "data"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def copied(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    shutil.copy(DATA / name, path)
    archive = DATA / name.replace(".db", ".archive.db")
    if archive.exists():
        shutil.copy(archive, tmp_path / archive.name)
    return path


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def triggers(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
    finally:
        conn.close()


V2_TASK_COLUMNS = (
    "id, state, command, require, want, priority, attempt, max_attempts, timeout_s, "
    "worker_id, exit_code, timed_out, duration_s, output_tail, reason, idempotency_key, "
    "submitted_by, submitted_at, started_at, finished_at, updated_seq"
)  # the tasks table before schema version 3 added the workflow columns


def snapshot(path: Path) -> tuple[object, list[tuple[object, ...]], list[tuple[object, ...]]]:
    conn = connect(path, readonly=True)
    try:
        events = conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
        tasks = conn.execute(f"SELECT {V2_TASK_COLUMNS} FROM tasks ORDER BY id").fetchall()
        return replay(SqliteRecorder(conn)).snapshot(), events, tasks
    finally:
        conn.close()


def test_a_new_database_has_exactly_the_schemas_triggers(tmp_path: Path) -> None:
    Database(tmp_path / "new.db").close()
    found = triggers(tmp_path / "new.db")
    assert set(found) == set(TRIGGERS)
    assert all(same_sql(found[name], sql) for name, sql in TRIGGERS.items())
    assert user_version(tmp_path / "new.db") == SCHEMA_VERSION == 4


@pytest.mark.parametrize(
    ("name", "version"), [("v1.db", 1), ("v1-compacted.db", 1), ("v2.db", 2), ("v3.db", 3)]
)
def test_an_older_database_is_upgraded_by_a_writer(tmp_path: Path, name: str, version: int) -> None:
    path = copied(tmp_path, name)
    before = snapshot(path)
    assert user_version(path) == version  # a reader left it alone
    Database(path).close()
    assert user_version(path) == SCHEMA_VERSION
    found = triggers(path)
    assert set(found) == set(TRIGGERS)
    assert all(same_sql(found[n], sql) for n, sql in TRIGGERS.items())
    assert snapshot(path) == before  # every row and the folded state, unchanged
    archives = [tmp_path / "v1-compacted.archive.db"] if "compacted" in name else []
    report = verify(path, archives=archives)
    assert report.ok, report.problems
    Database(path).close()  # a second open does nothing more
    assert user_version(path) == SCHEMA_VERSION


@pytest.mark.parametrize(("name", "version"), [("v1.db", 1), ("v2.db", 2), ("v3.db", 3)])
def test_verify_reads_an_older_database_as_it_was_written(
    tmp_path: Path, name: str, version: int
) -> None:
    path = copied(tmp_path, name)
    report = verify(path)
    assert report.ok, report.problems
    assert any(f"schema version {version}" in note for note in report.notes)
    assert user_version(path) == version


def test_a_version_2_log_replays_and_its_tasks_gain_the_workflow_defaults(tmp_path: Path) -> None:
    """v2.db (tests/data) was written before workflows: its events upcast, the fold and the
    checkpoint agree, and the new columns hold what a rebuild gives an old task."""
    path = copied(tmp_path, "v2.db")
    db = Database(path)
    try:
        loaded, _ = db.load()
        assert db.replay() == loaded
        assert loaded.counts[TaskState.WAITING] == 0
        rows = db.conn.execute(
            "SELECT after, after_any, group_id, array_index, retries, retries_left, retry_at "
            "FROM tasks"
        ).fetchall()
        assert rows and set(rows) == {(None, None, None, None, 0, 0, None)}
    finally:
        db.close()
    assert verify(path).ok


def test_a_workflow_log_of_the_first_workflows_release_replays(tmp_path: Path) -> None:
    """v3.db (tests/data) was written by the first kickoff with workflows, before issue 14
    (TaskSubmitted v3, TaskCompleted and TaskCancelled v2), and stopped mid-way: a task
    waiting on a running one, a delayed retry, a group at its cap. Its payloads upcast;
    the fold, the checkpoint and verify agree; what it waited for it still waits for."""
    path = copied(tmp_path, "v3.db")
    conn = sqlite3.connect(path)
    versions = dict(conn.execute("SELECT type, max(version) FROM events GROUP BY type"))
    conn.close()
    assert versions["TaskSubmitted"] == 3 < ev.TaskSubmitted.VERSION
    assert versions["TaskCompleted"] == versions["TaskCancelled"] == 2
    report = verify(path)
    assert report.ok, report.problems
    db = Database(path)
    try:
        loaded, tail = db.load()
        assert tail == 0 and db.replay() == loaded
        assert loaded.waiting_for(3) == [2]  # evaluate waits on train, which was running
        assert loaded.tasks[11].state is TaskState.WAITING and loaded.retry_heap  # a retry
        assert loaded.groups[1].running == loaded.groups[1].max_running == 1  # at its cap
        assert loaded.tasks[10].state is TaskState.PENDING
        reasons = dict(db.conn.execute("SELECT id, reason FROM tasks WHERE id IN (5, 6)"))
        assert reasons == {5: "dependency 4 failed", 6: "dependency 4 failed"}
    finally:
        db.close()
    assert user_version(path) == SCHEMA_VERSION


def test_a_version_3_log_replays_and_its_tasks_and_workers_hold_no_resources(
    tmp_path: Path,
) -> None:
    """v3.db (tests/data) was written before counted resources: TaskSubmitted v4,
    TaskClaimed and WorkerRegistered v1 upcast, the fold and the checkpoint agree, and the
    new columns hold what a rebuild gives an old row."""
    path = copied(tmp_path, "v3.db")
    db = Database(path)
    try:
        loaded, _ = db.load()
        assert db.replay() == loaded
        assert all(not w.resources and not w.held for w in loaded.workers.values())
        tasks = db.conn.execute("SELECT resources, gpu_ids, passes FROM tasks").fetchall()
        assert tasks and set(tasks) == {(None, None, 0)}
        workers = db.conn.execute("SELECT resources, gpu_ids FROM workers").fetchall()
        assert workers and set(workers) == {(None, None)}
    finally:
        db.close()
    assert verify(path).ok


def trigger_rows(path: Path) -> list[tuple[object, ...]]:
    """Triggers with their place in sqlite_master: a dropped and recreated one moves."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT rowid, name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
        ).fetchall()
    finally:
        conn.close()


def more_heartbeats(path: Path, count: int) -> None:
    """Heartbeats of the scenario's last live worker, appended by a writer."""
    db = Database(path)
    try:
        state, _ = db.load()
        worker = sorted(state.workers)[-1]
        seq = state.last_seq
        db.write(
            [
                Recorded(seq + i, NOW, ev.WorkerHeartbeat(worker_id=worker))
                for i in range(1, count + 1)
            ]
        )
    finally:
        db.close()


def test_a_compaction_removes_rows_without_dropping_a_trigger(tmp_path: Path) -> None:
    path = copied(tmp_path, "v1.db")
    Database(path).close()
    before, rows = snapshot(path)[0], trigger_rows(path)
    result = compact.compact(path, before=10**9, archive=tmp_path / "a.db", now=NOW)
    assert result.archived > 0
    assert trigger_rows(path) == rows
    assert snapshot(path)[0] == before
    assert verify(path).ok


def test_an_upgraded_compacted_database_compacts_again(tmp_path: Path) -> None:
    path = copied(tmp_path, "v1-compacted.db")
    more_heartbeats(path, 6)
    result = compact.compact(path, before=10**9, archive=tmp_path / "second.db", now=NOW)
    assert result.archived == 6  # the old last row and 5 of the 6 new: the new last stays
    report = verify(path, archives=[tmp_path / "v1-compacted.archive.db"])
    assert report.ok, report.problems
    assert report.archive_checked == report.archived


def test_the_log_refuses_deletes_but_of_archived_heartbeats(tmp_path: Path) -> None:
    path = copied(tmp_path, "v1.db")
    conn = connect(path)
    beat = conn.execute("SELECT min(seq) FROM events WHERE type = 'WorkerHeartbeat'").fetchone()[0]
    other = conn.execute("SELECT min(seq) FROM events WHERE type != 'WorkerHeartbeat'").fetchone()[
        0
    ]
    for seq in (beat, other):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM events WHERE seq = ?", (seq,))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET at = at WHERE seq = ?", (beat,))
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO compactions (at, before_seq, first_seq, last_seq, count, digest, archive) "
        "VALUES ('x', 0, ?, ?, 2, x'00', 'nowhere')",
        (beat, other),
    )
    conn.execute(
        "INSERT INTO compacted_runs (first_seq, last_seq, last_hash, compaction_id) "
        "VALUES (?, ?, x'00', 1)",
        (min(beat, other), max(beat, other)),
    )
    conn.execute("DELETE FROM events WHERE seq = ?", (beat,))  # covered, a heartbeat: allowed
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events WHERE seq = ?", (other,))  # covered, but no heartbeat
    for table in ("compactions", "compacted_runs"):
        for change in (f"DELETE FROM {table}", f"UPDATE {table} SET last_seq = 0"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(change)
    conn.execute("ROLLBACK")
    conn.close()


def test_verify_names_a_changed_trigger(tmp_path: Path) -> None:
    path = copied(tmp_path, "v1.db")
    Database(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_delete")
    conn.execute(
        "CREATE TRIGGER events_no_delete BEFORE DELETE ON events WHEN 0 BEGIN SELECT 1; END"
    )
    conn.close()
    report = verify(path)
    assert [p.message for p in report.problems if p.check == "integrity"] == [
        "trigger events_no_delete was changed: the events table no longer refuses every "
        "DELETE it must"
    ]
