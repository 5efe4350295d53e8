"""Two real `kickoff server`s on one PostgreSQL database (SPEC §14): one leads, the other
waits as a standby. `kill -9` of the leader while clients submit and workers run tasks:
the standby takes over, claims are served again, every acknowledged task exists and ran
exactly once, the chain verifies. A paused (SIGSTOP) old leader that wakes after the
takeover cannot write. (The takeover's time is bench/'s figure: `--only failover`.)
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kickoff.client import Client
from kickoff.errors import KickoffError
from tests.conftest import ServerProcess, WorkerProcess, finish, free_port, kickoff_cmd, wait_until

Pair = tuple[ServerProcess, ServerProcess]


@pytest.fixture
def pair(tmp_path: Path, isolated_env: dict[str, str], pg_cluster: Any) -> Iterator[Pair]:
    """A leader and a standby on a new database, a 2 s lease."""
    url = pg_cluster.database()
    servers = [
        ServerProcess(
            db_path=url,
            port=free_port(),
            base_env=isolated_env,
            extra_args=["--heartbeat-timeout", "5", "--lease-timeout", "2"],
            log_path=tmp_path / f"server{n}.log",
        )
        for n in range(2)
    ]
    servers[0].start()
    servers[1].start()  # /healthz answers as a standby
    yield servers[0], servers[1]
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)
            server.stop()


def role(server: ServerProcess) -> str | None:
    try:
        answer = httpx.get(f"{server.url}/healthz", timeout=2).json()
    except (httpx.TransportError, ValueError):
        return None
    return str(answer.get("role", "leader"))


def both(pair: Pair) -> str:
    return f"{pair[0].address},{pair[1].address}"


def test_kill_9_of_the_leader_under_load_loses_nothing_and_runs_nothing_twice(
    pair: Pair, tmp_path: Path
) -> None:
    leader, standby = pair
    assert (role(leader), role(standby)) == ("leader", "standby")
    runs = tmp_path / "runs"
    env = {**leader.base_env, "KICKOFF_SERVER": both(pair), "KICKOFF_TOKEN": leader.token}
    workers = [_worker(tmp_path, env, n) for n in range(2)]
    acked: list[int] = []
    stop = threading.Event()

    def submit() -> None:
        with Client(both(pair), token=leader.token, timeout_s=5) as api:
            while not stop.is_set() and len(acked) < 400:  # (each task takes a slot 0.1 s)
                command = f'echo "$KICKOFF_TASK_ID $KICKOFF_ATTEMPT" >> {runs}; sleep 0.1'
                with contextlib.suppress(KickoffError):  # down, or not yet leading: again
                    acked.extend(api.post("/v1/tasks", {"command": command})["ids"])
                stop.wait(0.05)

    def lines() -> int:
        return len(runs.read_text().splitlines()) if runs.exists() else 0

    clients = [threading.Thread(target=submit) for _ in range(8)]
    for client in clients:
        client.start()
    try:
        wait_until(lambda: len(acked) >= 40 and lines() >= 4, timeout=30, what="load")
        leader.kill()  # mid-run: tasks running on workers, submits in flight
        killed, seen = time.monotonic(), lines()
        wait_until(lambda: role(standby) == "leader", timeout=30, what="the takeover")
        assert "took over with the state followed warm to seq" in standby.output()
        wait_until(lambda: lines() >= seen + 4, timeout=30, what="claims served again")
        print(f"claims served again {time.monotonic() - killed:.2f}s after the kill")
        at_kill = len(acked)
        wait_until(
            lambda: len(acked) >= min(at_kill + 40, 400), timeout=30, what="submits after it"
        )
    finally:
        stop.set()
        for client in clients:
            client.join()
    with standby.client() as api:

        def all_done() -> bool:
            counts = api.get("/v1/stats")
            return counts["pending"] + counts["running"] + counts["cancelling"] == 0

        wait_until(all_done, timeout=120, what="every task to finish")
        for task_id in acked:
            task = api.get(f"/v1/tasks/{task_id}")
            assert task["state"] == "succeeded", task
    started = Counter(line.split()[0] for line in runs.read_text().splitlines())
    assert [task for task, n in started.items() if n > 1] == []  # none ran twice
    assert {str(t) for t in acked} <= set(started)
    for worker in workers:
        assert worker.proc.poll() is None, worker.output()  # they followed the leader
    finish(workers)
    _verifies(standby)


def test_a_paused_old_leader_that_wakes_after_the_takeover_cannot_write(pair: Pair) -> None:
    leader, standby = pair
    with leader.client() as api:
        api.post("/v1/tasks", {"command": "true"})
    assert leader.proc is not None
    leader.proc.send_signal(signal.SIGSTOP)
    wait_until(lambda: role(standby) == "leader", timeout=30, what="the takeover")
    with standby.client() as api:
        assert api.post("/v1/tasks", {"command": "echo after"})["ids"] == [2]
    leader.proc.send_signal(signal.SIGCONT)
    answer = None
    with contextlib.suppress(httpx.TransportError):  # (it noticed first, and stopped)
        answer = httpx.post(
            f"{leader.url}/v1/tasks",
            json={"command": "echo stale"},
            headers={"Authorization": f"Bearer {leader.token}"},
            timeout=10,
        )
    assert answer is None or answer.status_code == 503, answer.text
    assert leader.proc.wait(timeout=30) == 1  # it stops: its lease is another's
    assert "lost the lease" in leader.output()
    with standby.client() as api:
        assert [t["command"] for t in api.get("/v1/tasks", state="all")["tasks"]] == [
            "true",
            "echo after",
        ]
    _verifies(standby)


def test_a_standby_refuses_writes_and_names_the_leader(pair: Pair) -> None:
    leader, standby = pair
    refused = httpx.post(
        f"{standby.url}/v1/tasks",
        json={"command": "true"},
        headers={"Authorization": f"Bearer {standby.token}"},
    )
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "not_leader"
    assert refused.headers["x-kickoff-leader"] == leader.address
    with Client(f"{standby.address},{leader.address}", token=leader.token) as api:
        assert api.post("/v1/tasks", {"command": "true"})["ids"] == [1]  # followed the leader


def test_a_standby_answers_reads_from_its_warm_state(pair: Pair) -> None:
    leader, standby = pair
    auth = {"Authorization": f"Bearer {standby.token}"}
    with Client(leader.address, token=leader.token) as api:
        (task_id,) = api.post("/v1/tasks", {"command": "echo greet"})["ids"]

    def read() -> httpx.Response | None:
        answer = httpx.get(f"{standby.url}/v1/tasks/{task_id}", headers=auth, timeout=2)
        return answer if answer.status_code == 200 else None

    answer = wait_until(read, timeout=1.0)  # the leader's NOTIFY wakes it at the commit
    assert answer.json()["state"] == "pending"
    seq = int(answer.headers["x-kickoff-standby"].removeprefix("seq="))
    assert seq >= 2 and answer.headers["x-kickoff-leader"] == leader.address
    status = subprocess.run(
        [*kickoff_cmd(), "status", "--server", standby.address, "--token", standby.token],
        env=standby.base_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    assert "greet" in status.stdout
    for path in ("/v1/stats", "/v1/workers", "/v1/events", f"/v1/tasks/{task_id}/why"):
        assert httpx.get(f"{standby.url}{path}", headers=auth).status_code == 200, path
    assert httpx.get(f"{standby.url}/metrics", headers=auth).status_code == 200
    for refused in (
        httpx.post(f"{standby.url}/v1/tasks", json={"command": "true"}, headers=auth),
        httpx.get(f"{standby.url}/v1/tasks/{task_id}/output", headers=auth),
        httpx.post(f"{standby.url}/v1/workers", json={"slots": 1}, headers=auth),
    ):
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "not_leader"
        assert refused.headers["x-kickoff-leader"] == leader.address


def _worker(tmp_path: Path, env: dict[str, str], n: int) -> WorkerProcess:
    log_path = tmp_path / f"worker{n}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*kickoff_cmd(), "worker", "--slots", "2"],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    return WorkerProcess(proc, log_path)


def _verifies(server: ServerProcess) -> None:
    result = subprocess.run(
        [*kickoff_cmd(), "verify", "--db", str(server.db_path)],
        env=server.base_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
