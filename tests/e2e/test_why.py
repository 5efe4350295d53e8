"""`kickoff why` with a real server, a real worker and the real CLI (SPEC §11): the
explanation agrees with the claims the log recorded."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import ServerProcess, WorkerProcess, wait_until

Kickoff = Callable[..., subprocess.CompletedProcess[str]]


def new(kickoff: Kickoff, *args: str) -> int:
    done = kickoff("new", *args)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def state(server: ServerProcess, task_id: int) -> str:
    with server.client() as api:
        found: str = api.get(f"/v1/tasks/{task_id}")["state"]
        return found


def claimed(server: ServerProcess) -> list[tuple[int, str]]:
    with server.client() as api:
        found: list[dict[str, Any]] = api.get("/v1/events", type="TaskClaimed")["events"]
    return [(e["task_id"], e["worker_id"]) for e in found]


def test_why_a_low_priority_task_waits_agrees_with_the_log(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    kickoff: Kickoff,
    tmp_path: Path,
) -> None:
    first, then = tmp_path / "first", tmp_path / "then"
    start_worker("--have", "cpu", "--name", "box1")
    blocker = new(kickoff, "--", f"while [ ! -e {first} ]; do sleep 0.05; done")
    wait_until(lambda: state(server, blocker) == "running", what="the blocker to start")
    low = new(kickoff, "--priority", "0", "--", "true")
    high = new(kickoff, "--priority", "5", "--", f"while [ ! -e {then} ]; do sleep 0.05; done")
    gpu = new(kickoff, "--require", "gpu", "--", "true")
    first.touch()  # the blocker ends; the worker takes the next task; `high` holds it
    wait_until(lambda: state(server, high) == "running", what="the high-priority task")
    done = kickoff("why", str(low), "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    (box,) = answer["workers"]
    took = [(t["task_id"], t["rule"], t["detail"]) for t in box["took"]]
    assert took == [(high, "priority", "priority 5 > 0")]
    assert claimed(server) == [(blocker, box["id"]), (high, box["id"])]  # the log agrees
    assert (box["name"], box["hold"], box["running"]) == ("box1", "busy", [high])
    human = kickoff("why", str(low))
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines()[0] == f"task {low} {answer['summary']}"
    assert f"{high}\t" in human.stdout and "priority 5 > 0" in human.stdout
    info = kickoff("info", str(low))
    assert f"why:          {answer['summary']}" in info.stdout
    nobody = json.loads(kickoff("why", str(gpu), "--json").stdout)
    assert nobody["missing"] == ["gpu"]
    assert (
        nobody["summary"] == "pending: no live worker has gpu; nearest: box1 (w1) has none of gpu"
    )
    then.touch()
    wait_until(lambda: state(server, low) == "succeeded", timeout=20, what="the low task")
    finished = json.loads(kickoff("why", str(low), "--json").stdout)
    assert finished["summary"] == "succeeded on box1 (w1), attempt 1 (exit code 0)"
    assert claimed(server)[2:] == [(low, box["id"])]
    assert kickoff("why", "999").returncode == 4


def test_why_a_task_that_does_not_fit_agrees_with_the_log(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    kickoff: Kickoff,
    tmp_path: Path,
) -> None:
    """A gpu=2 task behind a running gpu=1 one on a gpu=2 worker: a gpu=1 task submitted
    after it goes ahead (the claim records ahead_of), and why says so."""
    gate = tmp_path / "go"
    hold = f"while [ ! -e {gate} ]; do sleep 0.05; done"
    start_worker("--resources", "gpu=2", "--slots", "3", "--name", "gpubox")
    first = new(kickoff, "--resources", "gpu=1", "--", hold)
    wait_until(lambda: state(server, first) == "running", what="the first gpu task")
    big = new(kickoff, "--resources", "gpu=2", "--priority", "5", "--", "true")
    small = new(kickoff, "--resources", "gpu=1", "--", hold)
    wait_until(lambda: state(server, small) == "running", what="the small task to go ahead")
    answer = json.loads(kickoff("why", str(big), "--json").stdout)
    (box,) = answer["workers"]
    assert (box["hold"], box["running"], box["short"]) == ("resources", [first, small], {"gpu": 0})
    assert [(t["task_id"], t["rule"]) for t in box["took"]] == [(small, "resources")]
    with server.client() as api:
        found = api.get("/v1/events", type="TaskClaimed", task=str(small))["events"]
    assert found[0]["data"]["ahead_of"] == big  # the log agrees
    assert answer["passes"] == 1
    assert answer["summary"].startswith("pending: no task ranks ahead; gpubox (w1) lacks gpu=2")
    human = kickoff("why", str(big))
    assert "gpu=0" in human.stdout and "resources" in human.stdout
    gate.touch()
    wait_until(lambda: state(server, big) == "succeeded", timeout=20, what="the big task")
