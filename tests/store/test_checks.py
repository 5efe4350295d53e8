"""Start-up checks (`Database.open_checked()`): a sound database always loads; every
piece of the checkpoint start-up uses is compared with the log, and a difference is
refused, blamed on the projection or on the log. tests/store/test_damage.py does the same
with bytes flipped in real files under a real server.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kickoff.clock import from_text, to_text
from kickoff.database import Database
from kickoff.errors import DatabaseRefused
from kickoff.events import model as ev
from kickoff.projections import checkpoint
from kickoff.store.chain import Recorded
from kickoff.store.schema import TRIGGERS
from kickoff.store.sqlite import SqliteRecorder
from tests.audit.conftest import play
from tests.store._checks import write_in_batches
from tests.unit._sim import Sim, random_operations

DATA = Path(__file__).parent.parent / "data"


def simulated(path: Path, seed: int, steps: int = 1200) -> Sim:
    sim = Sim().run(random_operations(random.Random(seed), steps))
    db = Database(path)
    write_in_batches(db, sim.records, random.Random(seed))
    db.close()
    return sim


def load_checked(path: Path) -> object:
    db = Database(path)
    try:
        state, _ = db.open_checked()
        return state
    finally:
        db.close()


def refusal(path: Path) -> str:
    with pytest.raises(DatabaseRefused) as caught:
        load_checked(path)
    assert str(path) in caught.value.message
    return caught.value.message


@pytest.mark.parametrize("seed", range(8))
def test_a_sound_database_always_loads(tmp_path: Path, seed: int) -> None:
    """No false alarm: random runs (requeues, lost workers, tag changes, cancels, keys)."""
    sim = simulated(tmp_path / "k.db", seed)
    assert load_checked(tmp_path / "k.db") == sim.state


@pytest.mark.parametrize("seed", range(4))
def test_a_sound_database_flags_no_row_in_sql(tmp_path: Path, seed: int) -> None:
    """The SQL pass flags nothing on a sound database: each row it flags is decoded again in
    Python, which start-up cannot afford for every pending task of a million (a condition
    compared without parentheses, `1 IS a IS NULL AND b`, flagged them all: 20 s)."""
    simulated(tmp_path / "k.db", seed)
    conn = sqlite3.connect(tmp_path / "k.db")
    recorder = SqliteRecorder(conn)
    seq = checkpoint.checkpoint_seq(conn)
    flagged = {
        agreement.where: list(recorder.disagreeing(agreement, checkpoint_seq=seq))
        for agreement in (*checkpoint.TASK_AGREEMENTS, *checkpoint.WORKER_AGREEMENTS)
    }
    conn.close()
    assert {where: keys for where, keys in flagged.items() if keys} == {}


def test_the_service_written_scenario_loads(tmp_path: Path) -> None:
    load_checked(play(tmp_path / "scenario.db").path)


@pytest.mark.parametrize("name", ["v1.db", "v1-compacted.db", "v2.db"])
def test_an_old_database_is_upgraded_and_loads(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    shutil.copy(DATA / name, path)
    load_checked(path)


def tamper(path: Path, sql: str, *params: object) -> None:
    """Change the database as a bad tool would (the log's triggers dropped meanwhile)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for name in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    conn.execute(sql, params)
    for sql_text in TRIGGERS.values():
        conn.execute(sql_text)
    conn.close()


def one(path: Path, sql: str, *params: object) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def sound(tmp_path: Path) -> Path:
    """A database with pending, running and cancelling tasks, live workers and keys."""
    path = tmp_path / "sound.db"
    simulated(path, 3)
    conn = sqlite3.connect(path)
    states = {s for (s,) in conn.execute("SELECT DISTINCT state FROM tasks")}
    conn.close()
    assert {"pending", "running"} <= states
    return path


def live_task(path: Path, state: str = "pending", extra: str = "") -> int:
    return int(one(path, f"SELECT min(id) FROM tasks WHERE state = ? {extra}", state))  # type: ignore[call-overload]


FIRST_ALIVE = "(SELECT min(id) FROM workers WHERE state = 'alive')"


def copy_task(path: Path, task_id: int, new_id: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    row = list(conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone())
    row[0] = new_id
    conn.execute(f"INSERT INTO tasks VALUES ({', '.join('?' * len(row))})", row)
    conn.execute("UPDATE task_counts SET n = n + 1 WHERE state = ?", (row[1],))
    conn.close()


def finish_as(path: Path, was: str, state: str) -> None:
    """A finished task's row says it ended another way, and task_counts agrees with it."""
    task_id = live_task(path, was)
    tamper(path, "UPDATE tasks SET state = ? WHERE id = ?", state, task_id)
    tamper(path, "UPDATE task_counts SET n = n - 1 WHERE state = ?", was)
    tamper(path, "UPDATE task_counts SET n = n + 1 WHERE state = ?", state)


PROJECTION_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "command": (
        lambda p: tamper(p, "UPDATE tasks SET command = 'rm -rf ~' WHERE id = ?", live_task(p)),
        "command",
    ),
    "require": (
        lambda p: tamper(p, """UPDATE tasks SET require = '["zz"]' WHERE id = ?""", live_task(p)),
        "require",
    ),
    "priority": (
        lambda p: tamper(p, "UPDATE tasks SET priority = 99 WHERE id = ?", live_task(p)),
        "priority",
    ),
    "max_attempts": (
        lambda p: tamper(p, "UPDATE tasks SET max_attempts = 9 WHERE id = ?", live_task(p)),
        "max_attempts",
    ),
    "timeout": (
        lambda p: tamper(p, "UPDATE tasks SET timeout_s = 1.5 WHERE id = ?", live_task(p)),
        "timeout_s",
    ),
    "running -> pending": (
        lambda p: tamper(
            p,
            "UPDATE tasks SET state = 'pending', worker_id = NULL WHERE id = ?",
            live_task(p, "running"),
        ),
        "state",
    ),
    "another worker": (
        lambda p: tamper(
            p, "UPDATE tasks SET worker_id = 'w99' WHERE id = ?", live_task(p, "running")
        ),
        "worker_id",
    ),
    "attempt": (
        lambda p: tamper(
            p, "UPDATE tasks SET attempt = attempt + 1 WHERE id = ?", live_task(p, "running")
        ),
        "attempt",
    ),
    "idempotency key of a finished task": (
        lambda p: tamper(
            p,
            "UPDATE tasks SET idempotency_key = 'other' WHERE id = (SELECT min(id) FROM tasks "
            "WHERE idempotency_key IS NOT NULL "
            "AND state NOT IN ('pending', 'running', 'cancelling'))",
        ),
        "idempotency_key",
    ),
    "worker tags": (
        lambda p: tamper(
            p,
            f"""UPDATE workers SET tags = '["x"]' WHERE id = {FIRST_ALIVE}""",
        ),
        "tags",
    ),
    "worker slots": (
        lambda p: tamper(
            p,
            f"UPDATE workers SET slots = 64 WHERE id = {FIRST_ALIVE}",
        ),
        "slots",
    ),
    "passes of a task passed over": (
        lambda p: tamper(
            p, "UPDATE tasks SET passes = passes + 1 WHERE id = ?", live_task(p, extra="AND passes")
        ),
        "passes",
    ),
    "passes of a task never passed over": (
        lambda p: tamper(
            p, "UPDATE tasks SET passes = 3 WHERE id = ?", live_task(p, extra="AND NOT passes")
        ),
        "passes is 3 in the `tasks` projection but 0 in the log",
    ),
    "group cap": (
        lambda p: tamper(p, "UPDATE groups SET max_running = 7 WHERE max_running IS NOT NULL"),
        "max_running is 7",
    ),
    "group name": (
        lambda p: tamper(p, "UPDATE groups SET name = 'other' WHERE id = 1"),
        "group 1: name is 'other'",
    ),
    "a group lost": (lambda p: tamper(p, "DELETE FROM groups WHERE id = 1"), "not in `groups`"),
    "a lost worker alive": (
        lambda p: tamper(
            p,
            "UPDATE workers SET state = 'alive' WHERE id = (SELECT min(id) FROM workers "
            "WHERE state = 'lost')",
        ),
        "state is 'alive' in the `workers` projection but 'lost' in the log",
    ),
    "a live worker stopped": (
        lambda p: tamper(p, f"UPDATE workers SET state = 'stopped' WHERE id = {FIRST_ALIVE}"),
        "state is 'stopped' in the `workers` projection but 'alive' in the log",
    ),
    "a failed task succeeded": (
        lambda p: finish_as(p, "failed", "succeeded"),
        "state is 'not failed or cancelled' in the `tasks` projection but 'failed' in the log",
    ),
    "a succeeded task failed": (
        lambda p: finish_as(p, "succeeded", "failed"),
        "state is 'failed' in the `tasks` projection but 'not failed or cancelled' in the log",
    ),
    "a cancelled task failed": (
        lambda p: finish_as(p, "cancelled", "failed"),
        "state is 'failed' in the `tasks` projection but 'cancelled' in the log",
    ),
    "finished counts": (
        lambda p: tamper(p, "UPDATE task_counts SET n = n + 1 WHERE state = 'succeeded'"),
        "task_counts says",
    ),
    "a task row lost": (
        lambda p: tamper(p, "DELETE FROM tasks WHERE id = ?", live_task(p)),
        "task_counts",
    ),
    "a task nobody submitted": (lambda p: copy_task(p, live_task(p), 100_000), "never submitted"),
    "a worker forgotten": (
        lambda p: tamper(p, "DELETE FROM workers WHERE state != 'alive'"),
        "only in the log",
    ),
    "checkpoint ahead of the log": (
        lambda p: tamper(p, "UPDATE projection_state SET last_seq = last_seq + 5"),
        "not in the log",
    ),
}


@pytest.mark.parametrize("damage", sorted(PROJECTION_DAMAGE))
def test_a_projection_that_disagrees_with_the_log_is_refused(sound: Path, damage: str) -> None:
    change, needle = PROJECTION_DAMAGE[damage]
    load_checked(sound)
    change(sound)
    message = refusal(sound)
    assert needle in message
    assert "projections rebuild" in message or "not in the log" in message


def test_a_changed_submission_in_the_log_is_blamed_on_the_log(sound: Path) -> None:
    task_id = live_task(sound)
    tamper(
        sound,
        "UPDATE events SET payload = replace(payload, '\"priority\":', '\"priority\":1') "
        "WHERE task_id = ? AND type = 'TaskSubmitted'",
        task_id,
    )
    message = refusal(sound)
    assert f"task {task_id}" in message and "does not verify" in message
    assert "restore it from a backup" in message and "projections rebuild" not in message


def test_a_payload_that_is_not_json_is_found(sound: Path) -> None:
    task_id = live_task(sound)
    tamper(
        sound,
        "UPDATE events SET payload = substr(payload, 2) "
        "WHERE task_id = ? AND type = 'TaskSubmitted'",
        task_id,
    )
    message = refusal(sound)
    assert f"task {task_id}" in message and "unreadable" in message


def test_the_checkpoints_own_row_must_verify(sound: Path) -> None:
    last = one(sound, "SELECT max(seq) FROM events")
    tamper(sound, "UPDATE events SET at = '2020-01-01T00:00:00.000000Z' WHERE seq = ?", last)
    assert f"seq {last}" in refusal(sound)


def test_a_tail_after_the_checkpoint_is_verified(sound: Path) -> None:
    """Projections behind the log (here: all of it): the tail is folded, each row checked."""
    tamper(sound, "UPDATE projection_state SET last_seq = 0")
    for table in ("tasks", "workers", "groups"):
        tamper(sound, f"DELETE FROM {table}")
    tamper(sound, "UPDATE task_counts SET n = 0")
    load_checked(sound)  # sound: the whole log is the tail
    middle = int(one(sound, "SELECT max(seq) / 2 FROM events"))  # type: ignore[call-overload]
    tamper(sound, "UPDATE events SET payload = payload || ' ' WHERE seq = ?", middle)
    assert f"does not verify at seq {middle}" in refusal(sound)


@pytest.fixture
def retrying(tmp_path: Path) -> Path:
    """Tasks waiting on a delayed retry, due at times to the microsecond (the fractions a
    float delay gives), one claimed since: their `retry_at` is the checkpoint's to check."""
    at = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    events: list[ev.Event] = [ev.WorkerRegistered(worker_id="w1", name="a", slots=8)]
    for task_id, delay in ((1, 30.0), (2, 0.1), (3, 2.7182818), (4, 59.9999996)):
        events += [
            ev.TaskSubmitted(task_id=task_id, command="false", retries=2, retry_delay_s=delay),
            ev.TaskClaimed(task_id=task_id, worker_id="w1", attempt=1),
            ev.TaskCompleted(
                task_id=task_id,
                worker_id="w1",
                attempt=1,
                exit_code=1,
                duration_s=0.5,
                retry_in_s=delay,
            ),
        ]
    records = [
        Recorded(seq, at + timedelta(microseconds=7 * seq), event)
        for seq, event in enumerate(events, 1)
    ]
    path = tmp_path / "retrying.db"
    db = Database(path)
    db.write(records)
    db.close()
    return path


def test_retries_due_agree_to_the_microsecond(retrying: Path) -> None:
    conn = sqlite3.connect(retrying)
    recorder = SqliteRecorder(conn)
    seq = checkpoint.checkpoint_seq(conn)
    assert [
        key
        for agreement in checkpoint.TASK_AGREEMENTS
        for key in recorder.disagreeing(agreement, checkpoint_seq=seq)
    ] == []
    conn.close()
    load_checked(retrying)


@pytest.mark.parametrize("later_us", [1_000_000, 2, -2])
def test_a_retry_due_at_another_time_is_refused(retrying: Path, later_us: int) -> None:
    due = str(one(retrying, "SELECT retry_at FROM tasks WHERE id = 3"))
    moved = to_text(from_text(due) + timedelta(microseconds=later_us))
    tamper(retrying, "UPDATE tasks SET retry_at = ? WHERE id = 3", moved)
    assert f"task 3: retry_at is {moved!r} in the `tasks` projection" in refusal(retrying)
