"""SPEC §7 with real processes: kill -9 of the server under load; scheduling overhead."""

from __future__ import annotations

import statistics
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, WorkerProcess, kickoff_cmd, wait_until
from tests.e2e._latency import LatencyProxy


def _submitter(server: ServerProcess, runs: Path, acked: list[int], stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=5) as http:
        while not stop.is_set():
            command = f'echo "$KICKOFF_TASK_ID $KICKOFF_ATTEMPT" >> {runs}; sleep 0.1'
            try:
                response = http.post("/v1/tasks", json={"command": command})
            except httpx.TransportError:
                stop.wait(0.05)  # the server is down: try again, as a client would
                continue
            if response.status_code == 201:
                acked.extend(response.json()["ids"])


def test_kill_9_of_the_server_under_load_loses_nothing_and_runs_nothing_twice(
    server: ServerProcess, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    workers = [start_worker("--slots", "2"), start_worker("--slots", "2")]
    acked: list[int] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=_submitter, args=(server, runs, acked, stop)) for _ in range(4)
    ]
    for client in clients:
        client.start()
    try:
        wait_until(lambda: len(acked) >= 40 and runs.exists(), timeout=30, what="load")
        server.kill()  # mid-run: tasks running on workers, submits in flight
        threading.Event().wait(0.5)
        server.start()
        wait_until(lambda: len(acked) >= 120, timeout=30, what="submits after the restart")
    finally:
        stop.set()
        for client in clients:
            client.join()
    with server.client() as api:

        def all_done() -> bool:
            counts = api.get("/v1/stats")
            return counts["pending"] + counts["running"] + counts["cancelling"] == 0

        wait_until(all_done, timeout=120, what="every task to finish")
        for task_id in acked:
            task = api.get(f"/v1/tasks/{task_id}")
            assert task["state"] == "succeeded", task
            assert task["attempt"] == 1, task  # reattached, not run again
    started = Counter(line.split()[0] for line in runs.read_text().splitlines())
    assert [task for task, n in started.items() if n > 1] == []  # no task ran twice
    assert {str(t) for t in acked} <= set(started)
    for worker in workers:
        assert worker.proc.poll() is None, worker.output()  # they rode out the outage


def test_twenty_sequential_tasks_start_within_milliseconds(
    server: ServerProcess, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("--have", "cpu")
    with server.client() as api:
        wait_until(lambda: api.get("/v1/stats")["workers"]["alive"] == 1, what="the worker")
        waits = []
        for n in range(20):
            task_id = api.post("/v1/tasks", {"command": f"echo {n}", "require": ["cpu"]})["ids"][0]
            task = wait_until(
                lambda task_id=task_id: _finished(api.get(f"/v1/tasks/{task_id}")), what="done"
            )
            started = datetime.fromisoformat(task["started_at"])
            submitted = datetime.fromisoformat(task["submitted_at"])
            waits.append((started - submitted).total_seconds())
    # submit -> claim, as the log recorded it; the figure itself is bench/'s job
    print(f"submit->claim p50 {statistics.median(waits) * 1e3:.2f} ms, sum {sum(waits):.3f} s")
    assert sum(waits) < 1.0, waits


def _finished(task: dict[str, object]) -> dict[str, object] | None:
    return task if task["state"] == "succeeded" else None


# Before the fix, 7 of 18 restarts ran a finished task again (and 2 of 74 without the slow
# answer, in the setups tried): 8 restarts catch it in nearly every run.
RESTARTS = 8


@pytest.mark.slow
def test_restarts_under_load_run_each_recorded_attempt_once(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Issue 11.1: one worker, one slot, a stream of instant tasks; the server killed -9
    and restarted on its port and database again and again, while the answer to the
    worker's reconciliation (`GET /v1/tasks?worker=...`) comes back slowly, as from a
    loaded server: by then, tasks it calls running have finished and been reported. Each
    recorded attempt runs once: never again after its completion, never beside another."""
    server = make_server("--heartbeat-timeout", "2")
    runs = tmp_path / "runs.log"
    proxy = LatencyProxy(server.port, slow=(b"GET /v1/tasks?",), delay_s=0.5)
    with server.client() as api:
        command = f"echo $KICKOFF_TASK_ID:$KICKOFF_ATTEMPT >> {runs}"
        api.post("/v1/tasks", {"tasks": [{"command": command}] * 10_000})

    def lines() -> int:
        return len(runs.read_text().splitlines()) if runs.exists() else 0

    def run_a_while() -> None:
        """Until tasks run again and, once the worker saw an outage, it reconciled."""
        seen, asked = lines(), proxy.delayed
        wait_until(lambda: lines() >= seen + 20, timeout=30, what="tasks running")
        if server.starts > 1:
            reconciled = lambda: proxy.delayed > asked or lines() > seen + 300  # noqa: E731
            wait_until(reconciled, timeout=30, what="a reconciliation")

    with proxy.running():
        worker = _worker(tmp_path, proxy.address, server.env, "--slots", "1")
        try:
            for _ in range(RESTARTS):
                run_a_while()
                server.kill()  # mid-stream: a report, its claim or a reconciliation in flight
                threading.Event().wait(0.3)  # down for a moment, as in the issue
                server.start()
            run_a_while()
        finally:
            code = worker.stop()
    log = worker.output()
    assert code == 0, log
    twice = [run for run, n in Counter(runs.read_text().splitlines()).items() if n > 1]
    assert twice == [], log[-4000:]
    assert "max_tasks" not in log  # never a claim for no task
    assert "does not claim with reports" not in log


def _worker(tmp_path: Path, address: str, env: dict[str, str], *args: str) -> WorkerProcess:
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*kickoff_cmd(), "worker", "--server", address, *args],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    return WorkerProcess(proc, log_path)
