"""The database (kickoff/database.py): log and projections written in one transaction, run
against a file and against `:memory:` (one abstract class; each subclass only says how to
open a database). The recorder's own contract is tests/store/test_recorder.py.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kickoff.database import Database, replay
from kickoff.errors import DatabaseRefused
from kickoff.events import model as ev
from kickoff.store.chain import GENESIS, Recorded, chain_hash, joined, to_rows
from kickoff.store.sqlite import SqliteRecorder
from tests.store._checks import assert_log_is_whole, assert_projections_agree_with, write_in_batches
from tests.unit._sim import Sim, random_operations

AT = datetime(2026, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)


def some_records(start: int = 1, n: int = 5) -> list[Recorded]:
    return [
        Recorded(seq, AT, ev.TaskSubmitted(task_id=seq, command=f"echo {seq}"))
        for seq in range(start, start + n)
    ]


def events_count(db: Database) -> int:
    return int(db.conn.execute("SELECT count(*) FROM events").fetchone()[0])


class DatabaseContract:
    """What a database must do, on any file. Subclasses provide the `db` fixture."""

    @pytest.fixture
    def db(self) -> Iterator[Database]:
        raise NotImplementedError

    def test_a_new_log_is_empty(self, db: Database) -> None:
        assert (db.recorder.last_seq, db.recorder.last_hash) == (0, GENESIS)
        assert [r.decode() for r in db.recorder.rows()] == []
        assert db.replay() == Sim().state

    def test_append_and_read_back(self, db: Database) -> None:
        sim = Sim().run(random_operations(random.Random(1), 150))
        write_in_batches(db, sim.records, random.Random(1))
        assert [r.decode() for r in db.recorder.rows()] == sim.records
        assert db.replay() == sim.state
        assert_log_is_whole(db.conn)
        assert_projections_agree_with(db.conn, sim.state)

    def test_rows_returned_are_the_rows_stored(self, db: Database) -> None:
        rows = db.write(some_records())
        assert list(db.recorder.rows()) == rows
        assert (db.recorder.last_seq, db.recorder.last_hash) == (5, rows[-1].hash)
        stored = db.conn.execute("SELECT at, task_id, worker_id FROM events WHERE seq = 2")
        assert stored.fetchone() == ("2026-02-03T04:05:06.789012Z", 2, None)

    def test_hash_chain_covers_every_column(self, db: Database) -> None:
        rows = db.write(some_records())
        prev = GENESIS
        for row in rows:
            assert row.hash == chain_hash(
                prev,
                row.seq,
                row.at,
                row.type,
                row.version,
                row.task_id,
                row.worker_id,
                row.payload,
            )
            changed = chain_hash(
                prev,
                row.seq,
                row.at,
                row.type,
                row.version,
                row.task_id,
                row.worker_id,
                row.payload.replace("echo", "ecHo"),
            )
            assert changed != row.hash
            prev = row.hash
        assert len({r.hash for r in rows}) == len(rows)

    def test_seq_must_follow_the_tail(self, db: Database) -> None:
        db.write(some_records(1, 3))
        for bad in (
            some_records(3, 2),
            some_records(5, 2),
            [*some_records(4, 1), *some_records(6, 1)],
        ):
            with pytest.raises(DatabaseRefused, match="out of order"):
                db.write(bad)
            assert events_count(db) == 3
        db.write(some_records(4, 2))  # the tail survived the refusals
        assert_log_is_whole(db.conn)

    def test_pre_encoded_rows_are_the_rows_the_log_encodes(self, db: Database) -> None:
        """The server encodes as it records; the rows are byte-equal to the log's own, and
        rows that do not follow the tail (seq or hash) are refused before any is written."""
        db.write(some_records(1, 3))
        tail = (db.recorder.last_seq, db.recorder.last_hash)
        encode = db.recorder.encode
        first = encode(db.recorder.last_hash, 3, some_records(4, 2))
        second = encode(first.rows[-1].hash, 5, some_records(6, 3))
        assert first.rows == to_rows(tail[1], 3, some_records(4, 2))
        for bad in (
            encode(GENESIS, 3, some_records(4, 2)),  # the wrong previous hash
            encode(tail[1], 2, some_records(3, 2)),  # a repeated seq
            second,  # a gap
        ):
            with pytest.raises(DatabaseRefused, match="out of order"):
                db.write(some_records(bad.after_seq + 1, len(bad.rows)), bad)
            assert events_count(db) == 3
        with pytest.raises(DatabaseRefused, match="out of order"):
            joined([second, first])
        both = joined([first, second])
        assert db.write(some_records(4, 5), both) == both.rows
        assert list(db.recorder.rows()) == [*list(db.recorder.rows())[:3], *both.rows]
        assert_log_is_whole(db.conn)

    def test_a_batch_that_fails_half_way_leaves_nothing(self, db: Database) -> None:
        db.write(some_records(1, 2))
        before = db.conn.execute("SELECT * FROM tasks").fetchall()
        # The log accepts the claim; its projection finds no task 99 and the batch fails.
        bad = [
            *some_records(3, 2),
            Recorded(5, AT, ev.TaskClaimed(task_id=99, worker_id="w1", attempt=1)),
        ]
        with pytest.raises(Exception):  # noqa: B017 - any error, as long as nothing is left
            db.write(bad)
        assert events_count(db) == 2
        assert db.conn.execute("SELECT * FROM tasks").fetchall() == before
        db.write(some_records(3, 1))
        assert_log_is_whole(db.conn)

    @pytest.mark.parametrize(
        "sql",
        [
            "UPDATE events SET payload = '{}' WHERE seq = 2",
            "UPDATE events SET seq = seq + 100",
            "DELETE FROM events WHERE seq = 3",
            "DELETE FROM events",
        ],
    )
    def test_the_database_refuses_update_and_delete(self, db: Database, sql: str) -> None:
        rows = db.write(some_records())
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.conn.execute(sql)
        assert list(db.recorder.rows()) == rows

    @pytest.mark.parametrize("verb", ["INSERT OR REPLACE", "REPLACE"])
    def test_the_database_refuses_replace(self, db: Database, verb: str) -> None:
        """REPLACE is an UPDATE in disguise: it deletes the old row without the trigger."""
        rows = db.write(some_records())
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.conn.execute(
                f"{verb} INTO events SELECT seq, at, type, version, task_id, 'w666', payload, "
                "hash FROM events WHERE seq = 2"
            )
        assert list(db.recorder.rows()) == rows

    def test_reading_ranges_and_chunks(self, db: Database) -> None:
        rows = db.write(some_records(1, 50))
        assert list(db.recorder.rows(chunk=7)) == rows
        assert list(db.recorder.rows(10, until_seq=20, chunk=3)) == rows[10:20]
        assert [r.seq for r in db.recorder.rows(45)] == [46, 47, 48, 49, 50]
        assert list(db.recorder.rows(50)) == []

    def test_replay_until_a_seq_is_the_state_then(self, db: Database) -> None:
        sim = Sim()
        cut = None
        for i, op in enumerate(random_operations(random.Random(5), 120)):
            sim.run([op])
            if i == 60:
                cut, then = sim.state.last_seq, sim.state.snapshot()
        db.write(sim.records)
        assert cut is not None
        assert replay(db.recorder, until_seq=cut).snapshot() == then
        assert replay(db.recorder) == sim.state

    @pytest.mark.parametrize("variables", [None, 100, 11])
    def test_big_batches_take_many_rows_per_insert(
        self, db: Database, variables: int | None
    ) -> None:
        """Rows go in several per INSERT, in power-of-two chunks that fit SQLite's limit
        on bound variables (an old SQLite allows 999; 11 leaves one task row per statement)."""
        if variables is not None:
            db.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variables)
        sizes = (1, 2, 511, 512, 513, 1000, 1300) if variables is None else (1, 7, 100, 300)
        seq, stored = 0, []
        for size in sizes:
            rows = db.write(some_records(seq + 1, size))
            assert [r.seq for r in rows] == list(range(seq + 1, seq + size + 1))
            stored.extend(rows)
            seq += size
        assert list(db.recorder.rows()) == stored
        assert assert_log_is_whole(db.conn) == seq
        state = db.replay()
        assert_projections_agree_with(db.conn, state)
        ids = [r[0] for r in db.conn.execute("SELECT id FROM tasks ORDER BY id")]
        assert ids == list(range(1, seq + 1))

    def test_missing_values_are_stored_as_null(self, db: Database) -> None:
        """Bulk inserts bind a zero-length blob for None (see sqlite.NULL): never stored."""
        db.write(
            [
                Recorded(1, AT, ev.WorkerRegistered(worker_id="w1", name="n")),
                Recorded(2, AT, ev.TaskSubmitted(task_id=1, command="a")),
                Recorded(
                    3,
                    AT,
                    ev.TaskSubmitted(
                        task_id=2,
                        command="b",
                        timeout_s=1.5,
                        idempotency_key="k",
                        submitted_by="127.0.0.1",
                    ),
                ),
                Recorded(4, AT, ev.ServerStarted(version="v", heartbeat_timeout_s=1.0)),
            ]
        )
        events = db.conn.execute(
            "SELECT typeof(task_id), typeof(worker_id), typeof(hash) FROM events ORDER BY seq"
        )
        assert events.fetchall() == [
            ("null", "text", "blob"),
            ("integer", "null", "blob"),
            ("integer", "null", "blob"),
            ("null", "null", "blob"),
        ]
        tasks = db.conn.execute(
            "SELECT timeout_s, idempotency_key, submitted_by FROM tasks ORDER BY id"
        )
        assert tasks.fetchall() == [(None, None, None), (1.5, "k", "127.0.0.1")]

    def test_the_recorder_needs_no_database_object(self, db: Database) -> None:
        """The recorder works on a bare connection, inside the caller's transaction."""
        recorder = SqliteRecorder(db.conn)
        db.conn.execute("BEGIN")
        rows = recorder.insert(some_records(1, 2))
        db.conn.execute("ROLLBACK")
        recorder.reset()
        assert (recorder.last_seq, recorder.last_hash) == (0, GENESIS)
        assert rows == to_rows(GENESIS, 0, some_records(1, 2))


class TestFileDatabase(DatabaseContract):
    @pytest.fixture
    def db(self, tmp_path: Path) -> Iterator[Database]:
        db = Database(tmp_path / "log.db")
        yield db
        db.close()

    def test_the_tail_survives_a_reopen(self, db: Database) -> None:
        rows = db.write(some_records(1, 4))
        db.close()
        db = Database(db.path)
        try:
            assert (db.recorder.last_seq, db.recorder.last_hash) == (4, rows[-1].hash)
            db.write(some_records(5, 2))
            assert_log_is_whole(db.conn)
        finally:
            db.close()


class TestMemoryDatabase(DatabaseContract):
    @pytest.fixture
    def db(self) -> Iterator[Database]:
        db = Database(":memory:")
        yield db
        db.close()
