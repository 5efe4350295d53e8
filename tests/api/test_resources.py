"""Counted resources through the API (SPEC §10): a task's `resources`, a worker's
`resources` and `resources_free`, the amounts and devices a claim hands out; bad amounts
are refused with a 4xx naming the field, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api


def last_seq(api: Api) -> int:
    return int(api.client.get("/v1/stats").json()["last_seq"])


def register(api: Api, resources: Any, slots: int = 4, **extra: Any) -> str:
    body = {"name": "gpubox", "slots": slots, "resources": resources, **extra}
    response = api.client.post("/v1/workers", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["worker_id"])


def worker(api: Api, worker_id: str) -> dict[str, Any]:
    response = api.client.get(f"/v1/workers/{worker_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_claim_holds_what_the_task_asks_for_until_it_ends(api: Api) -> None:
    first = api.submit(command="train", resources={"gpu": 2, "mem": "16G"})
    second = api.submit(command="train", resources="gpu=2,mem=16G")
    api.submit(command="train", resources={"gpu": 2})
    w = register(api, {"gpu": 4, "mem": "64G"})
    assert worker(api, w)["resources"] == {"gpu": 4, "mem": 64 << 30}
    claimed = api.claim(w, max_tasks=3)
    assert [c["task_id"] for c in claimed] == [first, second]  # the third does not fit
    assert [c["resources"] for c in claimed] == [{"gpu": 2, "mem": 16 << 30}] * 2
    assert [c["gpu_ids"] for c in claimed] == [[0, 1], [2, 3]]
    shown = worker(api, w)
    assert shown["resources_free"] == {"gpu": 0, "mem": 32 << 30}
    assert shown["gpu_ids"] == [0, 1, 2, 3] and shown["gpu_ids_free"] == []
    task = api.client.get(f"/v1/tasks/{first}").json()
    assert task["resources"] == {"gpu": 2, "mem": 16 << 30}
    assert task["gpu_ids"] == [0, 1]
    done = {"worker_id": w, "attempt": 1, "exit_code": 0}
    assert api.client.post(f"/v1/tasks/{first}/complete", json=done).status_code == 200
    assert worker(api, w)["resources_free"] == {"gpu": 2, "mem": 48 << 30}
    [third] = api.claim(w)
    assert third["gpu_ids"] == [0, 1]
    listed = api.client.get("/v1/workers").json()["workers"]
    assert listed[0]["resources_free"] == {"gpu": 0, "mem": 48 << 30}
    events = api.client.get(f"/v1/tasks/{first}/events").json()["events"]
    claim = next(e for e in events if e["type"] == "TaskClaimed")
    assert claim["data"]["gpu_ids"] == [0, 1]


def test_a_worker_hands_out_the_devices_it_names(api: Api) -> None:
    api.submit(command="train", resources={"gpu": 1})
    w = register(api, {"gpu": 2}, gpu_ids=[3, 5])
    [claimed] = api.claim(w)
    assert claimed["gpu_ids"] == [3]
    assert worker(api, w)["gpu_ids_free"] == [5]


def test_a_plain_claim_and_a_plain_worker_say_nothing_of_resources(api: Api) -> None:
    api.submit(command="true")
    w = api.register()
    [claimed] = api.claim(w)
    assert "resources" not in claimed and "gpu_ids" not in claimed
    shown = worker(api, w)
    assert (shown["resources"], shown["resources_free"], shown["gpu_ids"]) == ({}, {}, [])


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"gpu": 0}, "task.resources.gpu: 0 is out of range 1..1048576T (a task asks for at"),
        ({"gpu": -2}, "out of range"),
        ({"gpu": 1.5}, "expected a whole number"),
        ({"gpu": True}, "expected a whole number"),
        ({"mem": "16GB"}, "invalid amount"),
        ({"g/pu": 1}, "invalid resource name"),
        ("gpu", "is not NAME=AMOUNT"),
        (["gpu=1"], "expected an object"),
        ({f"r{i}": 1 for i in range(33)}, "at most 32"),
        ({"mem": 1 << 61}, "out of range"),
    ],
)
def test_bad_amounts_are_refused_and_nothing_is_written(api: Api, value: Any, says: str) -> None:
    before = last_seq(api)
    response = api.client.post("/v1/tasks", json={"command": "x", "resources": value})
    assert response.status_code == 422, response.text
    assert says in response.json()["error"]["message"]
    assert response.json()["error"]["message"].startswith("task.resources")
    bulk = {"tasks": [{"command": "ok"}, {"command": "x", "resources": value}]}
    response = api.client.post("/v1/tasks", json=bulk)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("tasks[1].resources")
    assert last_seq(api) == before


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"resources": {"gpu": -1}}, "out of range 0.."),
        ({"resources": {"gpu": 2}, "gpu_ids": [0]}, "1 devices for resources gpu=2"),
        ({"resources": {"gpu": 2}, "gpu_ids": [1, 1]}, "listed twice"),
        ({"resources": {"gpu": 1}, "gpu_ids": ["GPU-1234"]}, "expected an integer"),
        ({"resources": {"gpu": 300}}, "at most 256"),
    ],
)
def test_bad_declarations_are_refused_and_nothing_is_written(
    api: Api, body: dict[str, Any], says: str
) -> None:
    before = last_seq(api)
    response = api.client.post("/v1/workers", json={"name": "w", **body})
    assert response.status_code == 422, response.text
    assert says in response.json()["error"]["message"]
    assert last_seq(api) == before


def test_a_zero_amount_is_declared_and_runs_nothing_that_asks_for_it(api: Api) -> None:
    api.submit(command="train", resources={"gpu": 1})
    w = register(api, {"gpu": 0, "mem": "1G"})
    assert api.claim(w) == []
    assert worker(api, w)["resources"] == {"gpu": 0, "mem": 1 << 30}


def test_an_idempotency_key_covers_the_request(api: Api) -> None:
    api.submit(command="x", idempotency_key="k", resources={"gpu": 1})
    again = api.client.post(
        "/v1/tasks", json={"command": "x", "idempotency_key": "k", "resources": {"gpu": 1}}
    )
    assert again.status_code == 201
    other = api.client.post(
        "/v1/tasks", json={"command": "x", "idempotency_key": "k", "resources": {"gpu": 2}}
    )
    assert other.status_code == 409
