"""The part-one reliability tests again, with real `kickoff server` processes on a real
PostgreSQL (the session's throw-away cluster, tests/_postgres.py): kill -9 of the server
under load, a lost worker and its late report (409), exactly-once under 100 submitters.
(A second server on the database is a standby: tests/e2e/test_failover.py.)

The tests are the SQLite ones, imported: here `make_server` (and so `server` and
`start_worker`) gives each server a fresh database on the cluster instead of a file.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess, free_port, kickoff_cmd
from tests.e2e.test_reliability import (
    test_kill_9_of_the_server_under_load_loses_nothing_and_runs_nothing_twice,
)
from tests.e2e.test_server import test_every_task_claimed_exactly_once_under_load
from tests.e2e.test_worker import (
    test_a_killed_worker_s_task_runs_again_elsewhere_and_its_late_report_is_refused,
)

__all__ = [
    "test_a_killed_worker_s_task_runs_again_elsewhere_and_its_late_report_is_refused",
    "test_every_task_claimed_exactly_once_under_load",
    "test_kill_9_of_the_server_under_load_loses_nothing_and_runs_nothing_twice",
]


@pytest.fixture
def make_server(
    tmp_path: Path, isolated_env: dict[str, str], pg_cluster: Any
) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: make_server(*extra_args) -> a started server on a new PostgreSQL database."""
    started: list[ServerProcess] = []

    def make(*extra_args: str) -> ServerProcess:
        n = len(started)
        server = ServerProcess(
            db_path=pg_cluster.database(),
            port=free_port(),
            base_env=isolated_env,
            extra_args=list(extra_args),
            log_path=tmp_path / f"server{n}.log",
        )
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def test_the_log_of_a_live_server_verifies(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()
    with server.client() as api:
        api.post("/v1/tasks", {"tasks": [{"command": "true"}] * 50})
    verify = subprocess.run(
        [*kickoff_cmd(), "verify", "--db", str(server.db_path)],
        env=server.base_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "51 events" in verify.stdout and "all good" in verify.stdout
