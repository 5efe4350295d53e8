"""Process handling with real `/bin/sh -c` commands: exit codes, signals, output, kills."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kickoff import defaults
from kickoff.worker.logfiles import path as log_path
from kickoff.worker.process import Assignment, Job, Outcome, exit_code, read_tail


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie (read from /proc, no psutil)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {predicate}: last={last!r}")


def make_job(tmp_path: Path, command: str, **kwargs: Any) -> Job:
    grace_s = kwargs.pop("grace_s", 5.0)
    assignment = Assignment(task_id=kwargs.pop("task_id", 7), attempt=2, command=command, **kwargs)
    return Job(assignment, worker_id="w9", log_dir=tmp_path, env=dict(os.environ), grace_s=grace_s)


def run_job(tmp_path: Path, command: str, **kwargs: Any) -> Outcome:
    return asyncio.run(make_job(tmp_path, command, **kwargs).run())


@pytest.mark.parametrize(("command", "code"), [("true", 0), ("exit 3", 3), ("false", 1)])
def test_exit_codes(tmp_path: Path, command: str, code: int) -> None:
    outcome = run_job(tmp_path, command)
    assert outcome.exit_code == code
    assert not outcome.timed_out and not outcome.cancelled
    assert outcome.duration_s >= 0


def test_killed_by_signal_reports_128_plus_n(tmp_path: Path) -> None:
    assert run_job(tmp_path, "kill -9 $$").exit_code == 128 + signal.SIGKILL
    assert run_job(tmp_path, "kill -USR1 $$").exit_code == 128 + signal.SIGUSR1


def test_exit_code_of_wait_status() -> None:
    assert exit_code(0) == 0
    assert exit_code(3 << 8) == 3
    assert exit_code(signal.SIGTERM) == 143


def test_environment_and_log_file(tmp_path: Path) -> None:
    outcome = run_job(
        tmp_path, 'echo "$KICKOFF_TASK_ID $KICKOFF_ATTEMPT $KICKOFF_WORKER"; echo err >&2'
    )
    assert outcome.output_tail == "7 2 w9\nerr\n"
    assert log_path(tmp_path, 7, 2).read_text() == "7 2 w9\nerr\n"
    assert log_path(tmp_path, 7, 2).stat().st_mode & 0o777 == 0o600


def test_stdin_is_empty(tmp_path: Path) -> None:
    assert run_job(tmp_path, "cat; echo done").output_tail == "done\n"


def test_output_tail_is_the_last_4_kib(tmp_path: Path) -> None:
    command = "i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done"
    outcome = run_job(tmp_path, command)
    full = log_path(tmp_path, 7, 2).read_bytes()
    assert len(full) > 2 * defaults.OUTPUT_TAIL_BYTES
    assert outcome.output_tail.encode() == full[-defaults.OUTPUT_TAIL_BYTES :]
    assert outcome.output_tail.endswith("line1999\n")


def test_output_tail_decodes_broken_utf8_with_replacement(tmp_path: Path) -> None:
    outcome = run_job(tmp_path, r"printf 'caf\303\251 \377\n'")
    assert outcome.output_tail == "café \ufffd\n"


def test_a_nul_byte_in_the_tail_becomes_a_replacement_character(tmp_path: Path) -> None:
    """The server refuses a tail holding NUL: the report would never be taken."""
    outcome = run_job(tmp_path, r"printf 'a\000b\n'")
    assert outcome.output_tail == "a\ufffdb\n"


def test_read_tail_of_an_empty_file(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "empty", os.O_RDWR | os.O_CREAT)
    try:
        assert read_tail(fd) == ""
    finally:
        os.close(fd)


def test_the_command_string_is_not_split_or_reinterpreted(tmp_path: Path) -> None:
    outcome = run_job(tmp_path, "printf '%s|' \"a b\" 'c;d' '$HOME'")
    assert outcome.output_tail == "a b|c;d|$HOME|"


def test_timeout_kills_and_reports_timed_out(tmp_path: Path) -> None:
    started = time.monotonic()
    outcome = run_job(tmp_path, "sleep 30", timeout_s=0.2)
    assert outcome.timed_out and not outcome.cancelled
    assert outcome.exit_code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5


def _children_of_group(pgid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(name))
    return pids


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "bg.pid"

    async def scenario() -> tuple[Outcome, int, int]:
        job = make_job(tmp_path, f"sleep 600 & echo $! > {pid_file}; sleep 600; wait")
        run = asyncio.ensure_future(job.run())
        await asyncio.to_thread(
            wait_until, lambda: pid_file.exists() and pid_file.read_text().strip()
        )
        assert job.process is not None
        leader = job.process.pid
        job.stop(cancelled=True)
        return await run, leader, int(pid_file.read_text())

    outcome, leader, background = asyncio.run(scenario())
    assert outcome.cancelled and not outcome.timed_out
    assert outcome.exit_code == 128 + signal.SIGTERM
    wait_until(lambda: not alive(background))
    assert not alive(leader)
    wait_until(lambda: _children_of_group(leader) == [])  # SIGKILLed; the kernel may lag


def test_stop_escalates_to_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    ready = tmp_path / "ready"

    async def scenario() -> tuple[Outcome, float]:
        job = make_job(tmp_path, f"trap '' TERM; touch {ready}; sleep 600", grace_s=0.3)
        run = asyncio.ensure_future(job.run())
        await asyncio.to_thread(wait_until, ready.exists)
        started = time.monotonic()
        job.stop(cancelled=True)
        outcome = await run
        return outcome, time.monotonic() - started

    outcome, took = asyncio.run(scenario())
    assert outcome.cancelled
    assert outcome.exit_code == 128 + signal.SIGKILL
    assert 0.25 <= took < 5


def test_children_ignoring_term_die_with_the_group(tmp_path: Path) -> None:
    """The leader obeys SIGTERM, a child ignores it: the SIGKILL still reaches the child."""
    pid_file = tmp_path / "bg.pid"

    async def scenario() -> Outcome:
        job = make_job(
            tmp_path,
            f"(trap '' TERM; exec sleep 600) & echo $! > {pid_file}; wait",
            grace_s=5.0,
        )
        run = asyncio.ensure_future(job.run())
        await asyncio.to_thread(
            wait_until, lambda: pid_file.exists() and pid_file.read_text().strip()
        )
        job.stop(cancelled=True)
        return await run

    outcome = asyncio.run(scenario())
    assert outcome.cancelled
    wait_until(lambda: not alive(int(pid_file.read_text())))


def test_stop_before_start_never_runs_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    job = make_job(tmp_path, f"touch {marker}")
    job.stop(cancelled=True)
    outcome = asyncio.run(job.run())
    assert outcome.cancelled and outcome.exit_code == 128 + signal.SIGTERM
    assert not marker.exists()


def test_cannot_open_log_file_reports_127(tmp_path: Path) -> None:
    outcome = run_job(tmp_path / "missing-dir", "true")
    assert outcome.exit_code == 127
    assert "cannot start" in outcome.output_tail


def test_signals_ignored_by_the_worker_are_default_in_the_task(tmp_path: Path) -> None:
    async def scenario() -> Outcome:
        previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            return await make_job(tmp_path, "kill -HUP $$; sleep 5").run()
        finally:
            signal.signal(signal.SIGHUP, previous)

    assert asyncio.run(scenario()).exit_code == 128 + signal.SIGHUP


def test_cancelling_the_run_kills_the_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    async def scenario() -> int:
        job = make_job(tmp_path, f"echo $$ > {pid_file}; sleep 600")
        run = asyncio.ensure_future(job.run())
        await asyncio.to_thread(
            wait_until, lambda: pid_file.exists() and pid_file.read_text().strip()
        )
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        return int(pid_file.read_text())

    leader = asyncio.run(scenario())
    wait_until(lambda: not _children_of_group(leader))


def test_prune_keeps_the_newest_task_logs(tmp_path: Path) -> None:
    from kickoff.worker import logfiles

    for task_id, attempt in [(1, 1), (2, 1), (2, 2), (10, 1), (3, 1)]:
        logfiles.path(tmp_path, task_id, attempt).write_text("x")
    (tmp_path / "notes.txt").write_text("mine")
    assert logfiles.prune(tmp_path, keep=2, protect={(1, 1)}) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt",
        "task-1-1.log",
        "task-10-1.log",
        "task-3-1.log",
    ]
    assert logfiles.prune(tmp_path, keep=10) == 0


def test_an_unexpected_error_while_starting_is_reported_not_raised(tmp_path: Path) -> None:
    """A bug on the way to the spawn (here: a non-string in the environment) fails the
    attempt with a report, instead of escaping into the loop and losing the slot."""
    assignment = Assignment(task_id=4, attempt=1, command="true")
    job = Job(assignment, worker_id="w9", log_dir=tmp_path, env={"BROKEN": 1})  # type: ignore[dict-item]
    job.start()  # does not raise
    outcome = asyncio.run(job.run())
    assert outcome.exit_code == 1 and "internal error" in outcome.output_tail
    assert job.process is None


def test_start_spawns_at_once_and_run_then_only_waits(tmp_path: Path) -> None:
    marker = tmp_path / "started"

    async def scenario() -> Outcome:
        job = make_job(tmp_path, f"touch {marker}")
        job.start()
        assert job.process is not None  # spawned before any await
        pid = job.process.pid
        job.start()  # once only
        assert job.process.pid == pid
        return await job.run()

    assert asyncio.run(scenario()).exit_code == 0
    assert marker.exists()
