"""`kickoff replay`: the point-in-time view equals what the live server had right then."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from kickoff.audit import replay as replaying
from kickoff.cli import run
from kickoff.database import open_connection as connect
from kickoff.errors import NotFound
from kickoff.store.sqlite import SqliteRecorder
from tests.audit.conftest import START, Scenario, projection_rows


def view_at(path: Path, seq: int) -> replaying.View:
    conn = connect(path, readonly=True)
    try:
        return replaying.build(
            SqliteRecorder(conn), replaying.resolve(SqliteRecorder(conn), until_seq=seq)
        )
    finally:
        conn.close()


def test_every_recorded_point_replays_to_what_the_server_had(scenario: Scenario) -> None:
    assert len(scenario.seen) > 30
    for seq, (snapshot, rows) in sorted(scenario.seen.items()):
        view = view_at(scenario.path, seq)
        try:
            assert view.point.seq == seq
            assert view.state.snapshot() == snapshot, f"state differs after seq {seq}"
            assert projection_rows(view.projections) == rows, f"projections differ after {seq}"
            assert view.disagreements == []
        finally:
            view.close()


def test_a_time_names_the_last_event_at_or_before_it(scenario: Scenario) -> None:
    conn = connect(scenario.path, readonly=True)
    try:
        at = conn.execute("SELECT at FROM events WHERE seq = 20").fetchone()[0]
        last_then = conn.execute("SELECT max(seq) FROM events WHERE at <= ?", (at,)).fetchone()[0]
        from kickoff.clock import from_text

        point = replaying.resolve(SqliteRecorder(conn), at=from_text(at))
        assert point.seq == last_then >= 20
        assert replaying.resolve(SqliteRecorder(conn), at=START.replace(year=2020)).seq == 0
        assert replaying.resolve(SqliteRecorder(conn), until_seq=10**9).seq == point.last_seq
    finally:
        conn.close()


def test_task_as_it_was_with_its_story_so_far(scenario: Scenario) -> None:
    lost = scenario.ids["lost"]
    conn = connect(scenario.path, readonly=True)
    try:
        requeued = conn.execute(
            "SELECT seq FROM events WHERE type = 'TaskRequeued' AND task_id = ?", (lost,)
        ).fetchone()[0]
        events = replaying.task_events(SqliteRecorder(conn), lost, until_seq=requeued)
        assert [e["type"] for e in events][:2] == ["TaskSubmitted", "TaskClaimed"]
        assert sum(e["type"] == "WorkerHeartbeat" for e in events) == 12
        assert events[-1]["type"] == "TaskRequeued"
        with pytest.raises(NotFound, match="did not exist yet"):
            replaying.task_events(SqliteRecorder(conn), lost, until_seq=2)
        with pytest.raises(NotFound, match="no task 999"):
            replaying.task_events(SqliteRecorder(conn), 999, until_seq=requeued)
    finally:
        conn.close()


def test_replay_command_json(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    seq = sorted(scenario.seen)[len(scenario.seen) // 2]
    snapshot, rows = scenario.seen[seq]
    assert run(["replay", "--db", str(scenario.path), "--until", str(seq), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["seq"] == seq
    counts = dict(rows["task_counts"])
    assert {k: found["stats"][k] for k in counts} == counts
    assert found["stats"]["workers"]["alive"] == len(snapshot["workers"])
    live = {t[0] for t in snapshot["tasks"]}
    assert {t["id"] for t in found["tasks"]} == live
    assert {w["id"] for w in found["workers"]} == {w[0] for w in snapshot["workers"]}


def test_replay_command_task_and_plain_text(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    task = scenario.ids["lost"]
    assert run(["replay", "--db", str(scenario.path), "--task", str(task)]) == 0
    text = capsys.readouterr().out
    assert "succeeded" in text and "echo one" in text
    assert "12 heartbeats from w1 between 10:00:06 and 10:01:01" in text
    assert "lease of attempt 1 on w1 expired" in text
    assert run(["replay", "--db", str(scenario.path), "--until", "9"]) == 0
    text = capsys.readouterr().out
    assert "the state after seq 9" in text
    assert "later events not applied" in text


def test_replay_refusals(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(scenario.path)
    assert run(["replay", "--db", db, "--until", "3", "--at", "1h"]) == 2
    assert run(["replay", "--db", db, "--until", "2", "--task", "1"]) == 4
    assert "did not exist yet" in capsys.readouterr().err
    assert run(["replay", "--db", str(tmp_path / "none.db")]) == 1
    assert "no database" in capsys.readouterr().err
    assert run(["replay", "--db", db, "--at", "yesterday-ish"]) == 2


def test_replay_is_read_only(scenario: Scenario, tmp_path: Path) -> None:
    copy = scenario.copy(tmp_path)
    before = copy.read_bytes()
    assert run(["replay", "--db", str(copy), "--json"]) == 0
    assert copy.read_bytes() == before
    # and it works on a database another connection is writing to (WAL, live server)
    writer = sqlite3.connect(copy)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("BEGIN IMMEDIATE")
    try:
        assert run(["replay", "--db", str(copy), "--json"]) == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
