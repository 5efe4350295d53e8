"""kickoff.Client beyond docs/python.md's examples, against a real server and worker:
events followed live, waits that time out, a cancel too late, batches, the Task type."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import kickoff
from kickoff.errors import Conflict, KickoffError, NotFound
from tests.conftest import ServerProcess, WorkerProcess


def test_events_followed_live_until_the_loop_breaks(
    server: ServerProcess, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    with kickoff.Client(server.address, token=server.token) as client:
        task_id = client.submit("echo hi")
        seen = []
        for event in client.events(follow=True, after=0):
            if event["task_id"] == task_id:
                seen.append(event["type"])
            if "TaskCompleted" in seen:
                break
        assert seen == ["TaskSubmitted", "TaskClaimed", "TaskCompleted"]
        types = [e["type"] for e in client.events(types=["TaskCompleted"])]
        assert types == ["TaskCompleted"]


def test_waits_time_out_cancels_come_too_late_and_unknown_ids_are_not_found(
    server: ServerProcess,
) -> None:
    with kickoff.Client(server.address, token=server.token) as client:
        ids = client.submit_many(["sleep 1", {"command": "true", "priority": 5}])
        with pytest.raises(KickoffError, match=r"timed out after 0.1s: 2 of 2 tasks .*2 pending"):
            client.wait_all(ids, timeout_s=0.1)
        assert client.cancel(ids[0]) == "cancelled"
        with pytest.raises(Conflict):
            client.cancel(ids[0])
        assert client.wait(ids[0]).state == "cancelled"
        with pytest.raises(NotFound):
            client.wait_all([ids[1], 999])
        pending = client.list(state=["pending", "running"])
        assert [(t.id, t.priority) for t in pending] == [(ids[1], 5)]
        with pytest.raises(AttributeError):
            _ = pending[0].no_such_field


def test_submit_many_splits_batches_and_keeps_one_group(server: ServerProcess) -> None:
    from kickoff import client as module

    with kickoff.Client(server.address, token=server.token) as client:
        old, module.MAX_BATCH = module.MAX_BATCH, 2  # three requests for five tasks
        try:
            ids = client.submit_many([f"echo {n}" for n in range(5)], group="five")
        finally:
            module.MAX_BATCH = old
        assert ids == list(range(ids[0], ids[0] + 5))
        assert client.get("/v1/groups/five")["total"] == 5
        assert [t.id for t in client.list(group="five")] == ids


def test_following_from_the_first_attempt_shows_each_even_when_all_are_over(
    server: ServerProcess, start_worker: Callable[..., WorkerProcess]
) -> None:
    """(`new --follow` of a task whose retries ran before it first looked.)"""
    start_worker()
    with kickoff.Client(server.address, token=server.token) as client:
        task_id = client.submit('echo "try $KICKOFF_ATTEMPT"; exit 1', retries=2)
        assert client.wait(task_id).attempt == 3
        began: list[int] = []
        shown = b"".join(
            client.logs(task_id, follow=True, from_first=True, on_attempt=began.append)
        )
        assert (shown, began) == (b"try 1\ntry 2\ntry 3\n", [1, 2, 3])
        assert b"".join(client.logs(task_id, follow=True)) == b"try 3\n"  # the latest
