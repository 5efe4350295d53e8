"""`kickoff compact`: old heartbeats move to an archive; nothing else changes or breaks."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kickoff.audit import compact
from kickoff.audit.verify import verify
from kickoff.cli import run
from kickoff.database import open_connection as connect
from kickoff.database import replay
from kickoff.errors import InvalidInput
from kickoff.service import Service
from kickoff.state.decide import Completion, NewTask
from kickoff.store.sqlite import SqliteRecorder
from tests.audit.conftest import Scenario, projection_rows
from tests.audit.test_verify import tamper

NOW = datetime(2026, 2, 1, tzinfo=UTC)
ROWS = "SELECT seq, at, type, version, task_id, worker_id, payload, hash FROM events ORDER BY seq"


def rows(path: Path, sql: str = ROWS) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def state_and_projections(path: Path) -> tuple[object, object]:
    conn = connect(path, readonly=True)
    try:
        return replay(SqliteRecorder(conn)).snapshot(), projection_rows(conn)
    finally:
        conn.close()


def test_compaction_moves_only_redundant_heartbeats(scenario: Scenario, tmp_path: Path) -> None:
    db = scenario.copy(tmp_path)
    before_rows = rows(db)
    before = state_and_projections(db)
    last = before_rows[-1][0]
    archive = tmp_path / "old.db"

    result = compact.compact(db, before=last, archive=archive, now=NOW)

    after_rows = rows(db)
    heartbeats = [r for r in before_rows if r[2] == "WorkerHeartbeat"]
    assert result.archived == len(before_rows) - len(after_rows) > 15  # (idle beats: no rows)
    assert result.kept == 3  # w1, w2, w3: each one's latest heartbeat stays
    # every other event is still there, byte for byte
    assert [r for r in before_rows if r[2] != "WorkerHeartbeat"] == [
        r for r in after_rows if r[2] != "WorkerHeartbeat"
    ]
    # the archive holds exactly the removed rows, hashes and all
    removed = sorted(set(before_rows) - set(after_rows))
    assert rows(archive) == removed
    assert all(r[2] == "WorkerHeartbeat" for r in removed)
    assert before_rows[-1][2] == "WorkerHeartbeat"  # the log's last row, never removed
    assert len(removed) + result.kept + 1 == len(heartbeats)
    # the state and every projection are the same
    assert state_and_projections(db) == before
    assert after_rows[-1] == before_rows[-1]

    report = verify(db)
    assert report.ok, report.problems
    assert report.archived == report.archive_checked == result.archived
    assert report.status("archive") == "ok"


def test_verify_trusts_the_recorded_hashes_without_the_archive(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = scenario.copy(tmp_path)
    archive = tmp_path / "old.db"
    compact.compact(db, before=10**9, archive=archive, now=NOW)
    moved = archive.rename(tmp_path / "elsewhere.db")
    report = verify(db)
    assert report.ok
    assert report.archive_checked == 0 and report.archived > 0
    assert any("trusted the recorded hashes" in note for note in report.notes)
    assert run(["verify", "--db", str(db)]) == 0
    assert "trusted the recorded hashes" in capsys.readouterr().out
    # pointed at the moved archive, it checks it again
    report = verify(db, archives=[moved])
    assert report.ok and report.archive_checked == report.archived


def test_a_changed_archive_row_is_named(scenario: Scenario, tmp_path: Path) -> None:
    db = scenario.copy(tmp_path)
    archive = tmp_path / "old.db"
    compact.compact(db, before=10**9, archive=archive, now=NOW)
    seq = rows(archive)[3][0]
    tamper(
        archive, ("UPDATE events SET payload = replace(payload, 'w', 'x') WHERE seq = ?", (seq,))
    )
    report = verify(db)
    assert not report.ok
    assert report.first_bad_seq == seq
    assert report.status("archive") == "failed"


def test_the_chain_still_catches_a_removed_row_next_to_a_compacted_run(
    scenario: Scenario, tmp_path: Path
) -> None:
    db = scenario.copy(tmp_path)
    compact.compact(db, before=10**9, archive=tmp_path / "a.db", now=NOW)
    victim = rows(db, "SELECT seq FROM events WHERE type = 'TaskLeaseExpired'")[0][0]
    tamper(db, ("DELETE FROM events WHERE seq = ?", (victim,)))
    report = verify(db)
    assert report.first_bad_seq == victim


def test_compacting_twice_and_in_steps(scenario: Scenario, tmp_path: Path) -> None:
    db = scenario.copy(tmp_path)
    archive = tmp_path / "a.db"
    first = compact.compact(db, before=20, archive=archive, now=NOW)
    second = compact.compact(db, before=10**9, archive=archive, now=NOW)
    third = compact.compact(db, before=10**9, archive=archive, now=NOW)
    assert first.archived > 0 and second.archived > 0 and third.archived == 0
    report = verify(db)
    assert report.ok, report.problems
    assert report.archive_checked == first.archived + second.archived
    # small chunks: several compaction records, still one consistent chain
    (tmp_path / "second").mkdir()
    db2 = scenario.copy(tmp_path / "second")
    old_chunk = compact.CHUNK
    compact.CHUNK = 4
    try:
        result = compact.compact(db2, before=10**9, archive=tmp_path / "b.db", now=NOW)
    finally:
        compact.CHUNK = old_chunk
    assert result.chunks > 3
    assert verify(db2).ok


def test_a_time_cut_and_the_cli(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = scenario.copy(tmp_path)
    cut_at = rows(db, "SELECT at FROM events WHERE seq = 30")[0][0]
    assert run(["compact", "--db", str(db), "--before", cut_at, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["before_seq"] <= 30 and found["archived"] > 0
    assert Path(found["archive"]) == tmp_path / "copy.archive.db"
    assert all(seq < 30 for (seq,) in rows(Path(found["archive"]), "SELECT seq FROM events"))
    assert run(["compact", "--db", str(db), "--before", "100000", "--vacuum"]) == 0
    assert "archived" in capsys.readouterr().out
    assert run(["verify", "--db", str(db)]) == 0
    assert run(["compact", "--db", str(db), "--before", "soon"]) == 2


def test_an_archive_of_another_database_is_refused(scenario: Scenario, tmp_path: Path) -> None:
    one = scenario.copy(tmp_path)
    archive = tmp_path / "a.db"
    compact.compact(one, before=10**9, archive=archive, now=NOW)
    other = tmp_path / "other.db"
    asyncio.run(_tiny(other))
    with pytest.raises(InvalidInput, match="another kickoff database"):
        compact.compact(other, before=10**9, archive=archive, now=NOW)
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE x (y)").connection.commit()
    with pytest.raises(InvalidInput, match="not a kickoff archive"):
        compact.compact(other, before=10**9, archive=plain, now=NOW)


async def _tiny(path: Path) -> None:
    now = [NOW]
    service = Service(path, clock=lambda: now[0], expire_every_s=3600)
    await service.start()
    worker = await service.register(name="x", tags=frozenset(), slots=1)
    for _ in range(5):
        now[0] += timedelta(seconds=1)
        await service.heartbeat(worker, [])
    await service.stop()


def test_compaction_while_the_service_runs(tmp_path: Path) -> None:
    """The server keeps appending during and after a compaction; verify stays green."""
    db, archive = tmp_path / "live.db", tmp_path / "live.archive.db"

    async def main() -> int:
        now = [NOW]
        service = Service(db, clock=lambda: now[0], expire_every_s=3600)
        await service.start()
        worker = await service.register(name="x", tags=frozenset({"cpu"}), slots=1)
        (task,) = await service.submit([NewTask(command="true")])
        (claimed,) = await service.claim(worker, max_tasks=1, wait_s=0)
        assert claimed.task_id == task
        for _ in range(50):  # a busy worker's: each one an event
            now[0] += timedelta(seconds=1)
            await service.heartbeat(worker, [(task, 1)])
        result = await asyncio.to_thread(
            compact.compact, db, before=service.last_seq, archive=archive, now=NOW
        )
        for _ in range(5):
            await service.heartbeat(worker, [(task, 1)])
        await service.stop()
        return result.archived

    archived = asyncio.run(main())
    assert archived == 48  # 50 heartbeats: the last (the cut) and the latest before it stay
    report = verify(db)
    assert report.ok, report.problems
    assert report.archive_checked == 48

    async def restart() -> None:  # a compacted log replays, and the server carries on
        service = Service(db, clock=lambda: NOW + timedelta(hours=1), expire_every_s=3600)
        await service.start()
        worker = next(iter(service.state.workers))
        await service.complete(
            Completion(task_id=1, worker_id=worker, attempt=1, exit_code=0, duration_s=1.0)
        )
        await service.stop()

    before = state_and_projections(db)
    asyncio.run(restart())
    assert verify(db).ok
    assert state_and_projections(db) != before  # it did write
