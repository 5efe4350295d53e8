"""Where and with what a task runs, through the API: `cwd` and `env` are recorded, handed
to the worker with the claim, shown in the task's JSON and history; bad ones are refused
with a 4xx naming the field, and nothing is written."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api


def last_seq(api: Api) -> int:
    return int(api.client.get("/v1/stats").json()["last_seq"])


def test_cwd_and_env_reach_the_claim_and_the_task(api: Api) -> None:
    task_id = api.submit(command="make", cwd="/srv/proj", env={"B": "2", "A": "x y"})
    worker = api.register()
    [claimed] = api.claim(worker)
    assert claimed["cwd"] == "/srv/proj"
    assert claimed["env"] == {"A": "x y", "B": "2"}
    task = api.client.get(f"/v1/tasks/{task_id}").json()
    assert task["cwd"] == "/srv/proj"
    assert task["env"] == {"A": "x y", "B": "2"}
    plain = api.client.get(f"/v1/tasks/{api.submit(command='true')}").json()
    assert (plain["cwd"], plain["env"]) == (None, {})


def test_the_scratch_directory_is_recorded_and_shown(api: Api) -> None:
    task_id = api.submit(command="make", cwd="/nowhere")
    worker = api.register()
    api.claim(worker)
    body = {"worker_id": worker, "attempt": 1, "exit_code": 0, "scratch_dir": "/tmp/k-1-1-x"}
    assert api.client.post(f"/v1/tasks/{task_id}/complete", json=body).status_code == 200
    events = api.client.get(f"/v1/tasks/{task_id}/events").json()["events"]
    assert events[-1]["data"]["scratch_dir"] == "/tmp/k-1-1-x"
    assert events[0]["data"]["cwd"] == "/nowhere"


@pytest.mark.parametrize(
    ("field", "value", "status", "says"),
    [
        ("cwd", "relative/dir", 422, "absolute"),
        ("cwd", 5, 422, "absolute"),
        ("cwd", "/a\x00b", 422, "NUL"),
        ("cwd", "/" + "d" * 5000, 413, "4096"),
        ("env", ["A=1"], 422, "object"),
        ("env", {"1A": "x"}, 422, "not a variable name"),
        ("env", {"A-B": "x"}, 422, "not a variable name"),
        ("env", {"KICKOFF_TOKEN": "x"}, 422, "set by the worker"),
        ("env", {"KICKOFF_TASK_ID": "7"}, 422, "set by the worker"),
        ("env", {"A": 1}, 422, "env.A: expected a string"),
        ("env", {"A": "x\x00"}, 422, "NUL"),
        ("env", {f"V{i}": "x" for i in range(300)}, 413, "at most 256"),
        ("env", {"BIG": "x" * 70_000}, 413, "bytes of names and values"),
    ],
)
def test_bad_cwd_or_env_is_refused_and_writes_nothing(
    api: Api, field: str, value: object, status: int, says: str
) -> None:
    before = last_seq(api)
    response = api.client.post("/v1/tasks", json={"command": "true", field: value})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error["message"] and field in error["message"]
    assert last_seq(api) == before
