"""Damaged databases, damaged for real: a byte flipped in the file, then a real `kickoff
server` (or `kickoff replay`) on it. Start-up refuses a database whose pages are broken or
whose checkpoint disagrees with the log; a worker is never handed a command that nobody
submitted; `replay` fails when the chain does not verify.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, WorkerProcess, free_port, kickoff_cmd, wait_until

LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO) ")  # the server's log
TASKS = 3000
VICTIM = 1501  # its command is `echo MARKER-001500`


def marker(task_id: int) -> str:
    return f"MARKER-{task_id - 1:06d}"


def pages_of(path: Path, table: str) -> tuple[int, list[int]]:
    """(page size, the numbers of the pages that hold `table`'s b-tree)."""
    conn = sqlite3.connect(path)
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = [r[0] for r in conn.execute("SELECT pageno FROM dbstat WHERE name = ?", (table,))]
    finally:
        conn.close()
    return size, pages


def flip(path: Path, table: str, old: bytes, new: bytes) -> None:
    """Overwrite `old` with `new` (same length) where it sits in `table`'s pages, in the
    file itself (the database must be closed, its WAL checkpointed)."""
    wal = Path(f"{path}-wal")
    assert len(old) == len(new) and (not wal.exists() or wal.stat().st_size == 0)
    size, pages = pages_of(path, table)
    data = bytearray(path.read_bytes())
    for page in pages:
        start = (page - 1) * size
        at = data.find(old, start, start + size)
        if at >= 0:
            data[at : at + len(old)] = new
            path.write_bytes(bytes(data))
            return
    raise AssertionError(f"{old!r} is not in the pages of {table}")


def flip_header_byte(path: Path, table: str) -> None:
    """Flip a bit in the cell count of a leaf page in the middle of the table's b-tree."""
    size, _ = pages_of(path, table)
    conn = sqlite3.connect(path)
    leaves = [
        r[0]
        for r in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
            (table,),
        )
    ]
    conn.close()
    page = leaves[len(leaves) // 2]
    data = bytearray(path.read_bytes())
    data[(page - 1) * size + 3] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.fixture
def written(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A real server's database with TASKS pending tasks `echo MARKER-...`, stopped."""
    server = make_server("--heartbeat-timeout", "5")
    client = server.client()
    ids = client.post(
        "/v1/tasks", {"tasks": [{"command": f"echo {marker(i)}"} for i in range(1, TASKS + 1)]}
    )["ids"]
    assert ids == list(range(1, TASKS + 1))
    client.close()
    assert server.stop() == 0
    return server


def start(server: ServerProcess) -> subprocess.CompletedProcess[str]:
    """Start a server on the database that must refuse to run; fail at once if it answers."""
    port = free_port()
    args = [*kickoff_cmd(), "server", "--port", str(port), "--db", str(server.db_path)]
    proc = subprocess.Popen(
        args, env=server.base_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def exited_or_serving() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(exited_or_serving, timeout=60, what="the server to exit or answer")
    if proc.poll() is None:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the server started on the damaged database:\n{out}{err}")
    out, err = proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not LOG_RECORD.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "listening" not in result.stdout
    return lines[0]


def test_a_flipped_byte_in_the_tasks_projection_stops_the_server(written: ServerProcess) -> None:
    """The issue's case: MARKER-001500 -> MARKER-001600 in the `tasks` row of task 1501.
    Before, the server started and a worker ran `echo MARKER-001600`."""
    flip(written.db_path, "tasks", marker(VICTIM).encode(), b"MARKER-001600")
    line = assert_refused(start(written), str(written.db_path), f"task {VICTIM}", "command")
    assert "kickoff projections rebuild" in line  # the log is fine: say how to repair


def test_passes_that_no_claim_made_stop_the_server(written: ServerProcess) -> None:
    """A pending task's count of claims that went ahead of it (which reserves workers for it
    at RESERVE_AFTER_PASSES) set in `tasks` by a bad tool: before, the server took it."""
    conn = sqlite3.connect(written.db_path, isolation_level=None)
    conn.execute("UPDATE tasks SET passes = 9 WHERE id = ?", (VICTIM,))
    conn.close()
    line = assert_refused(start(written), str(written.db_path), f"task {VICTIM}", "passes is 9")
    assert "kickoff projections rebuild" in line


def test_a_flipped_byte_in_a_log_payload_stops_the_server(written: ServerProcess) -> None:
    flip(written.db_path, "events", marker(VICTIM).encode(), b"MARKER-001600")
    assert_refused(start(written), str(written.db_path), f"task {VICTIM}")


def test_a_damaged_events_page_stops_the_server(written: ServerProcess) -> None:
    """Before, `verify` said "malformed" and the server accepted 10,000 more tasks."""
    flip_header_byte(written.db_path, "events")
    before = written.db_path.read_bytes()
    assert_refused(start(written), str(written.db_path), "damaged")
    assert written.db_path.read_bytes() == before  # reported, never repaired


def test_a_damaged_tasks_page_stops_the_server(written: ServerProcess) -> None:
    flip_header_byte(written.db_path, "tasks")
    assert_refused(start(written), str(written.db_path), "damaged")


def submitted_at(path: Path, task_id: int) -> int:
    conn = sqlite3.connect(path)
    try:
        query = "SELECT seq FROM events WHERE task_id = ? AND type = 'TaskSubmitted'"
        return int(conn.execute(query, (task_id,)).fetchone()[0])
    finally:
        conn.close()


def replay(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*kickoff_cmd(), "replay", "--db", str(server.db_path), *args],
        env=server.base_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_replay_fails_when_the_chain_does_not_verify(written: ServerProcess) -> None:
    """Before, `replay --task 1501` exited 0 and printed the altered command."""
    assert replay(written, "--task", str(VICTIM)).returncode == 0
    seq = submitted_at(written.db_path, VICTIM)
    flip(written.db_path, "events", marker(VICTIM).encode(), b"MARKER-001600")
    for args in (["--task", str(VICTIM)], ["--json"], ["--until", str(VICTIM + 10)]):
        result = replay(written, *args)
        assert result.returncode == 1, (args, result.stdout)
        assert "MARKER-001600" not in result.stdout
        assert "Traceback" not in result.stderr
        assert "does not verify" in result.stderr and f"seq {seq}" in result.stderr
    # a point before the damage still replays: the rows up to it verify
    assert replay(written, "--until", str(seq - 1)).returncode == 0


def test_a_changed_command_with_a_stale_hash_is_never_run(
    written: ServerProcess, tmp_path: Path
) -> None:
    """Both copies changed alike (so the checkpoint agrees with the log) but the hash not:
    the command reaches no worker; the task fails, saying why."""
    flip(written.db_path, "events", marker(VICTIM).encode(), b"MARKER-001600")
    flip(written.db_path, "tasks", marker(VICTIM).encode(), b"MARKER-001600")
    written.start()
    client = written.client()
    for task_id in range(1, TASKS + 1):
        if task_id != VICTIM:
            client.post(f"/v1/tasks/{task_id}/cancel", {})
    log_path = tmp_path / "worker.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*kickoff_cmd(), "worker", "--server", written.address, "--burst"],
            env=written.env,
            cwd=tmp_path,
            stdout=log,
            stderr=log,
        )
    worker = WorkerProcess(proc, log_path)
    try:
        task = wait_until(
            lambda: (t := client.get(f"/v1/tasks/{VICTIM}"))["state"] == "failed" and t,
            timeout=20,
            what="the damaged task to fail",
        )
    finally:
        worker.stop()
        client.close()
    assert "damaged" in task["reason"] and "kickoff verify" in task["reason"]
    assert task["exit_code"] is None and not task["output_tail"]
    assert "MARKER-001600" not in worker.output()
    assert "MARKER-001600" not in written.output()
    assert "damaged" in written.output()  # logged for the operator
    health = httpx.get(f"{written.url}/healthz", timeout=5)
    assert health.status_code == 200  # the rest of the queue carries on


def test_an_empty_file_stops_the_server(written: ServerProcess) -> None:
    """Before, a 0-byte file (a database emptied by accident) was silently a new one."""
    written.db_path.write_bytes(b"")
    for leftover in (Path(f"{written.db_path}-wal"), Path(f"{written.db_path}-shm")):
        leftover.unlink(missing_ok=True)
    assert_refused(start(written), str(written.db_path), "empty file (0 bytes)", "backup")
    assert written.db_path.stat().st_size == 0
