"""`kickoff verify`: green on a good log; names the first bad seq for each kind of damage."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from kickoff.audit.verify import verify
from kickoff.cli import run
from kickoff.store.chain import GENESIS, chain_hash
from tests.audit.conftest import Scenario

TRIGGERS = ("events_no_update", "events_no_delete")


def tamper(
    path: Path, *statements: tuple[str, tuple[object, ...]], keep_triggers: bool = True
) -> None:
    """Run statements on the log with its triggers dropped (then put them back)."""
    conn = sqlite3.connect(path, isolation_level=None)
    saved = [
        conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (t,)).fetchone()[0]
        for t in TRIGGERS
    ]
    for name in TRIGGERS:
        conn.execute(f"DROP TRIGGER {name}")
    for sql, params in statements:
        conn.execute(sql, params)
    if keep_triggers:
        for sql in saved:
            conn.execute(sql)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def rehash_from(path: Path, seq: int) -> None:
    """Recompute every hash from `seq` on, as a forger would."""
    conn = sqlite3.connect(path, isolation_level=None)
    prev = (
        GENESIS
        if seq == 1
        else bytes(
            conn.execute(
                "SELECT hash FROM events WHERE seq < ? ORDER BY seq DESC LIMIT 1", (seq,)
            ).fetchone()[0]
        )
    )
    rows = conn.execute(
        "SELECT seq, at, type, version, task_id, worker_id, payload FROM events WHERE seq >= ? "
        "ORDER BY seq",
        (seq,),
    ).fetchall()
    conn.execute("DROP TRIGGER events_no_update")
    for row in rows:
        prev = chain_hash(prev, *row)
        conn.execute("UPDATE events SET hash = ? WHERE seq = ?", (prev, row[0]))
    conn.close()


def test_a_good_log_passes(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    report = verify(scenario.path)
    assert report.ok, report.problems
    assert report.events == report.last_seq > 40
    assert {
        report.status(c)
        for c in ("integrity", "sequence", "chain", "payloads", "fold", "projections")
    } == {"ok"}
    assert run(["verify", "--db", str(scenario.path)]) == 0
    assert "all good" in capsys.readouterr().out
    assert run(["verify", "--db", str(scenario.path), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["ok"] is True and found["first_bad_seq"] is None and found["problems"] == []


def test_an_altered_row_is_named(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = scenario.copy(tmp_path)
    tamper(
        copy,
        (
            "UPDATE events SET payload = replace(payload, 'echo one', 'rm -rf /') "
            "WHERE type = 'TaskSubmitted' AND task_id = 1",
            (),
        ),
    )
    seq = (
        sqlite3.connect(copy)
        .execute("SELECT seq FROM events WHERE type = 'TaskSubmitted' AND task_id = 1")
        .fetchone()[0]
    )
    report = verify(copy)
    assert not report.ok
    assert report.first_bad_seq == seq
    assert report.status("chain") == "failed"
    assert any(
        "command is 'echo one' here but 'rm -rf /'" in p.message or "'rm -rf /'" in p.message
        for p in report.problems
        if p.check == "projections"
    )
    assert run(["verify", "--db", str(copy)]) == 1
    out = capsys.readouterr().out
    assert f"first bad seq {seq}" in out and "FAILED" in out


def test_an_altered_and_rehashed_row_is_caught_by_the_next_hash(
    scenario: Scenario, tmp_path: Path
) -> None:
    copy = scenario.copy(tmp_path)
    conn = sqlite3.connect(copy)
    seq, payload = conn.execute(
        "SELECT seq, payload FROM events WHERE type = 'TaskCompleted' ORDER BY seq LIMIT 1"
    ).fetchone()
    row: tuple[Any, ...] = conn.execute(
        "SELECT seq, at, type, version, task_id, worker_id FROM events WHERE seq = ?", (seq,)
    ).fetchone()
    prev = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()[0]
    conn.close()
    forged = payload.replace('"exit_code":0', '"exit_code":1')
    assert forged != payload
    tamper(
        copy,
        (
            "UPDATE events SET payload = ?, hash = ? WHERE seq = ?",
            (
                forged,
                chain_hash(bytes(prev), row[0], row[1], row[2], row[3], row[4], row[5], forged),
                seq,
            ),
        ),
    )
    report = verify(copy)
    chain = [p for p in report.problems if p.check == "chain"]
    assert [p.seq for p in chain] == [seq + 1]  # this row's hash fits; the next one's does not
    assert "was changed" in chain[0].message
    # the projections, built when the true event was written, disagree with a fresh rebuild
    # and blame the row itself
    assert report.first_bad_seq == seq


def test_a_rehashed_forgery_is_caught_by_the_fold_and_projections(
    scenario: Scenario, tmp_path: Path
) -> None:
    copy = scenario.copy(tmp_path)
    seq = (
        sqlite3.connect(copy)
        .execute("SELECT seq FROM events WHERE type = 'TaskClaimed' ORDER BY seq LIMIT 1")
        .fetchone()[0]
    )
    tamper(
        copy,
        (
            "UPDATE events SET payload = replace(payload, '\"w1\"', '\"w9\"'), "
            "worker_id = 'w9' WHERE seq = ?",
            (seq,),
        ),
    )
    rehash_from(copy, seq)
    report = verify(copy)
    assert report.status("chain") == "ok"
    assert report.status("fold") == "failed"
    assert report.first_bad_seq == seq
    assert "does not fold" in next(p.message for p in report.problems if p.check == "fold")


def test_a_removed_row_is_named(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = scenario.copy(tmp_path)
    tamper(copy, ("DELETE FROM events WHERE seq = 17", ()))
    report = verify(copy)
    assert report.first_bad_seq == 17
    assert "seq 17 missing from the log" in report.problems[0].message
    assert run(["verify", "--db", str(copy), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["first_bad_seq"] == 17


def test_a_removed_last_row_is_noticed_by_the_projections(
    scenario: Scenario, tmp_path: Path
) -> None:
    copy = scenario.copy(tmp_path)
    last = sqlite3.connect(copy).execute("SELECT max(seq) FROM events").fetchone()[0]
    tamper(copy, ("DELETE FROM events WHERE seq = ?", (last,)))
    report = verify(copy)
    assert not report.ok
    assert report.first_bad_seq == last
    assert any("end of the log" in p.message for p in report.problems)


def test_a_payload_that_does_not_decode(scenario: Scenario, tmp_path: Path) -> None:
    copy = scenario.copy(tmp_path)
    tamper(copy, ("UPDATE events SET version = 99 WHERE seq = 5", ()))
    report = verify(copy)
    assert report.first_bad_seq == 5
    assert any(
        "newer than this kickoff" in p.message for p in report.problems if p.check == "payloads"
    )


def test_tampered_projections_are_named(scenario: Scenario, tmp_path: Path) -> None:
    copy = scenario.copy(tmp_path)
    conn = sqlite3.connect(copy)
    conn.execute("UPDATE tasks SET state = 'succeeded' WHERE id = 2")
    conn.commit()
    conn.close()
    report = verify(copy)
    assert [p.check for p in report.problems] == ["projections"]
    assert "tasks id=2: state is 'succeeded' here but 'failed'" in report.problems[0].message
    assert report.status("chain") == "ok"


def test_missing_triggers_are_reported(scenario: Scenario, tmp_path: Path) -> None:
    copy = scenario.copy(tmp_path)
    tamper(copy, keep_triggers=False)
    report = verify(copy)
    assert report.status("integrity") == "failed"
    assert report.status("chain") == "ok"


@pytest.mark.parametrize("keep", [0.5, 0.9, 50 / 4096])
def test_a_truncated_file_is_a_clear_error(
    scenario: Scenario, tmp_path: Path, keep: float, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = scenario.copy(tmp_path)
    size = copy.stat().st_size
    os.truncate(copy, max(int(size * keep), 1))
    report = verify(copy)
    assert not report.ok
    assert "truncated" in report.problems[0].message
    assert run(["verify", "--db", str(copy)]) == 1
    captured = capsys.readouterr()
    assert "truncated" in captured.out
    assert "Traceback" not in captured.out + captured.err


def test_garbage_in_the_middle_is_reported_not_raised(scenario: Scenario, tmp_path: Path) -> None:
    copy = scenario.copy(tmp_path)
    data = bytearray(copy.read_bytes())
    page = 4096
    for i in range(2 * page, min(len(data), 6 * page)):
        data[i] = 0xA5
    copy.write_bytes(bytes(data))
    report = verify(copy)
    assert not report.ok  # integrity_check, or a read error: never an exception


def test_not_a_kickoff_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x (y)").connection.commit()
    assert run(["verify", "--db", str(other)]) == 1
    assert "not a kickoff database" in capsys.readouterr().out
    assert run(["verify", "--db", str(tmp_path / "missing.db")]) == 1


def test_projections_rebuild_repairs_tampered_projections(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = scenario.copy(tmp_path)
    conn = sqlite3.connect(copy)
    conn.execute("UPDATE workers SET tags = '[\"hacked\"]' WHERE id = 'w1'")
    conn.execute("DELETE FROM tasks WHERE id = 3")
    conn.commit()
    conn.close()
    assert not verify(copy).ok
    assert run(["projections", "rebuild", "--db", str(copy)]) == 0
    assert "rebuilt tasks, workers, task_counts and groups from" in capsys.readouterr().out
    assert verify(copy).ok
    missing = tmp_path / "missing.db"
    assert run(["projections", "rebuild", "--db", str(missing)]) == 1
    assert run(["compact", "--db", str(missing), "--before", "5"]) == 1
    assert not missing.exists()


def test_a_removed_submission_breaks_fold_and_rebuild_without_a_traceback(
    scenario: Scenario, tmp_path: Path
) -> None:
    copy = scenario.copy(tmp_path)
    seq = (
        sqlite3.connect(copy)
        .execute("SELECT seq FROM events WHERE type = 'TaskSubmitted' ORDER BY seq LIMIT 1")
        .fetchone()[0]
    )
    tamper(copy, ("DELETE FROM events WHERE seq = ?", (seq,)))
    report = verify(copy)
    assert report.first_bad_seq == seq
    assert {"sequence", "fold", "projections"} <= {p.check for p in report.problems}
