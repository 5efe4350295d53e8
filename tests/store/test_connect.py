"""Opening a database: a new one is created; anything that is not ours, or is newer or
damaged, is refused with a DatabaseRefused whose message says what is wrong."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kickoff.database import SCHEMA_VERSION, Database
from kickoff.database import open_connection as connect
from kickoff.errors import DatabaseRefused
from kickoff.events import model as ev
from kickoff.store.chain import Recorded
from kickoff.store.connection import APPLICATION_ID

AT = datetime(2026, 1, 1, tzinfo=UTC)


def make_kickoff_db(path: Path, tasks: int = 2000) -> bytes:
    """A closed, checkpointed kickoff database with some events; returns its bytes."""
    db = Database(path)
    db.write(
        [
            Recorded(i, AT, ev.TaskSubmitted(task_id=i, command="x" * 100))
            for i in range(1, tasks + 1)
        ]
    )
    db.close()
    assert not Path(f"{path}-wal").exists()  # the last close checkpointed the WAL
    return path.read_bytes()


def refused(path: Path, *, readonly: bool = False) -> str:
    with pytest.raises(DatabaseRefused) as info:
        connect(path, readonly=readonly).close()
    message = info.value.message
    assert str(path) in message
    assert "Traceback" not in message
    return message


def test_a_new_database_is_created_with_our_identity(db_path: Path) -> None:
    conn = connect(db_path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"events", "tasks", "workers", "task_counts", "projection_state"} <= tables
    conn.close()
    connect(db_path).close()  # and it opens again


def test_an_empty_file_is_refused_not_taken_for_a_new_database(db_path: Path) -> None:
    """A database emptied by accident must not quietly become a new one (ids from 1 again)."""
    db_path.touch()
    message = refused(db_path)
    assert "empty file (0 bytes)" in message and "restore it from a backup" in message
    assert "delete it" in message
    assert db_path.stat().st_size == 0  # left as it was
    db_path.unlink()
    connect(db_path).close()  # deleted, it is a new database


def test_a_new_database_appears_whole_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "k.db"
    connect(path).close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["k.db"]
    header = path.read_bytes()[:100]
    pages = int.from_bytes(header[28:32], "big") * int.from_bytes(header[16:18], "big")
    assert path.stat().st_size == pages > 0  # complete on disk, not only in a WAL


def test_a_file_that_is_not_sqlite_is_refused(db_path: Path) -> None:
    db_path.write_text("these are my notes, not a database\n" * 100)
    assert "not a SQLite database" in refused(db_path)
    assert db_path.read_text().startswith("these are my notes")  # left alone


@pytest.mark.parametrize("keep", [5, 16, 60, 100, 4096, 0.5, -1])
def test_a_truncated_database_is_refused(db_path: Path, keep: float) -> None:
    data = make_kickoff_db(db_path)
    size = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    db_path.write_bytes(data[:size])
    assert "truncated" in refused(db_path)


def test_another_programs_sqlite_database_is_refused(db_path: Path) -> None:
    other = sqlite3.connect(db_path)
    other.execute("CREATE TABLE recipes (name TEXT)")
    other.commit()
    other.close()
    assert "not a kickoff database" in refused(db_path)
    other = sqlite3.connect(db_path)
    assert other.execute("SELECT name FROM sqlite_master").fetchall() == [("recipes",)]
    other.close()


def test_a_database_from_a_newer_kickoff_is_refused(db_path: Path) -> None:
    make_kickoff_db(db_path, tasks=3)
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    message = refused(db_path)
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert "upgrade kickoff" in message
    assert "upgrade kickoff" in refused(db_path, readonly=True)


def test_readonly_refuses_a_missing_or_empty_database(tmp_path: Path) -> None:
    assert "no database" in refused(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    assert "empty" in refused(empty, readonly=True)


def test_readonly_connection_cannot_write(db_path: Path) -> None:
    make_kickoff_db(db_path, tasks=3)
    conn = connect(db_path, readonly=True)
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("INSERT INTO meta (key, value) VALUES ('a', 'b')")
    conn.close()
