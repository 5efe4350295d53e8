"""Workflows with a real server, real workers and the real CLI (SPEC §12): dependency
chains, groups with a running cap, arrays, retries, and a kill -9 in the middle of them."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kickoff.clock import from_text
from tests.conftest import ServerProcess, WorkerProcess, kickoff_cmd, wait_until

Kickoff = Callable[..., subprocess.CompletedProcess[str]]


def new(kickoff: Kickoff, *args: str) -> list[int]:
    done = kickoff("new", *args)
    assert done.returncode == 0, done.stderr
    return [int(line) for line in done.stdout.split()]


def task(server: ServerProcess, task_id: int) -> dict[str, Any]:
    with server.client() as api:
        found: dict[str, Any] = api.get(f"/v1/tasks/{task_id}")
        return found


def finished(server: ServerProcess, *ids: int) -> bool:
    return all(task(server, i)["state"] in ("succeeded", "failed", "cancelled") for i in ids)


def events(server: ServerProcess, **filters: Any) -> list[dict[str, Any]]:
    with server.client() as api:
        found: list[dict[str, Any]] = api.get("/v1/events", limit=10_000, **filters)["events"]
        return found


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_three_step_chain_runs_in_order(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    kickoff: Kickoff,
    tmp_path: Path,
) -> None:
    log = tmp_path / "steps"
    start_worker("--slots", "3")
    (first,) = new(kickoff, f"sleep 0.3; echo prepare >> {log}")
    (second,) = new(kickoff, "--after", str(first), "--", f"echo train >> {log}")
    (third,) = new(kickoff, "--after", str(second), "--", f"echo evaluate >> {log}")
    assert task(server, third)["state"] == "waiting"
    wait_until(lambda: finished(server, third), timeout=30, what="the chain")
    assert lines(log) == ["prepare", "train", "evaluate"]
    assert all(task(server, t)["state"] == "succeeded" for t in (first, second, third))
    seq = {(e["type"], e["task_id"]): e["seq"] for e in events(server)}
    assert seq[("TaskCompleted", first)] < seq[("TaskReleased", second)]
    assert seq[("TaskReleased", second)] < seq[("TaskClaimed", second)]
    assert seq[("TaskCompleted", second)] < seq[("TaskClaimed", third)]


def test_a_failing_middle_step_cancels_the_rest_with_reasons(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    kickoff: Kickoff,
    tmp_path: Path,
) -> None:
    start_worker("--slots", "2")
    (first,) = new(kickoff, "true")
    (middle,) = new(kickoff, "--after", str(first), "--", "exit 3")
    (third,) = new(kickoff, "--after", str(middle), "--", "echo never")
    (fourth,) = new(kickoff, "--after", str(third), "--", "echo never")
    (cleanup,) = new(kickoff, "--after-any", str(middle), "--", "echo cleanup")
    wait_until(lambda: finished(server, fourth, cleanup), timeout=30, what="the chain")
    assert task(server, middle)["state"] == "failed"
    assert (task(server, third)["state"], task(server, third)["reason"]) == (
        "cancelled",
        f"dependency {middle} failed",
    )
    assert task(server, fourth)["reason"] == f"dependency {third} was cancelled"
    assert task(server, cleanup)["state"] == "succeeded"  # after-any: any end will do
    info = kickoff("info", str(fourth))
    assert f"dependency {third} was cancelled" in info.stdout
    history = kickoff("history", str(fourth))
    assert f"cancelled: dependency {third} was cancelled" in history.stdout


def test_unknown_dependencies_are_refused_and_nothing_is_written(
    server: ServerProcess, kickoff: Kickoff
) -> None:
    refused = kickoff("new", "--after", "99", "--", "true")
    assert refused.returncode == 4
    assert refused.stderr == "error: after: no task 99 (nothing was submitted)\n"
    assert kickoff("new", "--after", "x1", "--", "true").returncode == 2
    with server.client() as api:
        assert api.get("/v1/stats")["last_seq"] == len(events(server))
        assert [e["type"] for e in events(server)] == ["ServerStarted"]


def test_status_info_and_history_show_what_a_task_waits_for(
    server: ServerProcess, kickoff: Kickoff
) -> None:
    (first,) = new(kickoff, "true")
    (second,) = new(kickoff, "--after", str(first), "--", "true")
    status = kickoff("status")
    row = next(line for line in status.stdout.splitlines() if line.startswith(f"{second}\t"))
    assert "waiting\t0\t" in row and f"after {first}" in row
    info = kickoff("info", str(second))
    assert f"after {first}" in info.stdout
    history = kickoff("history", str(second)).stdout
    assert f"after {first} succeed" in history
    (third,) = new(kickoff, "--after-any", str(first), str(second), "--", "true")
    assert f"after {first} {second} end" in kickoff("history", str(third)).stdout
    stats = json.loads(kickoff("stats", "--json").stdout)
    assert (stats["pending"], stats["waiting"]) == (1, 2)


def max_concurrency(found: list[dict[str, Any]], ids: set[int]) -> int:
    """The most tasks of `ids` running at once, from the log's claims and ends (by seq)."""
    running = peak = 0
    for event in sorted(found, key=lambda e: e["seq"]):
        if event["task_id"] not in ids:
            continue
        if event["type"] == "TaskClaimed":
            running += 1
        elif event["type"] in ("TaskCompleted", "TaskCancelled", "TaskRequeued"):
            running -= 1
        peak = max(peak, running)
    return peak


def most_at_once(spans: list[tuple[Any, Any]]) -> int:
    """The most (start, end) spans that overlap at one instant (an end before a start at
    the same instant: touching spans do not overlap)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_max_running_2_never_has_three_running(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    kickoff: Kickoff,
    tmp_path: Path,
) -> None:
    jobs, times = tmp_path / "jobs.txt", tmp_path / "times"
    # each job records when its own process started and ended (ns since the epoch)
    job = f"s=$(date +%s%N); sleep 0.3; echo $s $(date +%s%N) >> {times}\n"
    jobs.write_text(job * 8)
    start_worker("--slots", "4")
    start_worker("--slots", "4")
    ids = new(kickoff, "--from", str(jobs), "--group", "shot12", "--max-running", "2")
    (other,) = new(kickoff, "sleep 0.2")  # not in the group: it runs beside them
    done = kickoff("wait", "--group", "shot12", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "group shot12: 8 tasks: 8 succeeded" in done.stderr
    found = events(server)
    assert max_concurrency(found, set(ids)) == 2  # two at a time, never three
    spans = [(int(a), int(b)) for a, b in (line.split() for line in times.read_text().splitlines())]
    assert len(spans) == 8 and most_at_once(spans) == 2  # and so say the processes' own times
    recorded = [task(server, i) for i in ids]  # and the start and end times the log records
    logged = [(from_text(t["started_at"]), from_text(t["finished_at"])) for t in recorded]
    assert most_at_once(logged) == 2
    assert task(server, ids[0])["group"] == "shot12"
    wait_until(lambda: finished(server, other), timeout=30)
    stats = json.loads(kickoff("stats", "--group", "shot12", "--json").stdout)
    assert stats["succeeded"] == 8 and stats["group"]["max_running"] == 2
    listed = json.loads(kickoff("status", "--group", "shot12", "--all", "--json").stdout)
    assert [t["id"] for t in listed["tasks"]] == ids


def test_array_indices_and_forms(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    kickoff: Kickoff,
    tmp_path: Path,
) -> None:
    out = tmp_path / "frames"
    start_worker("--slots", "4")
    forms = {"1-4": [1, 2, 3, 4], "0-6:3": [0, 3, 6], "1,5,7": [1, 5, 7]}
    for spec, indices in forms.items():
        ids = new(
            kickoff,
            "--array",
            spec,
            "--require",
            "cpu",
            "--",
            f"echo $KICKOFF_ARRAY_INDEX >> {out}",
        )
        assert len(ids) == len(indices)
        assert [task(server, i)["array_index"] for i in ids] == indices
        assert task(server, ids[0])["group"] is not None  # every array is a group
    assert kickoff("new", "--array", "5-1", "--", "true").returncode == 2
    (capped,) = new(
        kickoff, "--array", "9", "--max-running", "1", "--", f"echo $KICKOFF_ARRAY_INDEX >> {out}"
    )
    assert task(server, capped)["require"] == []
    start_worker("--have", "cpu", "--slots", "4")
    wait_until(lambda: len(lines(out)) == 11, timeout=30, what="every frame")
    assert sorted(int(i) for i in lines(out)) == sorted([1, 2, 3, 4, 0, 3, 6, 1, 5, 7, 9])


def test_cancel_group_and_wait_group(
    server: ServerProcess, start_worker: Callable[..., WorkerProcess], kickoff: Kickoff
) -> None:
    start_worker("--slots", "2")
    ids = new(kickoff, "--array", "1-5", "--group", "long", "--", "sleep 30")
    wait_until(lambda: task(server, ids[0])["state"] == "running", timeout=20)
    cancelled = kickoff("cancel", "--group", "long")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout == "group long: 5 tasks cancelled or cancelling\n"
    waited = kickoff("wait", "--group", "long", "--json", timeout=60)
    assert waited.returncode == 1  # cancelled is not succeeded
    summary = json.loads(waited.stdout)
    assert summary["counts"]["cancelled"] == 5 and summary["live"] == 0
    assert kickoff("wait", "--group", "nope").returncode == 4
    assert kickoff("cancel", "--group", "long", "1").returncode == 2


def test_wait_group_shows_a_progress_bar_on_a_terminal(
    server: ServerProcess, start_worker: Callable[..., WorkerProcess], kickoff: Kickoff
) -> None:
    ids = new(kickoff, "--array", "1-3", "--group", "bar", "--max-running", "1", "--", "sleep 0.4")
    start_worker("--slots", "3")
    primary, secondary = pty.openpty()  # stderr is a terminal: the bar is drawn there
    env = {**server.env, "TERM": "xterm", "COLUMNS": "100"}
    waiting = subprocess.Popen(
        [*kickoff_cmd(), "wait", "--group", "bar"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    shown = b""
    while True:  # read until the other end closes (EIO on Linux once the process ended)
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    assert waiting.wait(timeout=60) == 0
    assert waiting.stdout is not None
    with waiting.stdout:
        assert waiting.stdout.read() == b""  # the bar and the summary go to stderr
    text = shown.decode("utf-8", "replace")
    assert "━" in text and "/3" in text, text  # rich's bar and its "done/total" column
    assert "\x1b[" in text  # drawn with cursor moves, then cleared (a transient bar)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "3/3" in plain and plain.rstrip().endswith("group bar: 3 tasks: 3 succeeded"), plain
    assert all(task(server, i)["state"] == "succeeded" for i in ids)


def test_retries_until_success_and_history_tells_why(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    kickoff: Kickoff,
    tmp_path: Path,
) -> None:
    tries = tmp_path / "tries"
    start_worker()
    flaky = f'echo $KICKOFF_ATTEMPT >> {tries}; [ "$KICKOFF_ATTEMPT" -ge 3 ]'
    (task_id,) = new(kickoff, "--retries", "2", "--retry-delay", "0.2", "--", flaky)
    wait_until(lambda: finished(server, task_id), timeout=30)
    found = task(server, task_id)
    assert (found["state"], found["attempt"], found["retries_left"]) == ("succeeded", 3, 0)
    assert lines(tries) == ["1", "2", "3"]
    history = kickoff("history", str(task_id)).stdout
    assert "started again: retry 1 of 2" in history and "started again: retry 2 of 2" in history
    timed = {
        (e["type"], e["data"].get("attempt") or e["data"].get("next_attempt")): e
        for e in events(server, task=task_id)
    }
    # the recorded delays: 0.2 s after the first failure, 0.4 s (doubled) after the second
    assert timed[("TaskCompleted", 1)]["data"]["retry_in_s"] == 0.2
    assert timed[("TaskCompleted", 2)]["data"]["retry_in_s"] == 0.4


def test_retry_on_limits_the_exit_codes_and_timeouts_are_retried(
    server: ServerProcess, start_worker: Callable[..., WorkerProcess], kickoff: Kickoff
) -> None:
    start_worker("--slots", "3")
    (other_code,) = new(kickoff, "--retries", "3", "--retry-on", "75", "--", "exit 4")
    (listed,) = new(kickoff, "--retries", "1", "--retry-on", "4", "75", "--", "exit 4")
    (slow,) = new(kickoff, "--retries", "1", "--timeout", "0.3", "--", "sleep 10")
    wait_until(lambda: finished(server, other_code, listed, slow), timeout=60)
    assert (task(server, other_code)["state"], task(server, other_code)["attempt"]) == ("failed", 1)
    assert (task(server, listed)["state"], task(server, listed)["attempt"]) == ("failed", 2)
    found = task(server, slow)
    assert (found["state"], found["attempt"], found["timed_out"]) == ("failed", 2, True)


def test_kill_9_while_tasks_wait_continues_everything_exactly_once(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    kickoff: Kickoff,
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    record = f"echo $KICKOFF_TASK_ID:$KICKOFF_ATTEMPT >> {runs}"
    start_worker("--slots", "3")
    (slow,) = new(kickoff, f"{record}; sleep 2")
    (after_slow,) = new(kickoff, "--after", str(slow), "--", record)
    (chained,) = new(kickoff, "--after", str(after_slow), "--", record)
    (flaky,) = new(
        kickoff,
        "--retries",
        "1",
        "--retry-delay",
        "2",
        "--",
        f'{record}; [ "$KICKOFF_ATTEMPT" = 2 ]',
    )
    frames = new(kickoff, "--array", "1-3", "--max-running", "1", "--", f"{record}; sleep 0.5")
    wait_until(
        lambda: (
            task(server, flaky)["state"] == "waiting" and task(server, slow)["state"] == "running"
        ),
        timeout=20,
        what="a delayed retry and a running dependency",
    )
    assert "pending" in {task(server, f)["state"] for f in frames}  # a group at its cap
    server.kill()
    server.start()
    everything = (slow, after_slow, chained, flaky, *frames)
    wait_until(lambda: finished(server, *everything), timeout=60, what="everything")
    assert sorted(lines(runs)) == sorted(
        [f"{slow}:1", f"{after_slow}:1", f"{chained}:1", f"{flaky}:1", f"{flaky}:2"]
        + [f"{f}:1" for f in frames]
    )
    assert all(task(server, t)["state"] == "succeeded" for t in everything)
    assert max_concurrency(events(server), set(frames)) == 1  # the cap held across the kill
    verified = kickoff("verify", "--db", str(server.db_path))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_log_of_the_first_workflows_release_continues_exactly_once(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    kickoff: Kickoff,
) -> None:
    """tests/data/v3.db stopped with work to do: train (2) running on a worker that is
    gone, evaluate (3) waiting on it, a frame (10) held back by its group's cap, a delayed
    retry (11) due long ago, an immediate retry (12) running. A server of today on it, and
    a new worker: the lost worker's tasks start again, the rest follows, each once."""
    server.stop()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{server.db_path}{suffix}").unlink(missing_ok=True)
    shutil.copy(Path(__file__).parents[1] / "data" / "v3.db", server.db_path)
    server.start()
    old_last = 41  # the log's last seq as v3.db holds it
    start_worker("--slots", "4")
    live = (2, 3, 7, 9, 10, 11, 12)
    wait_until(lambda: finished(server, *live), timeout=60, what="the old log's work")
    assert {i: task(server, i)["state"] for i in live} == dict.fromkeys(live, "succeeded")
    assert [task(server, i)["state"] for i in (4, 5, 6, 13, 14)] == ["failed", *["cancelled"] * 4]
    new_claims = Counter(
        e["task_id"] for e in events(server, after=old_last) if e["type"] == "TaskClaimed"
    )
    assert new_claims == dict.fromkeys(live, 1)  # each once: none lost, none twice
    assert task(server, 12)["attempt"] == 3  # a lost worker's attempt 2, then 3 (retry kept)
    found = [e for e in events(server) if e["type"] == "TaskRequeued" and e["task_id"] == 11]
    assert found and found[0]["seq"] > old_last  # the retry due long ago, recorded now
    verified = kickoff("verify", "--db", str(server.db_path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
