"""`kickoff migrate`: a log copied SQLite -> PostgreSQL -> SQLite keeps every row and hash,
its compaction records, and verifies; a row that does not verify, or a destination that
holds a log, is refused and nothing is written."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kickoff.audit import compact, migrate, verify
from kickoff.database import Database, open_connection, recorder_of
from kickoff.dblocation import ServerUrl
from kickoff.errors import DatabaseRefused
from kickoff.store.chain import Row
from kickoff.store.query import run
from kickoff.store.schema import TRIGGERS
from tests.store.test_recorder import story


def _rows(where: Path | ServerUrl) -> tuple[list[Row], list[object]]:
    conn = open_connection(where, readonly=True)
    try:
        recorder = recorder_of(conn)
        return list(recorder.rows()), [*recorder.compactions(), *recorder.runs()]
    finally:
        conn.close()


def _source(tmp_path: Path) -> Path:
    path = tmp_path / "a.db"
    db = Database(path)
    db.write(story())
    db.close()
    now = datetime(2026, 5, 6, 8, tzinfo=UTC)
    done = compact.compact(path, before=12, archive=tmp_path / "a.archive.db", now=now)
    assert done.archived == 1  # w1's heartbeat at seq 7 (9 is its latest)
    return path


def test_a_log_goes_to_postgresql_and_back_whole(tmp_path: Path, pg_url: str) -> None:
    source = _source(tmp_path)
    there, back = ServerUrl(pg_url), tmp_path / "back.db"
    assert migrate.migrate(source, there).events == 14
    assert migrate.migrate(there, back).compactions == 1
    assert _rows(source) == _rows(there) == _rows(back)
    for where in (there, back):
        report = verify.verify(where)
        assert report.ok, report.problems


def test_a_row_that_does_not_verify_is_refused_and_nothing_is_written(
    tmp_path: Path, pg_url: str
) -> None:
    source = _source(tmp_path)
    conn = sqlite3.connect(source, isolation_level=None)
    conn.execute(f"DROP TRIGGER {next(iter(TRIGGERS))}")  # events_no_update
    conn.execute("UPDATE events SET payload = ' ' || payload WHERE seq = 10")
    conn.close()
    with pytest.raises(DatabaseRefused, match="does not verify at seq 10"):
        migrate.migrate(source, ServerUrl(pg_url))
    assert _rows(ServerUrl(pg_url)) == ([], [])


def test_a_destination_that_holds_a_log_is_refused(tmp_path: Path, pg_url: str) -> None:
    source = _source(tmp_path)
    migrate.migrate(source, ServerUrl(pg_url))
    with pytest.raises(DatabaseRefused, match="already holds a log"):
        migrate.migrate(source, ServerUrl(pg_url))
    conn = open_connection(pg_url, readonly=True)
    assert run(conn, recorder_of(conn).tail()) == 15
    conn.close()


def test_a_log_on_postgresql_compacts_and_still_verifies(tmp_path: Path, pg_url: str) -> None:
    """compact on PostgreSQL: the archive is an SQLite file all the same (CopyArchiver)."""
    source = tmp_path / "plain.db"
    db = Database(source)
    db.write(story())
    db.close()
    there = ServerUrl(pg_url)
    migrate.migrate(source, there)
    now = datetime(2026, 5, 6, 8, tzinfo=UTC)
    archive = tmp_path / "pg.archive.db"
    done = compact.compact(there, before=12, archive=archive, now=now)
    assert (done.archived, done.first_seq, done.last_seq) == (1, 7, 7)
    rows, records = _rows(there)
    assert [r.seq for r in rows] == [s for s in range(1, 16) if s != 7]
    assert len(records) == 2  # the compaction and its run
    report = verify.verify(there)
    assert report.ok, report.problems
    assert compact.compact(there, before=10**9, archive=archive, now=now).archived == 0
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn = open_connection(there)
        try:
            conn.execute("DELETE FROM events WHERE seq = 9")  # a heartbeat no run covers
        finally:
            conn.close()
