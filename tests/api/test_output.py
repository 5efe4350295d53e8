"""Task output through the API: a worker's appends by byte offset, reads by offset, the
cap, the last output riding in the report, followers, and what a restart keeps."""

from __future__ import annotations

import time
from pathlib import Path

from starlette.testclient import TestClient

from kickoff import defaults
from kickoff.api.app import create_app
from kickoff.service import Service
from kickoff.store.output import output_path
from tests.api.conftest import TOKEN, Api


def _running(api: Api, command: str = "echo hi") -> tuple[int, str]:
    task_id = api.submit(command=command)
    worker = api.register()
    assert api.claim(worker)[0]["task_id"] == task_id
    return task_id, worker


def _send(api: Api, task_id: int, worker: str, offset: int, data: bytes, attempt: int = 1):
    return api.client.post(
        f"/v1/tasks/{task_id}/output",
        params={"attempt": attempt, "offset": offset, "worker": worker},
        content=data,
    )


def test_appends_by_offset_are_read_back_by_offset(api: Api) -> None:
    task_id, worker = _running(api)
    assert _send(api, task_id, worker, 0, b"hello ").json() == {
        "size": 6,
        "total": 6,
        "capped": False,
    }
    assert _send(api, task_id, worker, 6, b"world\n").json()["size"] == 12
    whole = api.client.get(f"/v1/tasks/{task_id}/output")
    assert whole.content == b"hello world\n"
    assert whole.headers["x-kickoff-attempt"] == "1"
    assert whole.headers["x-kickoff-running"] == "1"
    assert whole.headers["x-kickoff-next-offset"] == "12"
    part = api.client.get(f"/v1/tasks/{task_id}/output", params={"offset": 3, "limit": 5})
    assert part.content == b"lo wo"
    assert part.headers["x-kickoff-next-offset"] == "8"
    tail = api.client.get(f"/v1/tasks/{task_id}/output", params={"offset": -6})
    assert tail.content == b"world\n"
    assert tail.headers["x-kickoff-offset"] == "6"
    assert "\nkickoff_output_bytes 12\n" in api.client.get("/metrics").text


def test_a_chunk_sent_again_is_kept_once_and_a_gap_is_refused(api: Api) -> None:
    task_id, worker = _running(api)
    _send(api, task_id, worker, 0, b"abc")
    assert _send(api, task_id, worker, 1, b"bcdef").json()["size"] == 6  # overlap: the new part
    gap = _send(api, task_id, worker, 10, b"xyz")
    assert gap.status_code == 409
    assert "send from 6" in gap.json()["error"]["message"]
    assert api.client.get(f"/v1/tasks/{task_id}/output").content == b"abcdef"


def test_output_of_an_attempt_that_is_not_running_is_refused(api: Api) -> None:
    task_id, worker = _running(api)
    assert _send(api, task_id, worker, 0, b"x", attempt=2).status_code == 409
    assert _send(api, task_id, "someone-else", 0, b"x").status_code == 409
    assert _send(api, 999, worker, 0, b"x").status_code == 404
    assert api.client.get("/v1/tasks/999/output").status_code == 404
    assert api.client.get(f"/v1/tasks/{task_id}/output", params={"attempt": 2}).status_code == 404
    for params in ({"attempt": 1, "worker": worker}, {"offset": 0, "worker": worker}, {}):
        bad = api.client.post(f"/v1/tasks/{task_id}/output", params=params, content=b"x")
        assert bad.status_code in (400, 422), params
    assert api.client.get(f"/v1/tasks/{task_id}/output").content == b""  # nothing written


def test_the_last_output_rides_in_the_report(api: Api) -> None:
    task_id, worker = _running(api)
    _send(api, task_id, worker, 0, b"first\n")
    report = {
        "worker_id": worker,
        "attempt": 1,
        "exit_code": 0,
        "output_tail": "first\nlast ünï\n",
        "output": {"offset": 6, "text": "last ünï\n"},
    }
    assert api.client.post(f"/v1/tasks/{task_id}/complete", json=report).status_code == 200
    done = api.client.get(f"/v1/tasks/{task_id}/output")
    assert done.content == "first\nlast ünï\n".encode()
    assert done.headers["x-kickoff-running"] == "0"
    # the attempt is over: a follower gets everything and the stream ends
    followed = api.client.get(f"/v1/tasks/{task_id}/output", params={"follow": 1})
    assert followed.content == done.content
    assert _send(api, task_id, worker, 0, b"late").status_code == 409


def test_past_the_cap_bytes_are_counted_not_kept(tmp_path: Path) -> None:
    service = Service(tmp_path / "cap.db", output_cap=10)
    with TestClient(
        create_app(service, token=TOKEN), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        api = Api(client, service, None, tmp_path / "cap.db")  # type: ignore[arg-type]
        task_id, worker = _running(api)
        assert _send(api, task_id, worker, 0, b"0123456").json()["capped"] is False
        answer = _send(api, task_id, worker, 7, b"789abcdef").json()
        assert answer == {"size": 10, "total": 16, "capped": True}
        read = client.get(f"/v1/tasks/{task_id}/output")
        assert read.content == b"0123456789"
        assert (read.headers["x-kickoff-size"], read.headers["x-kickoff-total"]) == ("10", "16")
        assert read.headers["x-kickoff-cap"] == "10"


def test_the_default_cap_is_64_mib() -> None:
    assert defaults.OUTPUT_CAP_BYTES == 64 * 1024 * 1024
    assert Service("unused.db").output.cap == 64 * 1024 * 1024


def test_output_is_kept_beside_the_database_across_a_restart(api: Api, tmp_path: Path) -> None:
    task_id, worker = _running(api)
    _send(api, task_id, worker, 0, b"kept\n")
    assert output_path(api.db_path).exists()
    api.client.__exit__(None, None, None)  # stops the service
    again = Service(api.db_path)
    with TestClient(
        create_app(again, token=TOKEN), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        assert client.get(f"/v1/tasks/{task_id}/output").content == b"kept\n"


def test_past_the_budget_finished_tasks_output_goes_and_a_running_task_s_stays(
    tmp_path: Path,
) -> None:
    service = Service(tmp_path / "budget.db", output_budget=10)
    with TestClient(
        create_app(service, token=TOKEN), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        api = Api(client, service, None, tmp_path / "budget.db")  # type: ignore[arg-type]
        first, worker = _running(api)
        report = {"worker_id": worker, "attempt": 1, "exit_code": 0}
        report["output"] = {"offset": 0, "text": "0123456789"}
        assert client.post(f"/v1/tasks/{first}/complete", json=report).status_code == 200
        second = api.submit(command="run")
        assert api.claim(worker)[0]["task_id"] == second
        assert _send(api, second, worker, 0, b"abcdefghij").status_code == 200
        _send(api, second, worker, 10, b"k")  # over the budget: the finished one goes

        def kept(task_id: int) -> bytes:
            return client.get(f"/v1/tasks/{task_id}/output").content

        deadline = time.monotonic() + 10
        while kept(first) and time.monotonic() < deadline:
            time.sleep(0.01)  # pruning runs on the output thread, after the append
        assert kept(first) == b""
        assert kept(second) == b"abcdefghijk"  # running: never pruned
