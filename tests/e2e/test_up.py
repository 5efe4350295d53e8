"""`kickoff up`: a server and a local worker in one command, stopped by one Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import free_port, kickoff_cmd, wait_until


def test_up_runs_tasks_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    port = free_port()
    db = tmp_path / "up.db"
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen(
        [
            *kickoff_cmd(),
            "up",
            "--port",
            str(port),
            "--db",
            str(db),
            "--have",
            "cpu",
            "--slots",
            "2",
        ],
        env=isolated_env,
        stdout=log,
        stderr=log,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _healthy(url), timeout=20, what="kickoff up to answer")
        token = Path(f"{db}.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers) as http:
            wait_until(lambda: http.get("/v1/stats").json()["workers"]["alive"] == 1, timeout=20)
            ids = http.post(
                "/v1/tasks",
                json={
                    "tasks": [
                        {"command": "echo one", "require": ["cpu"]},
                        {"command": "sleep 0.5; echo two"},
                    ]
                },
            ).json()["ids"]
            wait_until(lambda: http.get("/v1/stats").json()["succeeded"] == 2, timeout=20)
            workers = http.get("/v1/workers").json()["workers"]
        assert [w["tags"] for w in workers] == [["cpu"]]
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 10
        # the worker deregistered before the server stopped
        import sqlite3

        states = sqlite3.connect(db).execute("SELECT state FROM workers").fetchall()
        assert states == [("stopped",)]
        assert len(ids) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert "Traceback" not in (tmp_path / "up.log").read_text()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_up_s_worker_runs_one_task_at_a_time_like_kickoff_worker(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """Issue 12.15: the same default as `kickoff worker` (1 slot), whatever the cores."""
    port = free_port()
    db = tmp_path / "up.db"
    with (tmp_path / "up.log").open("wb") as log:
        proc = subprocess.Popen(
            [*kickoff_cmd(), "up", "--port", str(port), "--db", str(db)],
            env=isolated_env,
            stdout=log,
            stderr=log,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _healthy(url), timeout=20, what="kickoff up to answer")
        token = Path(f"{db}.token").read_text().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            workers = wait_until(lambda: http.get("/v1/workers").json()["workers"], timeout=20)
        assert [w["slots"] for w in workers] == [1]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
