"""Scheduling through the HTTP API: matching, leases, cancel, stale reports, tags."""

from __future__ import annotations

import time

from tests.api.conftest import Api


def complete(api: Api, task_id: int, worker_id: str, attempt: int, **extra: object) -> int:
    body = {"worker_id": worker_id, "attempt": attempt, "exit_code": 0, **extra}
    return api.client.post(f"/v1/tasks/{task_id}/complete", json=body).status_code


def task(api: Api, task_id: int) -> dict[str, object]:
    response = api.client.get(f"/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_tasks_reach_only_workers_whose_tags_satisfy_require(api: Api) -> None:
    gpu_task = api.submit(command="train", require=["gpu", "cpu"])
    cpu_task = api.submit(command="build", require="cpu")
    cpu_only = api.register("cpu")
    assert [t["task_id"] for t in api.claim(cpu_only, max_tasks=5)] == [cpu_task]
    both = api.register("cpu", "gpu", "big")
    assert [t["task_id"] for t in api.claim(both)] == [gpu_task]


def test_priority_then_want_score_then_age(api: Api) -> None:
    old_plain = api.submit(command="a")
    wants_gpu = api.submit(command="b", want=["gpu"])
    wants_half = api.submit(command="c", want=["gpu", "ssd"])
    urgent = api.submit(command="d", priority=5)
    worker = api.register("gpu")
    order = [api.claim(worker)[0]["task_id"]]
    for _ in range(3):
        complete(api, order[-1], worker, 1)
        order.append(api.claim(worker)[0]["task_id"])
    assert order == [urgent, wants_gpu, wants_half, old_plain]


def test_claim_returns_the_command_and_attempt(api: Api) -> None:
    task_id = api.submit(command="echo 'quoted; $HOME'", timeout_s=2.5)
    worker = api.register()
    claimed = api.claim(worker)
    assert claimed == [
        {
            "task_id": task_id,
            "attempt": 1,
            "command": "echo 'quoted; $HOME'",
            "timeout_s": 2.5,
            "array_index": None,
        }
    ]


def test_slots_bound_what_a_worker_holds(api: Api) -> None:
    for n in range(5):
        api.submit(command=f"t{n}")
    worker = api.register(slots=2)
    assert len(api.claim(worker, max_tasks=5)) == 2
    assert api.claim(worker, max_tasks=5) == []


def test_long_poll_claim_wakes_on_submit(api: Api) -> None:
    worker = api.register("cpu")
    import threading

    result: dict[str, object] = {}

    def claim() -> None:
        started = time.monotonic()
        response = api.client.post(f"/v1/workers/{worker}/claim", json={"wait_s": 10})
        result["tasks"] = response.json()["tasks"]
        result["waited"] = time.monotonic() - started

    thread = threading.Thread(target=claim)
    thread.start()
    time.sleep(0.2)  # let the claim start waiting
    task_id = api.submit(command="x", require=["cpu"])
    thread.join(timeout=10)
    assert [t["task_id"] for t in result["tasks"]] == [task_id]  # type: ignore[union-attr]
    assert float(result["waited"]) < 5  # type: ignore[arg-type]


def test_completion_states_and_output(api: Api) -> None:
    ok, bad = api.submit(command="true"), api.submit(command="false")
    worker = api.register(slots=2)
    api.claim(worker, max_tasks=2)
    assert complete(api, ok, worker, 1, output_tail="hello\n", duration_s=0.5) == 200
    assert complete(api, bad, worker, 1, exit_code=3) == 200
    assert task(api, ok)["state"] == "succeeded"
    assert task(api, ok)["output_tail"] == "hello\n"
    assert (task(api, bad)["state"], task(api, bad)["exit_code"]) == ("failed", 3)
    assert complete(api, ok, worker, 1) == 409  # already finished


def test_timed_out_completion_fails(api: Api) -> None:
    task_id = api.submit(command="sleep 100", timeout_s=1)
    worker = api.register()
    api.claim(worker)
    complete(api, task_id, worker, 1, exit_code=143, timed_out=True)
    assert (task(api, task_id)["state"], task(api, task_id)["reason"]) == ("failed", "timeout")


def test_lease_expiry_requeues_then_fails_after_max_attempts(api: Api) -> None:
    task_id = api.submit(command="flaky", max_attempts=2)
    first = api.register(name="first")
    assert api.claim(first)[0]["attempt"] == 1
    api.clock.advance(31)
    deadline = time.monotonic() + 5
    while task(api, task_id)["state"] != "pending" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert task(api, task_id)["state"] == "pending"
    assert task(api, task_id)["reason"] == "lease_expired"
    # the lost worker's late report is refused, and so is its heartbeat
    stale = complete(api, task_id, first, 1)
    assert stale == 409
    response = api.client.post(f"/v1/workers/{first}/heartbeat", json={"running": [[task_id, 1]]})
    assert response.status_code == 409
    second = api.register(name="second")
    assert api.claim(second)[0]["attempt"] == 2
    api.clock.advance(31)
    deadline = time.monotonic() + 5
    while task(api, task_id)["state"] != "failed" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert task(api, task_id)["state"] == "failed"
    assert "attempts" in str(task(api, task_id)["reason"])


def test_heartbeats_keep_a_lease_alive(api: Api) -> None:
    task_id = api.submit(command="long")
    worker = api.register()
    api.claim(worker)
    for _ in range(4):
        api.clock.advance(20)
        response = api.client.post(
            f"/v1/workers/{worker}/heartbeat", json={"running": [[task_id, 1]]}
        )
        assert response.json() == {"cancel": []}
    time.sleep(0.1)  # several expiry passes
    assert task(api, task_id)["state"] == "running"


def test_cancel_pending_and_running(api: Api) -> None:
    pending, running = api.submit(command="a"), api.submit(command="b")
    worker = api.register()
    # the worker takes the oldest first: cancel the first while it is pending is impossible,
    # so claim, then cancel the other (pending) and the claimed (running) one
    claimed = api.claim(worker)[0]["task_id"]
    other = running if claimed == pending else pending
    assert api.client.post(f"/v1/tasks/{other}/cancel").json() == {
        "id": other,
        "state": "cancelled",
    }
    assert api.client.post(f"/v1/tasks/{claimed}/cancel").json() == {
        "id": claimed,
        "state": "cancelling",
    }
    beat = api.client.post(f"/v1/workers/{worker}/heartbeat", json={"running": [[claimed, 1]]})
    assert beat.json() == {"cancel": [claimed]}
    assert complete(api, claimed, worker, 1, exit_code=143, cancelled=True) == 200
    assert task(api, claimed)["state"] == "cancelled"
    again = api.client.post(f"/v1/tasks/{claimed}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "illegal_transition"
    assert api.client.post("/v1/tasks/999/cancel").status_code == 404


def test_batch_cancel_reports_each(api: Api) -> None:
    a = api.submit(command="a")
    response = api.client.post("/v1/tasks/cancel", json={"ids": [a, 77]})
    results = response.json()["results"]
    assert results[0] == {"id": a, "state": "cancelled"}
    assert results[1]["error"]["code"] == "not_found"


def test_idempotency_key_creates_one_task(api: Api) -> None:
    first = api.submit(command="once", idempotency_key="job-7")
    second = api.submit(command="once", idempotency_key="job-7")
    assert first == second
    batch = api.client.post(
        "/v1/tasks",
        json={
            "tasks": [
                {"command": "x", "idempotency_key": "k"},
                {"command": "x", "idempotency_key": "k"},
            ]
        },
    ).json()["ids"]
    assert batch[0] == batch[1]
    assert api.client.get("/v1/tasks").json()["counts"]["pending"] == 2


def test_tag_change_changes_what_a_worker_gets(api: Api) -> None:
    gpu_task = api.submit(command="g", require=["gpu"])
    worker = api.register("cpu", name="box")
    assert api.claim(worker) == []
    response = api.client.post("/v1/workers/box/tags", json={"add": ["gpu"], "remove": ["cpu"]})
    assert response.json() == {"worker_id": worker, "tags": ["gpu"]}
    assert api.claim(worker)[0]["task_id"] == gpu_task
    assert api.client.get(f"/v1/workers/{worker}").json()["tags"] == ["gpu"]


def test_deregister_requeues_running_tasks(api: Api) -> None:
    task_id = api.submit(command="x")
    worker = api.register()
    api.claim(worker)
    assert api.client.delete(f"/v1/workers/{worker}").status_code == 200
    assert task(api, task_id)["state"] == "pending"
    workers = api.client.get("/v1/workers", params={"all": 1}).json()["workers"]
    assert [(w["id"], w["state"]) for w in workers] == [(worker, "stopped")]


def test_listing_paginates_with_counts(api: Api) -> None:
    ids = api.client.post(
        "/v1/tasks", json={"tasks": [{"command": f"c{i}"} for i in range(25)]}
    ).json()["ids"]
    page = api.client.get("/v1/tasks", params={"limit": 10}).json()
    assert [t["id"] for t in page["tasks"]] == ids[:10]
    assert page["counts"]["pending"] == 25
    nxt = api.client.get("/v1/tasks", params={"limit": 10, "after": page["next_after"]}).json()
    assert [t["id"] for t in nxt["tasks"]] == ids[10:20]
    last = api.client.get("/v1/tasks", params={"limit": 10, "after": nxt["next_after"]}).json()
    assert [t["id"] for t in last["tasks"]] == ids[20:]
    assert last["next_after"] is None
    assert api.client.get("/v1/tasks", params={"state": "succeeded"}).json()["tasks"] == []
    assert api.client.get("/v1/tasks", params={"state": "bogus"}).status_code == 422


def test_events_and_stats(api: Api) -> None:
    task_id = api.submit(command="x")
    worker = api.register()
    api.claim(worker)
    complete(api, task_id, worker, 1)
    events = api.client.get(f"/v1/tasks/{task_id}/events").json()["events"]
    assert [e["type"] for e in events] == ["TaskSubmitted", "TaskClaimed", "TaskCompleted"]
    assert set(events[0]) == {"seq", "ts", "type", "task_id", "worker_id", "data"}
    log = api.client.get("/v1/events", params={"after": 0, "type": "TaskClaimed"}).json()["events"]
    assert [e["task_id"] for e in log] == [task_id]
    stats = api.client.get("/v1/stats").json()
    assert stats["succeeded"] == 1 and stats["pending"] == 0
    assert stats["workers"]["alive"] == 1
    metrics = api.client.get("/metrics").text
    assert 'kickoff_tasks{state="succeeded"} 1' in metrics


def test_heartbeat_events_appear_in_task_history(api: Api) -> None:
    task_id = api.submit(command="x")
    worker = api.register()
    api.claim(worker)
    for _ in range(3):
        api.client.post(f"/v1/workers/{worker}/heartbeat", json={"running": [[task_id, 1]]})
    complete(api, task_id, worker, 1)
    types = [e["type"] for e in api.client.get(f"/v1/tasks/{task_id}/events").json()["events"]]
    assert types == ["TaskSubmitted", "TaskClaimed", *["WorkerHeartbeat"] * 3, "TaskCompleted"]


def test_complete_and_claim_in_one_round_trip(api: Api) -> None:
    first, second = api.submit(command="a"), api.submit(command="b")
    worker = api.register()
    api.claim(worker)
    response = api.client.post(
        f"/v1/tasks/{first}/complete",
        json={
            "worker_id": worker,
            "attempt": 1,
            "exit_code": 0,
            "claim": {"max_tasks": 1, "wait_s": 0},
        },
    )
    assert response.json() == {
        "ok": True,
        "tasks": [
            {
                "task_id": second,
                "attempt": 1,
                "command": "b",
                "timeout_s": None,
                "array_index": None,
            }
        ],
    }
    assert task(api, first)["state"] == "succeeded"
    assert task(api, second)["state"] == "running"


def test_complete_and_claim_with_nothing_left_and_when_stale(api: Api) -> None:
    task_id = api.submit(command="a")
    worker = api.register()
    api.claim(worker)
    response = api.client.post(
        f"/v1/tasks/{task_id}/complete",
        json={"worker_id": worker, "attempt": 1, "exit_code": 0, "claim": {"max_tasks": 1}},
    )
    assert response.json() == {"ok": True, "tasks": []}
    assert task(api, task_id)["state"] == "succeeded"
    second = api.submit(command="b")
    api.claim(worker)
    api.client.delete(f"/v1/workers/{worker}")  # requeues `second`; its attempt is now stale
    response = api.client.post(
        f"/v1/tasks/{second}/complete",
        json={"worker_id": worker, "attempt": 1, "exit_code": 0, "claim": {"max_tasks": 1}},
    )
    assert response.status_code == 409  # nothing counted, nothing claimed
    assert task(api, second)["state"] == "pending"


def test_listing_merges_states_in_id_order_across_pages(api: Api) -> None:
    ids = api.client.post("/v1/tasks", json={"tasks": [{"command": f"c{i}"} for i in range(9)]})
    ids = ids.json()["ids"]
    worker = api.register(slots=3)
    api.claim(worker, max_tasks=3)  # the three oldest run, the rest wait
    api.client.post(f"/v1/tasks/{ids[4]}/cancel")  # finished: not in the default listing
    seen, after = [], 0
    while True:
        page = api.client.get("/v1/tasks", params={"limit": 2, "after": after}).json()
        seen += [(t["id"], t["state"]) for t in page["tasks"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    expected = [(i, "running") for i in ids[:3]] + [(i, "pending") for i in ids[3:] if i != ids[4]]
    assert seen == expected
    newest = api.client.get("/v1/tasks", params={"limit": 3, "order": "desc"}).json()["tasks"]
    assert [t["id"] for t in newest] == [ids[8], ids[7], ids[6]]
