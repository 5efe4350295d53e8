"""A log of workflows (SPEC §12), written by a real Service with an injected clock: the
point-in-time replay, the start-up checkpoint, `verify`, `projections rebuild` and
`history` handle every workflow event (GroupCreated, TaskReleased, a TaskCancelled with a
reason, a TaskCompleted that schedules a retry, the TaskRequeued that starts it)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from kickoff.audit.verify import verify
from kickoff.cli import run
from kickoff.database import Database, replay
from kickoff.state.decide import Completion, GroupRequest, NewTask
from tests.audit.conftest import START, Scenario, _Run, projection_rows
from tests.audit.test_replay import view_at


class _Workflows(_Run):
    async def done(self, worker: str, task_id: int, exit_code: int = 0) -> None:
        attempt = self.service.state.tasks[task_id].attempt
        report = Completion(
            task_id=task_id, worker_id=worker, attempt=attempt, exit_code=exit_code, duration_s=1
        )
        self.tick(1)
        await self.service.complete(report)
        self.record()

    async def claim(self, worker: str) -> list[int]:
        self.tick(1)
        claimed = await self.service.claim(worker, max_tasks=16, wait_s=0)
        self.record()
        return [c.task_id for c in claimed]

    async def play(self) -> Scenario:
        sc = self.scenario
        await self.start()
        w = await self.service.register(name="farm", tags=frozenset(), slots=16, host="h1")
        self.record()
        (a,) = await self.service.submit([NewTask(command="prepare")])
        (b,) = await self.service.submit([NewTask(command="train", after=(a,))])
        (c,) = await self.service.submit([NewTask(command="evaluate", after=(b,))])
        (f,) = await self.service.submit([NewTask(command="exit 3")])
        g, h = await self.service.submit(
            [NewTask(command="never", after=(f,)), NewTask(command="never either", after=(f,))]
        )
        (k,) = await self.service.submit([NewTask(command="report", after_any=(f,))])
        shot = await self.service.submit(
            [NewTask(command="render", array_index=i) for i in (1, 2, 3)],
            group=GroupRequest(name="shot12", max_running=1),
        )
        (r,) = await self.service.submit(
            [NewTask(command="flaky", retries=1, retry_delay_s=10, retry_on=(1,))]
        )
        nightly = await self.service.submit(
            [NewTask(command=f"nightly {i}", require=frozenset({"nowhere"})) for i in (1, 2)],
            group=GroupRequest(name="nightly"),
        )
        self.record()
        sc.ids = {"a": a, "b": b, "c": c, "f": f, "g": g, "h": h, "k": k, "r": r, "n": nightly[1]}
        first = await self.claim(w)
        assert {a, f, shot[0], r} <= set(first) and shot[1] not in first  # the cap holds
        await self.done(w, a)  # releases b
        await self.done(w, f, exit_code=3)  # cancels g and h, releases k
        await self.done(w, r, exit_code=1)  # a retry in 10 s
        await self.done(w, shot[0])
        self.tick(1)
        assert await self.service.cancel_group("nightly") == 2
        self.record()
        assert set(await self.claim(w)) == {b, k, shot[1]}
        await self.done(w, b)  # releases c: still waiting through the restart below
        await self.service.stop()
        self.tick(2)
        self.service = self._service()  # a restart with a delayed retry still to come
        await self.start()
        self.tick(10)
        assert await self.service.start_due_retries() == 1
        self.record()
        assert set(await self.claim(w)) == {c, r}  # (shot[1] and k still run on w)
        for task_id in (c, r, k, shot[1]):
            await self.done(w, task_id)
        assert await self.claim(w) == [shot[2]]
        await self.done(w, shot[2])
        await self.service.stop()
        assert self.reader is not None
        self.reader.close()
        sc.workers = {"w": w}
        return sc


@pytest.fixture(scope="module")
def workflows(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    path = tmp_path_factory.mktemp("workflows") / "kickoff.db"
    return asyncio.run(_Workflows(path, START).play())


def types_in(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT DISTINCT type FROM events")}
    finally:
        conn.close()


def test_the_log_holds_every_workflow_decision(workflows: Scenario) -> None:
    assert {"GroupCreated", "TaskReleased", "TaskCancelled", "TaskRequeued"} <= types_in(
        workflows.path
    )
    conn = sqlite3.connect(workflows.path)
    try:
        states = dict(conn.execute("SELECT id, state FROM tasks"))
    finally:
        conn.close()
    ids = workflows.ids
    assert [states[ids[n]] for n in "abcfghkrn"] == [
        *["succeeded"] * 3,
        "failed",
        "cancelled",
        "cancelled",
        "succeeded",
        "succeeded",
        "cancelled",
    ]


def test_every_recorded_point_replays_to_what_the_server_had(workflows: Scenario) -> None:
    assert len(workflows.seen) > 15
    for seq, (snapshot, rows) in sorted(workflows.seen.items()):
        view = view_at(workflows.path, seq)
        try:
            assert view.state.snapshot() == snapshot, f"state differs after seq {seq}"
            assert projection_rows(view.projections) == rows, f"projections differ after {seq}"
            assert view.disagreements == []
        finally:
            view.close()


def test_the_checkpoint_equals_the_fold_of_the_whole_log(workflows: Scenario) -> None:
    (last_seq, (snapshot, _)) = max(workflows.seen.items())
    db = Database(workflows.path)
    try:
        loaded, tail = db.load()
        assert tail == 0 and loaded.last_seq == last_seq
        assert loaded.snapshot() == snapshot == replay(db.recorder).snapshot()
    finally:
        db.close()


def test_verify_and_projections_rebuild(
    workflows: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = verify(workflows.path)
    assert report.ok, report.problems
    copy = workflows.copy(tmp_path)
    conn = sqlite3.connect(copy)
    before = projection_rows(conn)
    conn.execute("DELETE FROM groups")
    conn.execute("UPDATE tasks SET reason = NULL, state = 'waiting'")
    conn.commit()
    assert not verify(copy).ok
    assert run(["projections", "rebuild", "--db", str(copy)]) == 0
    assert "rebuilt tasks, workers, task_counts and groups" in capsys.readouterr().out
    assert projection_rows(conn) == before
    conn.close()
    assert verify(copy).ok


def history_of(path: Path, task_id: int, capsys: pytest.CaptureFixture[str]) -> str:
    """The task's story, offline (`kickoff replay --task`: what `history` tells)."""
    assert run(["replay", "--db", str(path), "--task", str(task_id)]) == 0
    out: str = capsys.readouterr().out
    return out


def test_history_tells_each_decision(
    workflows: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    ids: dict[str, Any] = workflows.ids
    cancelled = history_of(workflows.path, ids["h"], capsys)
    assert f"after {ids['f']} succeed" in cancelled
    assert f"cancelled: dependency {ids['f']} failed" in cancelled
    assert f"after {ids['f']} end" in history_of(workflows.path, ids["k"], capsys)
    retried = history_of(workflows.path, ids["r"], capsys)
    assert "1 retry on 1, 10.0s apart (doubling)" in retried
    assert "to be retried in 10.0s" in retried and "started again: retry 1 of 1" in retried
