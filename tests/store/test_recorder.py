"""The recorder contract: what every backend of the log must do (store/recorder.py).

One abstract class, as eventsourcing's tests/persistence.py has one per recorder ABC; each
subclass says how to open a database and how to damage a row behind the recorder's back.
SQLite runs it on a file and on `:memory:`; PostgreSQL (issue 18) adds a subclass.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kickoff.clock import to_text
from kickoff.database import Database
from kickoff.errors import DatabaseRefused
from kickoff.events import model as ev
from kickoff.store.chain import GENESIS, Recorded, Row, joined, to_rows
from kickoff.store.query import Query, run
from kickoff.store.recorder import Agreement, Recorder
from kickoff.store.schema import TRIGGERS
from kickoff.store.sqlite import SqliteRecorder

T0 = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def story() -> list[Recorded]:
    """Two workers, three tasks: one runs and ends, one waits, one is cancelled; heartbeats."""
    events: list[tuple[float, ev.Event]] = [
        (0, ev.ServerStarted(version="t", heartbeat_timeout_s=30.0)),
        (1, ev.WorkerRegistered(worker_id="w1", name="a", tags=frozenset({"cpu"}))),
        (1, ev.WorkerRegistered(worker_id="w2", name="b", tags=frozenset({"gpu"}), slots=2)),
        (2, ev.TaskSubmitted(task_id=1, command="echo one", require=frozenset({"cpu"}))),
        (2, ev.TaskSubmitted(task_id=2, command="echo two", timeout_s=1.5)),
        (3, ev.TaskClaimed(task_id=1, worker_id="w1", attempt=1)),
        (4, ev.WorkerHeartbeat(worker_id="w1", running=((1, 1),))),
        (5, ev.WorkerHeartbeat(worker_id="w2")),
        (6, ev.WorkerHeartbeat(worker_id="w1", running=((1, 1),))),
        (7, ev.TaskCompleted(task_id=1, worker_id="w1", attempt=1, exit_code=0, duration_s=4)),
        (8, ev.TaskSubmitted(task_id=3, command="sleep 9", idempotency_key="k")),
        (9, ev.TaskCancelRequested(task_id=3)),
        (9, ev.TaskCancelled(task_id=3, attempt=0)),
        (10, ev.WorkerTagsChanged(worker_id="w2", tags=frozenset({"gpu", "big"}))),
        (11, ev.WorkerHeartbeat(worker_id="w2")),
    ]
    return [Recorded(seq, at(t), event) for seq, (t, event) in enumerate(events, 1)]


class RecorderContract:
    """What every recorder does. Subclasses provide `database` and `tamper`."""

    @pytest.fixture
    def database(self) -> Iterator[Database]:
        raise NotImplementedError

    def tamper(self, database: Database, seq: int) -> None:
        """Change row `seq`'s payload behind the recorder's back (its hash left alone)."""
        raise NotImplementedError

    @pytest.fixture
    def recorder(self, database: Database) -> Recorder:
        return database.recorder

    @pytest.fixture
    def written(self, database: Database) -> list[Row]:
        return database.write(story())

    def q(self, database: Database, query: Query) -> Any:
        return run(database.conn, query)

    # -- an empty log ------------------------------------------------------------

    def test_a_new_log_is_empty(self, database: Database, recorder: Recorder) -> None:
        assert (recorder.last_seq, recorder.last_hash) == (0, GENESIS)
        assert list(recorder.rows()) == list(recorder.verified_rows()) == []
        assert self.q(database, recorder.select()) == []
        assert self.q(database, recorder.tail()) == 0
        assert self.q(database, recorder.count()) == 0
        assert self.q(database, recorder.first_at()) is None
        assert self.q(database, recorder.last_task_id()) == 0
        assert recorder.runs() == [] and recorder.compactions() == []
        assert recorder.hash_at(0) == GENESIS and recorder.hash_at(1) is None
        assert recorder.quick_check() is None
        assert recorder.schema_problems() == []

    # -- appending ---------------------------------------------------------------

    def test_what_is_appended_reads_back_as_the_chain_defines_it(
        self, database: Database, recorder: Recorder, written: list[Row]
    ) -> None:
        assert written == to_rows(GENESIS, 0, story())
        assert list(recorder.rows()) == written == list(recorder.verified_rows())
        assert [r.decode() for r in written] == story()
        assert (recorder.last_seq, recorder.last_hash) == (15, written[-1].hash)
        assert all(recorder.row_verifies(r) for r in written)
        assert recorder.hash_at(7) == written[6].hash

    def test_encoded_ahead_equals_encoded_on_insert(
        self, database: Database, recorder: Recorder
    ) -> None:
        records = story()
        first = recorder.encode(GENESIS, 0, records[:4])
        second = recorder.encode(first.rows[-1].hash, 4, records[4:])
        assert [*first.rows, *second.rows] == to_rows(GENESIS, 0, records)
        assert database.write(records, joined([first, second])) == to_rows(GENESIS, 0, records)

    def test_a_batch_must_follow_the_tail(
        self, database: Database, recorder: Recorder, written: list[Row]
    ) -> None:
        more = [Recorded(16, at(20), ev.WorkerHeartbeat(worker_id="w1"))]
        for bad_seq in (15, 17):
            with pytest.raises(DatabaseRefused, match="out of order"):
                database.write([more[0]._replace(seq=bad_seq)])
        with pytest.raises(DatabaseRefused, match="out of order"):
            database.write(more, recorder.encode(GENESIS, 15, more))  # the wrong hash
        with pytest.raises(DatabaseRefused, match="out of order"):
            recorder.encode(GENESIS, 0, [more[0]])  # a gap
        assert self.q(database, recorder.tail()) == 15
        assert database.write(more)[0].seq == 16

    def test_a_rolled_back_insert_is_forgotten_by_reset(
        self, database: Database, recorder: Recorder, written: list[Row]
    ) -> None:
        database.conn.execute("BEGIN")
        recorder.insert([Recorded(16, at(20), ev.WorkerHeartbeat(worker_id="w1"))])
        database.conn.execute("ROLLBACK")
        recorder.reset()
        assert (recorder.last_seq, recorder.last_hash) == (15, written[-1].hash)

    # -- selecting ---------------------------------------------------------------

    @pytest.mark.parametrize(
        ("filters", "seqs"),
        [
            ({}, list(range(1, 16))),
            ({"after_seq": 12}, [13, 14, 15]),
            ({"after_seq": 3, "until_seq": 5}, [4, 5]),
            ({"since": to_text(at(9))}, [12, 13, 14, 15]),
            ({"until": to_text(at(1))}, [1, 2, 3]),
            ({"types": ["TaskSubmitted"]}, [4, 5, 11]),
            ({"types": ["TaskSubmitted", "TaskClaimed"], "after_seq": 4}, [5, 6, 11]),
            ({"types": ["NoSuchType"]}, []),
            ({"types": ["WorkerRegistered"]}, [2, 3]),
            ({"types": ["WorkerRegistered", "WorkerTagsChanged"], "until_seq": 13}, [2, 3]),
            ({"types": ["WorkerTagsChanged", "WorkerRegistered"], "worker_id": "w2"}, [3, 14]),
            ({"task_id": 1}, [4, 6, 10]),
            ({"task_id": 3, "types": ["TaskCancelled"]}, [13]),
            ({"worker_id": "w1"}, [2, 6, 7, 9, 10]),
            ({"worker_id": "w1", "types": ["WorkerHeartbeat"], "until_seq": 8}, [7]),
            ({"limit": 2}, [1, 2]),
            ({"limit": 2, "descending": True}, [15, 14]),
            ({"worker_id": "w2", "descending": True, "limit": 1}, [15]),
            ({"until_seq": 9, "descending": True, "limit": 1}, [9]),
        ],
    )
    def test_select_by_seq_time_type_task_and_worker(
        self,
        database: Database,
        recorder: Recorder,
        written: list[Row],
        filters: dict[str, Any],
        seqs: list[int],
    ) -> None:
        found: list[Row] = self.q(database, recorder.select(**filters))
        assert [r.seq for r in found] == seqs
        assert found == [written[s - 1] for s in seqs]

    def test_counts_and_ends(
        self, database: Database, recorder: Recorder, written: list[Row]
    ) -> None:
        assert self.q(database, recorder.count()) == 15
        assert self.q(database, recorder.count(types=["WorkerHeartbeat"])) == 4
        done = ["TaskCompleted", "TaskCancelled", "TaskFailed"]
        assert self.q(database, recorder.count(since=to_text(at(7)), types=done)) == 2
        assert self.q(database, recorder.count(worker_id="w1")) == 5  # seqs 2 6 7 9 10
        assert self.q(database, recorder.count(worker_id="w1", after_seq=6)) == 3
        beats = recorder.count(types=["WorkerHeartbeat"], worker_id="w1", after_seq=7)
        assert self.q(database, beats) == 1
        assert self.q(database, recorder.tail()) == 15
        assert self.q(database, recorder.first_at()) == to_text(T0)
        assert self.q(database, recorder.last_task_id()) == 3
        assert recorder.last_of_each_worker("WorkerHeartbeat", before_seq=15) == {9, 8}
        assert recorder.last_of_each_worker("WorkerHeartbeat", before_seq=8) == {7}

    def test_a_submission_is_checked_against_the_chain(
        self, database: Database, recorder: Recorder, written: list[Row]
    ) -> None:
        submitted = self.q(database, recorder.submission(2))
        assert submitted == story()[4].event
        with pytest.raises(DatabaseRefused, match="0 submissions"):
            self.q(database, recorder.submission(99))
        self.tamper(database, 5)
        with pytest.raises(DatabaseRefused, match="does not verify at seq 5"):
            self.q(database, recorder.submission(2))
        assert self.q(database, recorder.submission(1)) == story()[3].event

    def test_verified_rows_stop_at_a_changed_row(
        self, database: Database, recorder: Recorder, written: list[Row]
    ) -> None:
        self.tamper(database, 9)
        assert len(list(recorder.rows())) == 15  # as stored
        with pytest.raises(DatabaseRefused, match="does not verify at seq 9"):
            list(recorder.verified_rows())
        assert [r.seq for r in recorder.verified_rows(until_seq=8)] == list(range(1, 9))
        assert [r.seq for r in recorder.verified_rows(9)] == list(range(10, 16))  # 9 trusted
        bad = next(r for r in recorder.rows() if r.seq == 9)
        assert not recorder.row_verifies(bad)

    def test_a_snapshot_reads_one_state_of_the_log(
        self, database: Database, recorder: Recorder, written: list[Row]
    ) -> None:
        with recorder.snapshot():
            assert len(list(recorder.rows())) == 15

    # -- a derived table against the log -------------------------------------------

    def test_disagreeing_rows_are_found(
        self, database: Database, recorder: Recorder, written: list[Row]
    ) -> None:
        pending = Agreement(
            table="tasks",
            key="id",
            by="task_id",
            where="p.state = 'pending'",
            pick="first",
            types=("TaskSubmitted",),
            fields=(("p.command", "command"), ("p.timeout_s", "timeout_s")),
        )
        tags = Agreement(
            table="workers",
            key="id",
            by="worker_id",
            where="p.state = 'alive'",
            pick="last",
            types=("WorkerRegistered", "WorkerTagsChanged"),
            fields=(("p.tags", "tags"), ("'WorkerTagsChanged'", "@type")),
        )
        assert list(recorder.disagreeing(pending, checkpoint_seq=15)) == []
        assert list(recorder.disagreeing(tags, checkpoint_seq=15)) == ["w1"]  # never changed
        assert sorted(recorder.disagreeing(tags, checkpoint_seq=13)) == ["w1", "w2"]
        database.conn.execute("UPDATE tasks SET command = 'rm -rf /' WHERE id = 2")
        assert list(recorder.disagreeing(pending, checkpoint_seq=15)) == [2]
        assert list(recorder.disagreeing(pending, checkpoint_seq=4)) == [2]  # not yet submitted

    def test_sparse_rows_and_a_time_after_another(
        self, database: Database, recorder: Recorder
    ) -> None:
        events: list[ev.Event] = [
            ev.WorkerRegistered(worker_id="w1", name="a", slots=2),
            ev.GroupCreated(group_id=1, name="g", max_running=2),
            ev.TaskSubmitted(task_id=1, command="x", group_id=1, retries=1, retry_delay_s=2.5),
            ev.TaskSubmitted(task_id=2, command="y"),
            ev.TaskClaimed(task_id=2, worker_id="w1", attempt=1, ahead_of=1),
            ev.TaskClaimed(task_id=1, worker_id="w1", attempt=1),
            ev.TaskCompleted(
                task_id=1, worker_id="w1", attempt=1, exit_code=1, duration_s=1, retry_in_s=2.5
            ),
            ev.WorkerLost(worker_id="w1"),
        ]
        records = [Recorded(seq, at(seq + seq / 1_000_007), e) for seq, e in enumerate(events, 1)]
        database.write(records)
        sparse = self.q(database, recorder.sparse_rows(until_seq=8))
        # the group, the claim ahead, a completion that failed, the loss
        assert [r.seq for r in sparse] == [2, 5, 7, 8]
        assert [r.seq for r in self.q(database, recorder.sparse_rows(until_seq=6))] == [2, 5]
        due = Agreement(
            table="tasks",
            key="id",
            by="task_id",
            where="p.state = 'waiting'",
            pick="last",
            types=("TaskCompleted",),
            fields=(("p.retry_at", "@at+retry_in_s"),),
        )
        assert list(recorder.disagreeing(due, checkpoint_seq=8)) == []
        retry_at = database.conn.execute("SELECT retry_at FROM tasks WHERE id = 1").fetchone()[0]
        assert retry_at == to_text(records[6].at + timedelta(seconds=2.5))
        later = to_text(records[6].at + timedelta(seconds=2.5, microseconds=2))
        database.conn.execute("UPDATE tasks SET retry_at = ? WHERE id = 1", (later,))
        assert list(recorder.disagreeing(due, checkpoint_seq=8)) == [1]


class TestSqliteFileRecorder(RecorderContract):
    @pytest.fixture
    def database(self, tmp_path: Path) -> Iterator[Database]:
        db = Database(tmp_path / "log.db")
        yield db
        db.close()

    def tamper(self, database: Database, seq: int) -> None:
        _tamper(database.conn, seq)

    def test_a_snapshot_holds_while_another_connection_appends(
        self, database: Database, written: list[Row], tmp_path: Path
    ) -> None:
        other = sqlite3.connect(tmp_path / "log.db", isolation_level=None)
        recorder = SqliteRecorder(other)
        with recorder.snapshot():
            before = list(recorder.rows())
            database.write([Recorded(16, at(30), ev.WorkerHeartbeat(worker_id="w1"))])
            assert list(recorder.rows()) == before
        assert len(list(recorder.rows())) == 16
        other.close()


class TestSqliteMemoryRecorder(RecorderContract):
    @pytest.fixture
    def database(self) -> Iterator[Database]:
        db = Database(":memory:")
        yield db
        db.close()

    def tamper(self, database: Database, seq: int) -> None:
        _tamper(database.conn, seq)


def _tamper(conn: sqlite3.Connection, seq: int) -> None:
    """An UPDATE with the log's triggers out of the way (then back in place)."""
    for name in TRIGGERS:
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("UPDATE events SET payload = ' ' || payload WHERE seq = ?", (seq,))
    for sql in TRIGGERS.values():
        conn.execute(sql)


class TestPostgresRecorder(RecorderContract):
    """The contract on a real PostgreSQL (a fresh database of the session's throw-away
    cluster: tests/_postgres.py)."""

    @pytest.fixture
    def database(self, pg_url: str) -> Iterator[Database]:
        db = Database(pg_url)
        yield db
        db.close()

    def tamper(self, database: Database, seq: int) -> None:
        conn = database.conn
        conn.execute("ALTER TABLE events DISABLE TRIGGER events_no_update")
        conn.execute("UPDATE events SET payload = ' ' || payload WHERE seq = ?", (seq,))
        conn.execute("ALTER TABLE events ENABLE TRIGGER events_no_update")

    def test_the_log_refuses_update_delete_and_truncate(
        self, database: Database, written: list[Row]
    ) -> None:
        for statement in (
            "UPDATE events SET payload = '{}' WHERE seq = 3",
            "DELETE FROM events WHERE seq = 3",
            "DELETE FROM events WHERE seq = 7",  # a heartbeat, but no compaction archived it
            "TRUNCATE events",
            "TRUNCATE compacted_runs",  # (its row triggers: when a compaction wrote rows)
        ):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                database.conn.execute(statement)
        assert len(list(database.recorder.verified_rows())) == 15

    def test_a_second_writer_conflicts_instead_of_forking(
        self, database: Database, written: list[Row], pg_url: str
    ) -> None:
        from kickoff.database import open_connection, recorder_of
        from kickoff.dblocation import ServerUrl
        from kickoff.store.pgconnection import lock_exclusive

        lock = lock_exclusive(ServerUrl(pg_url))  # a server's
        with pytest.raises(DatabaseRefused, match="in use by another kickoff server"):
            lock_exclusive(ServerUrl(pg_url))
        lock.close()
        other = open_connection(pg_url)  # no lock: as a stale leader would write
        stale = recorder_of(other)
        database.write([Recorded(16, at(20), ev.WorkerHeartbeat(worker_id="w1"))])
        fork = [Recorded(16, at(21), ev.WorkerHeartbeat(worker_id="w2"))]
        with pytest.raises(sqlite3.IntegrityError, match="duplicate key"):
            stale.insert(fork, stale.encode(written[-1].hash, 15, fork))
        other.close()
        assert [r.seq for r in database.recorder.verified_rows()] == list(range(1, 17))

    def test_a_disabled_trigger_is_a_schema_problem(self, database: Database) -> None:
        database.conn.execute("ALTER TABLE events DISABLE TRIGGER events_no_delete")
        assert database.recorder.schema_problems() == [
            "trigger events_no_delete is disabled: the events table no longer refuses every "
            "DELETE it must"
        ]
