"""A database file that cannot be written while the server runs (`chattr +i` on the file
only): commits still go to the WAL, which SQLite can no longer write back, so it grows
with each of them. The server says so in its log, and again once it is written back."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from kickoff.store.connection import WAL_ALARM_BYTES
from tests.conftest import ServerProcess
from tests.store.test_faults import run_root_tool

BATCH = [{"command": "x" * 2000} for _ in range(5000)]  # ~10 MB of log per request


def submit_until(server: ServerProcess, done: Callable[[], bool], most: int) -> int:
    """Submit batches until `done()`; returns how many were sent."""
    client = server.client()
    try:
        for sent in range(1, most + 1):
            client.post("/v1/tasks", {"tasks": BATCH})
            if done():
                return sent
    finally:
        client.close()
    raise AssertionError(f"still not done after {most} batches:\n{server.output()}")


def test_an_unwritable_database_file_is_logged_while_the_wal_grows(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server()
    db, wal = server.db_path, Path(f"{server.db_path}-wal")
    run_root_tool("chattr", "+i", str(db))
    try:
        submit_until(server, lambda: "cannot write the write-ahead log back" in server.output(), 40)
        assert wal.stat().st_size >= WAL_ALARM_BYTES
        line = next(x for x in server.output().splitlines() if "write-ahead log back" in x)
        assert "ERROR" in line and str(db) in line and "lsattr" in line
        # still serving: every accepted task is durable in the WAL
        client = server.client()
        assert client.get("/v1/stats")["pending"] > 0
        client.close()
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    submit_until(server, lambda: "written back into" in server.output(), 3)
    assert server.output().count("cannot write the write-ahead log back") == 1  # not per commit
    assert server.stop() == 0
    assert "Traceback" not in server.output()
