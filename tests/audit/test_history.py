"""A task's story: each step in order, heartbeats summarised, from the API's own events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from kickoff.api.app import create_app
from kickoff.audit.history import story
from kickoff.cli import _view_log
from kickoff.service import Service
from tests.audit.conftest import Scenario

TOKEN = "test-token"


def event(seq: int, ts: str, kind: str, worker: str | None = None, **data: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "ts": f"2026-01-01T{ts}Z",
        "type": kind,
        "task_id": data.get("task_id"),
        "worker_id": worker,
        "data": data,
    }


def test_heartbeats_are_summarised_per_worker_run() -> None:
    events = [
        event(
            1,
            "10:00:00",
            "TaskSubmitted",
            task_id=7,
            command="x",
            max_attempts=2,
            submitted_by="10.0.0.1",
        ),
        event(2, "10:00:01", "TaskClaimed", "w3", task_id=7, worker_id="w3", attempt=1),
        *(
            event(
                3 + i,
                f"10:01:{2 + 5 * i:02d}",
                "WorkerHeartbeat",
                "w3",
                worker_id="w3",
                running=[[7, 1]],
            )
            for i in range(12)
        ),
        event(20, "10:02:40", "TaskLeaseExpired", "w3", task_id=7, worker_id="w3", attempt=1),
        event(21, "10:02:40", "TaskRequeued", task_id=7, next_attempt=2, reason="lease_expired"),
        event(22, "10:02:41", "TaskClaimed", "w4", task_id=7, worker_id="w4", attempt=2),
        event(23, "10:02:46", "WorkerHeartbeat", "w4", worker_id="w4", running=[[7, 2]]),
        event(
            24,
            "10:02:50",
            "TaskCompleted",
            "w4",
            task_id=7,
            worker_id="w4",
            attempt=2,
            exit_code=0,
            duration_s=9.0,
            output_tail="ok\n",
        ),
    ]
    told = story(reversed(events))  # any order in, seq order out
    assert [s.kind for s in told.steps] == [
        "submitted",
        "claimed",
        "heartbeats",
        "lease_expired",
        "requeued",
        "claimed",
        "heartbeats",
        "completed",
    ]
    texts = [s.text for s in told.steps]
    assert texts[0] == "submitted by 10.0.0.1 · up to 2 attempts"
    assert texts[1] == "claimed by w3 (attempt 1 of 2)"
    assert texts[2] == "12 heartbeats from w3 between 10:01:02 and 10:01:57"
    assert told.steps[2].seq == 3 and told.steps[2].last_seq == 14 and told.steps[2].count == 12
    assert texts[3] == "lease of attempt 1 on w3 expired: not heard from since 10:01:57 (43.0s)"
    assert texts[4] == "requeued (lease expired); next start is attempt 2"
    assert texts[6] == "1 heartbeat from w4 at 10:02:46"
    assert texts[7] == "succeeded on w4: exit code 0 after 9.00s"
    assert told.state == "succeeded" and told.attempts == 2
    assert told.waited_s == 1.0 and told.took_s == 170.0
    assert told.steps[-1].output_tail == "ok\n"


def test_cancel_failure_and_timeout_are_told() -> None:
    cancelled = story(
        [
            event(1, "10:00:00", "TaskSubmitted", task_id=1, command="x"),
            event(2, "10:00:01", "TaskClaimed", "w1", task_id=1, worker_id="w1", attempt=1),
            event(3, "10:00:02", "TaskCancelRequested", task_id=1, requested_by="me"),
            event(4, "10:00:03", "TaskCancelled", "w1", task_id=1, attempt=1, worker_id="w1"),
        ]
    )
    assert [s.text for s in cancelled.steps][2:] == [
        "cancel requested by me while running",
        "cancelled (attempt 1 on w1 stopped)",
    ]
    assert cancelled.state == "cancelled"
    failed = story(
        [
            event(1, "10:00:00", "TaskSubmitted", task_id=1, command="x"),
            event(
                2,
                "10:00:01",
                "TaskFailed",
                task_id=1,
                attempt=3,
                reason="lease_expired; all 3 attempts used",
            ),
        ]
    )
    assert failed.steps[-1].text == "failed: lease expired; all 3 attempts used"
    timed = story(
        [
            event(
                1,
                "10:00:00",
                "TaskCompleted",
                "w1",
                task_id=1,
                worker_id="w1",
                attempt=1,
                exit_code=-9,
                duration_s=75.0,
                timed_out=True,
            ),
        ]
    )
    assert timed.steps[0].text == "timed out on w1 after 1m15s (exit code -9)"
    assert timed.state == "failed" and timed.steps[0].outcome == "failed"


@pytest.fixture
def api(scenario: Scenario, tmp_path: Any) -> Iterator[TestClient]:
    service = Service(
        scenario.copy(tmp_path), clock=lambda: datetime(2026, 1, 2, tzinfo=UTC), expire_every_s=3600
    )
    with TestClient(
        create_app(service, token=TOKEN), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        yield client


def test_history_of_a_lost_requeued_and_completed_task(
    api: TestClient, scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    task = scenario.ids["lost"]
    response = api.get(f"/v1/tasks/{task}/events")
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    told = story(events)
    assert [s.kind for s in told.steps] == [
        "submitted",
        "claimed",
        "heartbeats",
        "lease_expired",
        "requeued",
        "claimed",
        "heartbeats",
        "completed",
    ]
    first_run, second_run = told.steps[2], told.steps[6]
    assert first_run.text == "12 heartbeats from w1 between 10:00:06 and 10:01:01"
    assert second_run.text == "3 heartbeats from w3 between 10:01:39 and 10:01:49"
    assert told.steps[-1].text == "succeeded on w3: exit code 0 after 17.5s"
    assert told.steps[0].text.startswith("submitted by 127.0.0.1 · require cpu")

    _view_log.print_story(told, task, now=datetime(2026, 1, 2, tzinfo=UTC))
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "task 1 · succeeded · echo one"
    # piped: tab-separated ISO time, seconds since submission, seq (range), what happened
    row = next(line for line in lines if "12 heartbeats" in line).split("\t")
    assert row[0] == "2026-01-01T10:00:06.000000Z" and row[1] == "6.000"
    assert row[2] == f"{first_run.seq}..{first_run.last_seq}"
    assert text.rstrip().endswith("one\nall done")
