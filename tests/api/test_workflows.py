"""Workflows through the HTTP API (SPEC §12): dependencies, groups, arrays, retries."""

from __future__ import annotations

from typing import Any

from kickoff.database import Database
from tests.api.conftest import Api
from tests.conftest import wait_until


def complete(api: Api, claimed: dict[str, Any], worker_id: str, **extra: object) -> None:
    body = {"worker_id": worker_id, "attempt": claimed["attempt"], "exit_code": 0, **extra}
    response = api.client.post(f"/v1/tasks/{claimed['task_id']}/complete", json=body)
    assert response.status_code == 200, response.text


def task(api: Api, task_id: int) -> dict[str, Any]:
    response = api.client.get(f"/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def submit(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = api.client.post("/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_dependency_chain_through_the_api(api: Api) -> None:
    first = api.submit(command="one")
    second = api.submit(command="two", after=[first])
    third = api.submit(command="three", after=[second], after_any=[first])
    found = task(api, third)
    assert (found["state"], found["after"], found["after_any"]) == ("waiting", [second], [first])
    assert found["waiting_for"] == [first, second]
    listed = api.client.get("/v1/tasks").json()
    assert [t["id"] for t in listed["tasks"]] == [first, second, third]  # waiting is live
    assert listed["counts"]["waiting"] == 2
    assert api.client.get("/v1/stats").json()["waiting"] == 2
    worker = api.register(slots=5)
    claimed = api.claim(worker, max_tasks=5)
    assert [c["task_id"] for c in claimed] == [first]
    complete(api, claimed[0], worker, exit_code=1)
    for dependent, reason in ((second, f"dependency {first} failed"), (third, None)):
        found = task(api, dependent)
        assert found["state"] == "cancelled"
        assert found["reason"] == (reason or f"dependency {second} was cancelled")
    assert api.claim(worker) == []


def test_unknown_dependencies_are_refused_with_nothing_written(api: Api) -> None:
    known = api.submit(command="one")
    before = api.service.last_seq
    response = api.client.post(
        "/v1/tasks", json={"tasks": [{"command": "a"}, {"command": "b", "after": [known + 5]}]}
    )
    assert response.status_code == 404
    assert (
        response.json()["error"]["message"] == f"after: no task {known + 5} (nothing was submitted)"
    )
    assert api.service.last_seq == before
    bad = api.client.post("/v1/tasks", json={"command": "x", "after": ["1"]})
    assert bad.status_code == 422 and "task.after" in bad.json()["error"]["message"]


def test_a_group_with_a_cap_and_its_queries(api: Api) -> None:
    answer = submit(
        api,
        {
            "tasks": [{"command": f"frame {i}", "array_index": i} for i in range(1, 6)],
            "group": {"name": "shot12", "max_running": 2},
        },
    )
    assert answer["group"] == "shot12"
    more = submit(api, {"tasks": [{"command": "frame 6"}], "group": "shot12"})
    assert more["group"] == "shot12"
    unnamed = submit(api, {"tasks": [{"command": "other"}], "group": {}})
    assert unnamed["group"] == "g2"
    worker = api.register(slots=10)
    claimed = api.claim(worker, max_tasks=10)
    assert [c["task_id"] for c in claimed] == [
        answer["ids"][0],
        answer["ids"][1],
        unnamed["ids"][0],
    ]
    assert [c["array_index"] for c in claimed] == [1, 2, None]
    group = api.client.get("/v1/groups/shot12").json()
    assert (group["name"], group["max_running"], group["total"], group["live"]) == (
        "shot12",
        2,
        6,
        6,
    )
    assert group["counts"]["running"] == 2 and group["counts"]["pending"] == 4
    page = api.client.get("/v1/tasks", params={"group": "shot12", "state": "running"}).json()
    assert [t["id"] for t in page["tasks"]] == answer["ids"][:2]
    assert page["tasks"][0]["group"] == "shot12" and page["tasks"][0]["array_index"] == 1
    stats = api.client.get("/v1/stats", params={"group": "shot12"}).json()
    assert stats["group"] == {"name": "shot12", "max_running": 2, "running": 2}
    assert stats["pending"] == 4
    cancelled = api.client.post("/v1/groups/shot12/cancel").json()
    assert cancelled == {"group": "shot12", "cancelled": 6}
    assert api.client.get("/v1/groups/shot12").json()["counts"]["cancelling"] == 2
    assert api.client.get("/v1/groups/nope").status_code == 404
    conflict = api.client.post(
        "/v1/tasks", json={"command": "x", "group": {"name": "shot12", "max_running": 3}}
    )
    assert conflict.status_code == 409


def test_a_delayed_retry_is_recorded_and_started_by_the_clock(api: Api) -> None:
    task_id = api.submit(command="flaky", retries=2, retry_delay_s=5, retry_on=[3, "timeout"])
    worker = api.register()
    (claimed,) = api.claim(worker)
    complete(api, claimed, worker, exit_code=3)
    found = task(api, task_id)
    assert (found["state"], found["retries"], found["retries_left"]) == ("waiting", 2, 1)
    assert found["retry_on"] == [3, "timeout"] and found["retry_at"] is not None
    assert api.claim(worker) == []
    api.clock.advance(4.9)
    assert api.claim(worker) == []
    api.clock.advance(0.1)  # due now: the service's timer starts it
    wait_until(lambda: task(api, task_id)["state"] == "pending", what="the retry")
    (again,) = api.claim(worker)
    assert again["attempt"] == 2
    assert task(api, task_id)["reason"] == "retry 1 of 2"
    complete(api, again, worker, exit_code=4)  # not one of retry_on
    assert task(api, task_id)["state"] == "failed"


def test_the_checkpoint_holds_waiting_tasks_groups_and_retries(api: Api) -> None:
    first = api.submit(command="one")
    api.submit(command="two", after=[first])
    submit(api, {"tasks": [{"command": "c"}] * 3, "group": {"max_running": 1}})
    api.submit(command="later", retries=1, retry_delay_s=60)
    worker = api.register(slots=10)
    claimed = api.claim(worker, max_tasks=10)
    flaky = next(c for c in claimed if c["command"] == "later")
    complete(api, flaky, worker, exit_code=1)
    db = Database(api.db_path)
    try:
        loaded, _ = db.load()
        assert loaded == db.replay() == api.service.state
    finally:
        db.close()
