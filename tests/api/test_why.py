"""`GET /v1/tasks/{id}/why` (SPEC §11): each situation, checked against the claims the log
recorded (state/why.py explains; the service reads the log)."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api
from tests.conftest import wait_until


def why(api: Api, task_id: int) -> dict[str, Any]:
    response = api.client.get(f"/v1/tasks/{task_id}/why")
    assert response.status_code == 200, response.text
    return dict(response.json())


def claims(api: Api, worker_id: str) -> list[int]:
    """The task ids the log records this worker claimed, in order."""
    found = api.client.get("/v1/events", params={"type": "TaskClaimed", "worker": worker_id})
    return [e["task_id"] for e in found.json()["events"]]


def complete(api: Api, task_id: int, worker_id: str, attempt: int = 1, code: int = 0) -> None:
    body = {"worker_id": worker_id, "attempt": attempt, "exit_code": code}
    response = api.client.post(f"/v1/tasks/{task_id}/complete", json=body)
    assert response.status_code == 200, response.text


def test_no_live_worker_has_the_tags_names_them_and_the_nearest_workers(api: Api) -> None:
    task_id = api.submit(command="train", require=["gpu", "cuda12", "linux"])
    assert why(api, task_id)["summary"] == "pending: no worker is live"
    api.register("linux", name="cpu-box")
    api.register("gpu", "linux", name="w-gpu")
    api.register("gpu", "linux", "cuda11", name="old")
    answer = why(api, task_id)
    assert answer["missing"] == ["cuda12"]
    assert answer["workers"] == [] and answer["ahead"] is None
    assert [(n["id"], n["lacks"]) for n in answer["nearest"]] == [
        ("w2", ["cuda12"]),
        ("w3", ["cuda12"]),
        ("w1", ["cuda12", "gpu"]),
    ]
    assert answer["summary"] == (
        "pending: no live worker has cuda12; nearest: w-gpu (w2) has gpu linux but not cuda12"
    )
    api.register("cuda12", name="other")  # every tag is on some worker, none has all
    answer = why(api, task_id)
    assert answer["missing"] == []
    assert answer["summary"].startswith("pending: no live worker has all of cuda12 gpu linux;")


def test_a_busy_worker_and_the_task_it_took_first_by_priority(api: Api) -> None:
    worker = api.register("cpu", name="box1")
    blocker = api.submit(command="first")
    assert [c["task_id"] for c in api.claim(worker)] == [blocker]
    low = api.submit(command="low", priority=0)
    high = api.submit(command="high", priority=5)
    complete(api, blocker, worker)
    assert [c["task_id"] for c in api.claim(worker)] == [high]
    answer = why(api, low)
    (box,) = answer["workers"]
    assert (box["id"], box["hold"], box["running"], box["ahead"]) == ("w1", "busy", [high], 0)
    assert [(t["task_id"], t["rule"], t["detail"]) for t in box["took"]] == [
        (high, "priority", "priority 5 > 0")
    ]
    assert box["took_total"] == 1
    assert [t["task_id"] for t in box["took"]] == claims(api, worker)[1:]  # as recorded
    assert answer["queued"] == "submitted" and answer["ahead"] == 0
    assert answer["summary"] == (
        f"pending: no task ranks ahead; box1 (w1) is busy with {high}, taken first (priority 5 > 0)"
    )


def test_ranked_behind_by_want_score_and_by_age(api: Api) -> None:
    worker = api.register("cpu", "ssd", name="box")
    blocker = api.submit(command="block")
    api.claim(worker)
    older = api.submit(command="older", want=["ssd", "nvme"])  # 1/2, as mine
    mine = api.submit(command="mine", want=["ssd", "big"])
    wanted = api.submit(command="wanted", want=["ssd"])  # 1/1
    api.submit(command="low", priority=-1)
    for running, then in ((blocker, wanted), (wanted, older)):
        complete(api, running, worker)
        assert [c["task_id"] for c in api.claim(worker)] == [then]
    answer = why(api, mine)
    (box,) = answer["workers"]
    assert [(t["task_id"], t["rule"], t["detail"]) for t in box["took"]] == [
        (older, "age", f"older ({older} < {mine}), same priority and want score"),
        (wanted, "want", "want score 1/1 > 1/2"),
    ]
    assert [t["task_id"] for t in box["took"]][::-1] == claims(api, worker)[1:]  # as recorded
    assert (box["took_total"], box["ahead"]) == (2, 0)  # `low` ranks behind
    assert answer["summary"] == (
        f"pending: no task ranks ahead; box (w1) is busy with {older}, taken first "
        f"(older ({older} < {mine}), same priority and want score); 2 taken since it was queued"
    )


def test_ahead_counts_the_pending_tasks_that_rank_first(api: Api) -> None:
    worker = api.register("cpu", name="box")
    api.submit(command="running")
    api.claim(worker)
    ahead = [api.submit(command="a", priority=3), api.submit(command="b")]
    mine = api.submit(command="mine")
    api.submit(command="later")  # same priority, younger: behind
    api.submit(command="low", priority=-2)
    answer = why(api, mine)
    assert answer["ahead"] == len(ahead) == answer["workers"][0]["ahead"]
    assert answer["summary"].startswith("pending: 2 tasks rank ahead; box (w1) is busy with 1")


def test_a_task_the_worker_lacked_the_tags_for_then(api: Api) -> None:
    worker = api.register("cpu", name="box")
    mine = api.submit(command="needs gpu", require=["gpu"], priority=9)
    other = api.submit(command="cpu work")
    assert [c["task_id"] for c in api.claim(worker)] == [other]
    response = api.client.post(f"/v1/workers/{worker}/tags", json={"add": ["gpu"]})
    assert response.status_code == 200
    (box,) = why(api, mine)["workers"]
    assert [(t["task_id"], t["rule"], t["detail"]) for t in box["took"]] == [
        (other, "tags", "box (w1) did not have gpu then")
    ]


def test_waiting_on_dependencies_names_them_and_their_states(api: Api) -> None:
    worker = api.register(name="box")
    first = api.submit(command="one")
    second = api.submit(command="two")
    api.claim(worker)
    third = api.submit(command="three", after=[first, second])
    answer = why(api, third)
    assert answer["state"] == "waiting"
    assert [(d["task_id"], d["kind"], d["state"]) for d in answer["waiting_for"]] == [
        (first, "after", "running"),
        (second, "after", "pending"),
    ]
    assert answer["summary"] == f"waiting for {first} (running), {second} (pending)"
    complete(api, first, worker)
    answer = why(api, third)
    assert [d["state"] for d in answer["waiting_for"]] == ["succeeded", "pending"]
    assert answer["summary"] == f"waiting for {second} (pending)"


def test_a_group_at_its_cap_names_the_tasks_that_hold_it(api: Api) -> None:
    response = api.client.post(
        "/v1/tasks",
        json={
            "tasks": [{"command": f"frame {i}"} for i in range(4)],
            "group": {"name": "shot12", "max_running": 2},
        },
    )
    ids = response.json()["ids"]
    worker = api.register(slots=5, name="farm")
    assert [c["task_id"] for c in api.claim(worker, max_tasks=5)] == ids[:2]
    answer = why(api, ids[2])
    assert answer["cap"] == {"group": "shot12", "max_running": 2, "running": ids[:2]}
    assert answer["workers"][0]["hold"] == "cap"
    assert answer["summary"] == (
        f"pending: group shot12 is at its cap of 2 (running: {ids[0]} {ids[1]})"
    )


def test_a_delayed_retry_says_when_it_is_due(api: Api) -> None:
    task_id = api.submit(command="flaky", retries=2, retry_delay_s=5)
    worker = api.register(name="box")
    api.claim(worker)
    complete(api, task_id, worker, code=3)
    answer = why(api, task_id)
    assert answer["state"] == "waiting"
    assert answer["retry_at"] == "2026-01-01T00:00:05.000000Z"
    assert answer["summary"] == (
        "waiting: retry 1 of 2 is due at 2026-01-01T00:00:05.000000Z "
        "(attempt 1: exit code 3; retried after 5s)"
    )


def test_a_finished_task_tells_each_attempt_and_a_lost_worker(api: Api) -> None:
    task_id = api.submit(command="flaky", max_attempts=3)
    lost = api.register(name="lost-box")
    api.claim(lost)
    api.clock.advance(31)
    wait_until(lambda: why(api, task_id)["state"] == "pending", what="the lease to expire")
    second = api.register(name="good-box")
    assert api.claim(second)[0]["attempt"] == 2
    complete(api, task_id, second, attempt=2)
    answer = why(api, task_id)
    assert answer["state"] == "succeeded"
    assert [
        (a["attempt"], a["worker_name"], a["outcome"], a["exit_code"]) for a in answer["attempts"]
    ] == [(1, "lost-box", "lost", None), (2, "good-box", "succeeded", 0)]
    assert answer["attempts"][0]["detail"].startswith("its worker was lost")
    assert answer["summary"] == (
        "succeeded on good-box (w2), attempt 2 (exit code 0); "
        "attempt 1 on lost-box: its worker was lost (no heartbeat in time)"
    )


def test_a_task_cancelled_before_it_ran_and_an_unknown_id(api: Api) -> None:
    first = api.submit(command="one")
    second = api.submit(command="two", after=[first])
    api.client.post(f"/v1/tasks/{first}/cancel")
    assert (
        why(api, second)["summary"] == f"cancelled before it ran: dependency {first} was cancelled"
    )
    missing = api.client.get("/v1/tasks/99/why")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no task 99"
    assert api.client.get("/v1/tasks/x/why").status_code in (400, 422)


def test_several_workers_each_with_its_hold(api: Api) -> None:
    busy = api.register("cpu", name="busy-box")
    api.submit(command="long", require=["cpu"])
    api.claim(busy)
    idle = api.register("cpu", "gpu", slots=2, name="idle-box")  # has not asked for work
    api.register("gpu", name="gpu-only")  # cannot run it
    mine = api.submit(command="mine", require=["cpu"])
    answer = why(api, mine)
    assert [(w["id"], w["hold"], w["running"]) for w in answer["workers"]] == [
        (busy, "busy", [1]),
        (idle, "free", []),
    ]
    assert answer["summary"] == (
        "pending: no task ranks ahead; idle-box (w2) has a free slot (2 workers could run it)"
    )
    assert answer["nearest"] == []  # only when no live worker could run it


def register_with(api: Api, name: str, resources: dict[str, Any], slots: int = 4) -> str:
    body = {"name": name, "slots": slots, "resources": resources}
    response = api.client.post("/v1/workers", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["worker_id"])


def test_a_worker_whose_free_amounts_are_too_few(api: Api) -> None:
    box = register_with(api, "gpubox", {"gpu": 4, "mem": "64G"})
    running = [api.submit(command="train", resources={"gpu": 2}) for _ in range(2)]
    assert [c["task_id"] for c in api.claim(box, max_tasks=4)] == running
    mine = api.submit(command="train", resources={"gpu": 2, "mem": "16G"})
    assert api.claim(box) == []
    answer = why(api, mine)
    (worker,) = answer["workers"]
    assert (worker["hold"], worker["running"], worker["short"]) == (
        "resources",
        running,
        {"gpu": 0},
    )
    assert worker["resources"] == {"gpu": 4, "mem": 64 << 30}
    assert worker["resources_free"] == {"gpu": 0, "mem": 64 << 30}
    assert answer["asks"] == {"gpu": 2, "mem": 16 << 30}
    assert answer["summary"] == "pending: no task ranks ahead; gpubox (w1) lacks gpu=2 (0 free)"


def test_no_live_worker_has_the_amounts(api: Api) -> None:
    register_with(api, "small", {"gpu": 2})
    register_with(api, "four", {"gpu": 4, "mem": "8G"})
    mine = api.submit(command="big", resources={"gpu": 8, "mem": "16G"})
    answer = why(api, mine)
    assert answer["workers"] == []
    assert answer["missing_resources"] == {"gpu": 4, "mem": 8 << 30}  # the most any has
    assert [(n["name"], n["lacks"], n["has"]) for n in answer["nearest"]] == [
        ("four", [], {"gpu": 4, "mem": 8 << 30}),
        ("small", [], {"gpu": 2, "mem": 0}),
    ]
    assert answer["summary"] == (
        "pending: no live worker has gpu=8 mem=16G; nearest: four (w2) has gpu=4 of gpu=8, "
        "and has mem=8G of mem=16G"
    )


def test_a_smaller_task_went_ahead_of_one_that_did_not_fit(api: Api) -> None:
    box = register_with(api, "gpubox", {"gpu": 2}, slots=3)
    first = api.submit(command="one gpu", resources={"gpu": 1})
    api.claim(box)
    big = api.submit(command="two gpus", resources={"gpu": 2}, priority=5)
    small = api.submit(command="one gpu", resources={"gpu": 1})
    assert [c["task_id"] for c in api.claim(box)] == [small]
    events = api.client.get("/v1/events", params={"type": "TaskClaimed"}).json()["events"]
    assert events[-1]["data"]["ahead_of"] == big  # what the log recorded
    answer = why(api, big)
    (worker,) = answer["workers"]
    assert [(t["task_id"], t["rule"], t["detail"]) for t in worker["took"]] == [
        (small, "resources", "gpu=2 not free then; the claim went ahead of it")
    ]
    assert (answer["passes"], worker["running"]) == (1, [first, small])
    assert answer["summary"] == (
        f"pending: no task ranks ahead; gpubox (w1) lacks gpu=2 (0 free); it took {small} "
        "first (gpu=2 not free then; the claim went ahead of it); passed over 1 time"
    )


def test_after_three_passes_the_workers_keep_the_resources(api: Api) -> None:
    box = register_with(api, "gpubox", {"gpu": 2}, slots=3)
    first = api.submit(command="one gpu", resources={"gpu": 1})
    api.claim(box)
    big = api.submit(command="two gpus", resources={"gpu": 2}, priority=5)
    for _ in range(3):
        small = api.submit(command="one gpu", resources={"gpu": 1})
        assert [c["task_id"] for c in api.claim(box)] == [small]
        complete(api, small, box)
    more = api.submit(command="one more", resources={"gpu": 1})
    assert api.claim(box) == []  # the free gpu is kept for `big`
    (worker,) = why(api, more)["workers"]
    assert (worker["hold"], worker["kept_for"], worker["short"]) == ("kept", big, {})
    assert why(api, more)["summary"] == (
        f"pending: 1 task ranks ahead; gpubox (w1) keeps its gpu for {big}, passed over too often"
    )
    answer = why(api, big)
    assert answer["passes"] == 3
    assert answer["summary"].endswith(
        "; passed over 3 times, so the workers it fits keep gpu for it"
    )
    complete(api, first, box)
    assert [c["task_id"] for c in api.claim(box)] == [big]


def test_many_workers_name_the_least_busy_and_count_all(api: Api) -> None:
    busy = [api.register("cpu", name=f"busy{i}") for i in range(25)]
    for worker in busy:
        api.submit(command="long")
        assert api.claim(worker)
    idle = api.register("cpu", slots=2, name="idle")
    mine = api.submit(command="mine")
    answer = why(api, mine)
    assert answer["workers_total"] == 26
    named = [w["id"] for w in answer["workers"]]
    assert len(named) == 20 and idle in named
    assert answer["summary"] == (
        "pending: no task ranks ahead; idle (w26) has a free slot (26 workers could run it)"
    )
