"""Issue 11.2 with real signals: a task dies with its worker (its whole family, also what
left its process group), a worker that cannot renew its lease stops its tasks before the
server can hand them to another worker, `kickoff up`'s worker dies with `up`, and a worker
registered again after a loss heartbeats within the server's timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kickoff.client import Client
from tests.conftest import ServerProcess, WorkerProcess, free_port, kickoff_cmd, wait_until

TIMEOUT_S = 3  # the server's --heartbeat-timeout in these tests


def family_command(tmp_path: Path) -> str:
    """Attempt 1 starts a family and waits: a child in its group, one in a session of its
    own (`setsid`), one with an empty environment (`env -i`); each writes its pid down.
    A later attempt writes down which of them still live (none, or they overlapped)."""
    family, overlap = tmp_path / "family", tmp_path / "overlap"
    return (
        'if [ "$KICKOFF_ATTEMPT" = 1 ]; then '
        f"echo $$ >> {family}; "
        f"sleep 600 & echo $! >> {family}; "
        f"setsid sleep 600 & echo $! >> {family}; "
        f"env -i sleep 600 & echo $! >> {family}; "
        "wait; "
        "else "
        f"for p in $(cat {family}); do "
        "s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); "
        f'if [ -n "$s" ] && [ "$s" != Z ]; then echo $p; fi; done > {overlap}; '
        "echo attempt $KICKOFF_ATTEMPT; fi"
    )


def alive(pid: int) -> bool:
    """A live, non-zombie process (a zombie has ended; only its parent has not looked)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def family(tmp_path: Path) -> list[int]:
    path = tmp_path / "family"
    pids = [int(p) for p in path.read_text().split()] if path.exists() else []
    return pids if len(pids) == 4 else []


@pytest.fixture
def reap_family(tmp_path: Path) -> Iterator[None]:
    """Leave no `sleep 600` behind, whatever the test saw."""
    yield
    for pid in family(tmp_path):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def start(tmp_path: Path, name: str, args: list[str], env: dict[str, str]) -> WorkerProcess:
    log_path = tmp_path / f"{name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*kickoff_cmd(), *args],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    return WorkerProcess(proc, log_path)


def worker(server: ServerProcess, tmp_path: Path, name: str) -> WorkerProcess:
    return start(tmp_path, name, ["worker", "--server", server.address, "--name", name], server.env)


def submit(client: Client, command: str) -> int:
    ids: list[int] = client.post("/v1/tasks", {"command": command})["ids"]
    return ids[0]


def task_is(client: Client, task_id: int, state: str) -> Callable[[], Any]:
    def check() -> Any:
        task = client.get(f"/v1/tasks/{task_id}")
        return task if task["state"] == state else None

    return check


def rescued_without_overlap(server: ServerProcess, tmp_path: Path, task_id: int) -> None:
    """A second worker runs attempt 2, and none of attempt 1's family lived to see it."""
    rescuer = worker(server, tmp_path, "rescuer")
    try:
        with server.client() as client:
            task = wait_until(task_is(client, task_id, "succeeded"), timeout=30, what="rerun")
        assert task["attempt"] == 2
        assert task["worker_name"] == "rescuer"
        assert (tmp_path / "overlap").read_text() == ""
    finally:
        assert rescuer.stop() == 0, rescuer.output()


def test_kill_9_of_the_worker_kills_its_task_s_whole_family(
    make_server: Callable[..., ServerProcess], tmp_path: Path, reap_family: None
) -> None:
    server = make_server("--heartbeat-timeout", str(TIMEOUT_S))
    doomed = worker(server, tmp_path, "doomed")
    with server.client() as client:
        task_id = submit(client, family_command(tmp_path))
        pids = wait_until(lambda: family(tmp_path), what="the family started")
        doomed.kill()
        wait_until(lambda: not [p for p in pids if alive(p)], what="the family killed")
        assert client.get(f"/v1/tasks/{task_id}")["state"] == "running"  # not yet requeued
    rescued_without_overlap(server, tmp_path, task_id)


def test_a_frozen_worker_s_tasks_stop_before_the_server_hands_them_out(
    make_server: Callable[..., ServerProcess], tmp_path: Path, reap_family: None
) -> None:
    server = make_server("--heartbeat-timeout", str(TIMEOUT_S))
    frozen = worker(server, tmp_path, "frozen")
    try:
        with server.client() as client:
            task_id = submit(client, family_command(tmp_path))
            pids = wait_until(lambda: family(tmp_path), what="the family started")
            frozen.proc.send_signal(signal.SIGSTOP)
            wait_until(lambda: not [p for p in pids if alive(p)], what="the family killed")
            assert client.get(f"/v1/tasks/{task_id}")["state"] == "running"  # not yet expired
        rescued_without_overlap(server, tmp_path, task_id)
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    with server.client() as client:  # awake again: it knows its lease is gone, and rejoins
        wait_until(
            lambda: [w for w in client.get("/v1/workers")["workers"] if w["name"] == "frozen"],
            timeout=20,
            what="registered again",
        )
    assert frozen.stop() == 0, frozen.output()
    assert "lease" in frozen.output()


def test_a_worker_that_cannot_reach_a_running_server_stops_its_tasks_in_time(
    make_server: Callable[..., ServerProcess], tmp_path: Path, reap_family: None
) -> None:
    """The server frozen (SIGSTOP): connections open, nothing answers, and once thawed it
    counts the worker lost. The worker's own lease had stopped the task before that."""
    server = make_server("--heartbeat-timeout", str(TIMEOUT_S))
    cut_off = worker(server, tmp_path, "cut-off")
    assert server.proc is not None
    with server.client() as client:
        task_id = submit(client, family_command(tmp_path))
        pids = wait_until(lambda: family(tmp_path), what="the family started")
    server.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: not [p for p in pids if alive(p)], timeout=15, what="tasks stopped")
    finally:
        server.proc.send_signal(signal.SIGCONT)
    with server.client() as client:
        task = wait_until(task_is(client, task_id, "succeeded"), timeout=30, what="attempt 2")
    assert task["attempt"] == 2
    assert (tmp_path / "overlap").read_text() == ""
    assert cut_off.stop() == 0, cut_off.output()


def test_a_server_that_is_down_for_longer_than_the_lease_keeps_the_tasks_running(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A refused connection means no server runs there, and a server's start renews every
    lease: the worker keeps its tasks through a long outage and reports them after it."""
    server = make_server("--heartbeat-timeout", str(TIMEOUT_S))
    patient = worker(server, tmp_path, "patient")
    release = tmp_path / "release"
    with server.client() as client:
        task_id = submit(client, f"while [ ! -e {release} ]; do sleep 0.05; done; echo done")
        wait_until(task_is(client, task_id, "running"), what="running")
    server.kill()
    threading.Event().wait(2 * TIMEOUT_S)  # down for twice the lease
    release.touch()
    server.start()
    with server.client() as client:
        task = wait_until(task_is(client, task_id, "succeeded"), timeout=30, what="reported")
    assert (task["attempt"], task["output_tail"]) == (1, "done\n")
    assert patient.stop() == 0, patient.output()


def test_a_worker_registered_again_after_a_loss_keeps_its_new_registration(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server("--heartbeat-timeout", str(TIMEOUT_S))
    sleeper = worker(server, tmp_path, "sleeper")

    def registrations() -> list[dict[str, Any]]:
        with server.client() as client:
            found: list[dict[str, Any]] = client.get("/v1/workers", all=1)["workers"]
        return [w for w in found if w["name"] == "sleeper"]

    wait_until(registrations, what="registered")
    sleeper.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: registrations()[0]["state"] == "lost", timeout=15, what="lost")
    finally:
        sleeper.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: len(registrations()) == 2, timeout=15, what="registered again")
    # Two timeouts: a new registration heartbeating too slowly would be lost again by then.
    deadline_passed = threading.Event()
    threading.Timer(2 * TIMEOUT_S, deadline_passed.set).start()
    wait_until(
        lambda: deadline_passed.is_set() or registrations()[-1]["state"] != "alive",
        timeout=4 * TIMEOUT_S,
        what="two timeouts",
    )
    assert [w["state"] for w in registrations()] == ["lost", "alive"], sleeper.output()
    assert sleeper.stop() == 0, sleeper.output()


def test_kill_9_of_up_takes_its_worker_and_tasks_along(
    tmp_path: Path, isolated_env: dict[str, str], reap_family: None
) -> None:
    port = free_port()
    db = tmp_path / "up.db"
    args = ["up", "--port", str(port), "--db", str(db), "--heartbeat-timeout", str(TIMEOUT_S)]
    up = start(tmp_path, "up", args, isolated_env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _healthy(url), timeout=20, what="kickoff up to answer")
        token = Path(f"{db}.token").read_text().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            found = wait_until(lambda: http.get("/v1/workers").json()["workers"], timeout=20)
            worker_pid = int(found[0]["name"].rsplit("-", 1)[1])
            command = family_command(tmp_path)
            http.post("/v1/tasks", json={"command": command}).raise_for_status()
            pids = wait_until(lambda: family(tmp_path), what="the family started")
        up.kill()
        wait_until(lambda: not alive(worker_pid), what="the worker gone with up")
        wait_until(lambda: not [p for p in pids if alive(p)], what="the family killed")
    finally:
        if up.proc.poll() is None:
            up.kill()
        for pid in [p for p in [locals().get("worker_pid")] if isinstance(p, int)]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
