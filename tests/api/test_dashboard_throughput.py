"""The dashboard's throughput series: finished tasks per interval, from the log's past and
then live (kickoff/dashboard/throughput.py), on the injected clock."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api
from tests.api.test_dashboard_auth import login, same_origin
from tests.conftest import wait_until


def finish(api: Api, worker: str, n: int, exit_code: int = 0) -> None:
    for _ in range(n):
        api.submit(command="x")
        (task,) = api.claim(worker)
        body = {"worker_id": worker, "attempt": task["attempt"], "exit_code": exit_code}
        response = api.client.post(f"/v1/tasks/{task['task_id']}/complete", json=body)
        assert response.status_code == 200, response.text


def test_finished_tasks_per_interval_from_the_past_then_live(api: Api) -> None:
    worker = api.register()
    finish(api, worker, 3)
    api.clock.advance(20)
    finish(api, worker, 2, exit_code=1)  # failed ones count: they finished
    web, csrf = login(api)

    def series() -> dict[str, Any]:
        response = web.get(
            "/dashboard/api/throughput", params={"step": 10, "span": 60}, headers=same_origin(csrf)
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    first = series()
    assert first["step_s"] == 10 and sum(first["finished"]) == 5
    nonzero = [n for n in first["finished"] if n]
    assert nonzero == [3, 2]
    start = first["finished"].index(3)
    assert first["finished"].index(2) == start + 2  # 20 s later: two intervals on
    api.clock.advance(10)
    finish(api, worker, 4)  # counted live now

    def nine() -> dict[str, Any] | None:
        found = series()
        return found if sum(found["finished"]) == 9 else None

    later = wait_until(nine, 5)
    assert [n for n in later["finished"] if n] == [3, 2, 4]
    assert web.get("/dashboard/api/throughput").status_code == 403  # without its CSRF token
