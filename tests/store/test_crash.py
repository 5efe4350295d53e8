"""kill -9 in the middle of heavy appending: every acknowledged task survives, and the
database is whole (contiguous seq, intact chain, no half-written batch)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kickoff.database import Database
from kickoff.projections.rebuild import rebuild
from kickoff.store.sqlite import SqliteRecorder
from tests.store._checks import assert_log_is_whole, assert_projections_agree_with, projections

HELPER = Path(__file__).with_name("_crash_writer.py")
ROOT = Path(__file__).parents[2]
DEADLINE_S = 60.0


def run_and_kill(db_path: Path, acks_wanted: int) -> set[int]:
    """Start the writer, wait for `acks_wanted` acks, SIGKILL it; returns the acked ids."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    acked: set[int] = set()
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + DEADLINE_S
        while len(acked) < acks_wanted and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(b"ack "):
                acked.add(int(line.split()[1]))
        os.kill(proc.pid, signal.SIGKILL)
        # Acks already in the pipe were also answered before the kill: they count too.
        rest, err = proc.communicate(timeout=10)
        acked.update(int(w.split()[1]) for w in rest.splitlines() if w.startswith(b"ack "))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")
    assert len(acked) >= acks_wanted, f"only {len(acked)} acks:\n{err.decode(errors='replace')}"
    return acked


def check_after_crash(db_path: Path, acked: set[int]) -> set[int]:
    """Reopen as a restarting server would, and check everything; returns the task ids."""
    database = Database(db_path)
    try:
        conn = database.conn
        events = assert_log_is_whole(conn)
        assert events > 0
        submitted = {
            r[0] for r in conn.execute("SELECT task_id FROM events WHERE type = 'TaskSubmitted'")
        }
        tasks = {r[0] for r in conn.execute("SELECT id FROM tasks")}
        assert acked - submitted == set(), "acknowledged tasks missing from the log"
        assert acked - tasks == set(), "acknowledged tasks missing from the tasks table"
        assert tasks == submitted
        state = database.replay()
        assert_projections_agree_with(conn, state)  # last_seq == max(seq): no partial batch
        assert database.load() == (state, 0)
        live = projections(conn)
        rebuild(conn, SqliteRecorder(conn))
        assert projections(conn) == live
        assert events == state.last_seq
        return tasks
    finally:
        database.close()


def test_acknowledged_submits_survive_kill_9(tmp_path: Path) -> None:
    db_path = tmp_path / "crash.db"
    first = run_and_kill(db_path, 2000)
    before = check_after_crash(db_path, first)
    second = run_and_kill(db_path, 1000)  # a restart appends after the recovered tail
    # New ids follow the recovered ones; old ids come back only for a known idempotency key.
    assert all(i in before or i > max(before) for i in second)
    assert len(second - before) > 500
    after = check_after_crash(db_path, first | second)
    assert before < after
