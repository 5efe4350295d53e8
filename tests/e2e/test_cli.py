"""The real `kickoff` CLI as a subprocess, with a real server and real workers."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, WorkerProcess, free_port, kickoff_cmd, wait_until

Kickoff = Callable[..., subprocess.CompletedProcess[str]]
StartWorker = Callable[..., WorkerProcess]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def data(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def submit(kickoff: Kickoff, *args: str) -> int:
    return int(ok(kickoff("new", *args)))


def state_of(kickoff: Kickoff, task_id: int) -> str:
    return str(data(kickoff("info", str(task_id), "--json"))["state"])


def test_no_arguments_prints_help_and_exits_0(kickoff: Kickoff) -> None:
    result = kickoff()
    assert result.returncode == 0
    assert "Usage: kickoff" in result.stdout and "new" in result.stdout


def test_new_wait_exits_with_the_tasks_exit_code(
    kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker()
    good = kickoff("new", "--wait", "--", "true")
    assert (good.returncode, good.stderr) == (0, "")
    assert good.stdout.strip().isdigit()

    bad = kickoff("new", "--wait", "--", "sh", "-c", "exit 3")
    assert bad.returncode == 3
    task_id = int(bad.stdout)
    assert f"error: task {task_id} failed (exit code 3)" in bad.stderr
    assert state_of(kickoff, task_id) == "failed"


def test_new_wait_on_a_cancelled_task_exits_1(
    server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker()
    with subprocess.Popen(
        [*kickoff_cmd(), "new", "--wait", "--", "sleep", "60"],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            task_id = int(proc.stdout.readline())  # printed before it starts waiting
            wait_until(lambda: state_of(kickoff, task_id) == "running", what="running")
            ok(kickoff("cancel", str(task_id)))
            assert proc.wait(timeout=30) == 1
            assert f"task {task_id} cancelled" in proc.stderr.read()
        finally:
            proc.kill()


@pytest.mark.parametrize("have", [["--have", "cpu", "solo"], ["-have", "cpu", "solo"]])
def test_worker_have_takes_tags_separated_by_spaces(
    kickoff: Kickoff, start_worker: StartWorker, have: list[str]
) -> None:
    """As `kickoff worker --help` says: `--have cpu solo` is two tags."""
    worker = start_worker(*have, "--name", "box1")
    found = wait_until(lambda: data(kickoff("workers", "--json")), what=worker.output)
    assert found[0]["tags"] == ["cpu", "solo"]
    shown = " ".join(ok(kickoff("worker", "--help")).split())
    assert "separate tags with spaces or commas" in shown


def test_wait_exits_0_iff_all_succeeded(kickoff: Kickoff, start_worker: StartWorker) -> None:
    start_worker("--slots", "2")
    good = [submit(kickoff, "--", "true") for _ in range(3)]
    bad = submit(kickoff, "--", "false")
    assert kickoff("wait", *map(str, good)).returncode == 0
    mixed = kickoff("wait", *map(str, [*good, bad]))
    assert mixed.returncode == 1
    assert f"task {bad} failed (exit code 1)" in mixed.stderr
    assert "3 succeeded · 1 failed" in mixed.stderr
    as_json = kickoff("wait", "--json", str(bad), str(good[0]))
    assert as_json.returncode == 1
    final = json.loads(as_json.stdout)
    assert [(t["id"], t["state"]) for t in final] == [(bad, "failed"), (good[0], "succeeded")]


def test_wait_on_many_tasks(kickoff: Kickoff, start_worker: StartWorker) -> None:
    start_worker("--slots", "4")
    ids = ok(kickoff("new", "--from", "-", input="true\n" * 300)).split()
    assert len(ids) == 300
    ok(kickoff("wait", *ids, "--timeout", "120"))
    assert data(kickoff("stats", "--json"))["succeeded"] == 300


def test_info_after_a_run(kickoff: Kickoff, start_worker: StartWorker) -> None:
    start_worker("--have", "cpu", "--name", "box1")
    task_id = submit(
        kickoff, "--require", "cpu", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 2"
    )
    assert kickoff("wait", str(task_id)).returncode == 1
    task = data(kickoff("info", str(task_id), "--json"))
    assert (task["state"], task["exit_code"], task["attempt"]) == ("failed", 2, 1)
    assert task["worker_name"] == "box1" and task["worker"]
    assert "to-out" in task["output_tail"]
    assert task["submitted_at"] <= task["started_at"] <= task["finished_at"]
    types = [e["type"] for e in task["events"]]
    assert types[0] == "TaskSubmitted" and "TaskClaimed" in types and "TaskCompleted" in types

    plain = ok(kickoff("info", str(task_id)))
    assert "to-out" in plain and "box1" in plain and "TaskCompleted" in plain
    assert "\x1b[" not in plain


def test_json_of_each_command(kickoff: Kickoff, start_worker: StartWorker) -> None:
    start_worker("--have", "cpu", "--name", "box1")
    wait_until(lambda: data(kickoff("workers", "--json")), what="worker registered")
    [done] = data(kickoff("new", "--json", "--wait", "--", "echo", "hi"))
    [pending] = data(kickoff("new", "--json", "--require", "tpu", "--", "true"))

    page = data(kickoff("status", "--json"))
    assert [t["id"] for t in page["tasks"]] == [pending]
    assert page["counts"]["succeeded"] == 1 and page["next_after"] is None

    [worker] = data(kickoff("workers", "--json"))
    assert {"id", "name", "tags", "slots", "running", "last_seen", "state"} <= set(worker)
    assert (worker["name"], worker["tags"], worker["state"]) == ("box1", ["cpu"], "alive")

    stats = data(kickoff("stats", "--json"))
    assert (stats["pending"], stats["succeeded"], stats["workers"]["alive"]) == (1, 1, 1)

    changed = data(kickoff("tags", "box1", "--add", "tpu", "--json"))
    assert changed == {"worker_id": worker["id"], "tags": ["cpu", "tpu"]}
    ok(kickoff("wait", str(pending), "--timeout", "30"))  # the new tag let it run

    late = kickoff("cancel", "--json", str(done))
    assert late.returncode == 1  # already finished
    assert json.loads(late.stdout) == [
        {
            "id": done,
            "error": {"code": "illegal_transition", "message": f"task {done} has already finished"},
        }
    ]
    assert data(kickoff("info", "--json", str(done)))["output_tail"] == "hi\n"


def test_exit_codes(server: ServerProcess, kickoff: Kickoff) -> None:
    assert kickoff("info", "999").returncode == 4
    assert kickoff("new").returncode == 2
    assert kickoff("status", "--limit", "many").returncode == 2
    unreachable = kickoff(
        "status", env={**server.env, "KICKOFF_SERVER": f"127.0.0.1:{free_port()}"}
    )
    assert unreachable.returncode == 3
    wrong = kickoff("status", env={**server.env, "KICKOFF_TOKEN": "not-the-token"})
    assert wrong.returncode == 5
    for result in (unreachable, wrong):
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        assert server.token not in result.stderr


def test_new_from_ten_thousand_lines(kickoff: Kickoff) -> None:
    lines = "".join(f"echo {i}\n" for i in range(10_000))
    out = ok(kickoff("new", "--from", "-", "--require", "cpu", input="# header\n\n" + lines))
    ids = [int(line) for line in out.split()]
    assert ids == list(range(1, 10_001))
    page = data(kickoff("status", "--json", "--limit", "10000"))
    assert page["counts"]["pending"] == 10_000
    assert len(page["tasks"]) == 10_000 and page["next_after"] is None
    assert page["tasks"][-1]["command"] == "echo 9999"
    first = data(kickoff("status", "--json", "--limit", "3", "--after", "5000"))
    assert [t["id"] for t in first["tasks"]] == [5001, 5002, 5003] and first["next_after"] == 5003
    as_list = data(kickoff("new", "--from", "-", "--json", input="true\ntrue\n"))
    assert as_list == [10_001, 10_002]


@pytest.mark.parametrize(
    "command", [["status"], ["status", "--all"], ["workers"], ["stats"], ["info", "1"]]
)
def test_piped_output_is_plain(kickoff: Kickoff, command: list[str]) -> None:
    submit(kickoff, "--", "true")
    out = ok(kickoff(*command))
    assert "\x1b[" not in out and "─" not in out and "│" not in out


def test_a_tasks_escape_sequences_never_reach_the_operator(
    kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker()
    script = r"printf '\033]0;pwned\007\033[2J[bold]done[/bold]\n'"
    task_id = submit(kickoff, "--wait", "--", "sh", "-c", script)
    for command in (["info", str(task_id)], ["history", str(task_id)], ["status", "--all"]):
        shown = ok(kickoff(*command))
        assert "\x1b" not in shown and "\x07" not in shown, (command, shown)
    assert "\\x1b]0;pwned\\x07\\x1b[2J[bold]done[/bold]" in ok(kickoff("info", str(task_id)))
    task = data(kickoff("info", str(task_id), "--json"))
    assert task["output_tail"] == "\x1b]0;pwned\x07\x1b[2J[bold]done[/bold]\n"  # exact


def test_token_honours_kickoff_server(server: ServerProcess, kickoff: Kickoff) -> None:
    """`curl -H "Authorization: Bearer $(kickoff token)"` against $KICKOFF_SERVER."""
    env = {k: v for k, v in server.env.items() if k != "KICKOFF_TOKEN"}
    shown = ok(kickoff("token", env=env)).strip()
    assert shown == server.token
    answer = httpx.get(f"{server.url}/v1/stats", headers={"Authorization": f"Bearer {shown}"})
    assert answer.status_code == 200
    # with no server named, the local database's token, as before
    alone = {k: v for k, v in env.items() if k != "KICKOFF_SERVER"}
    assert ok(kickoff("token", "--db", str(server.db_path), env=alone)).strip() == server.token


def test_wait_says_a_task_timed_out(kickoff: Kickoff, start_worker: StartWorker) -> None:
    start_worker()
    task_id = submit(kickoff, "--timeout", "0.5", "--", "sleep", "30")
    waited = kickoff("wait", str(task_id))
    assert waited.returncode == 1
    assert f"error: task {task_id} timed out after 0.5s (killed)" in waited.stderr
    assert "exit code" not in waited.stderr


def _readme_line(starting: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = [line for line in text.splitlines() if line.startswith(starting)]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.skipif(shutil.which("jq") is None, reason="the README's example pipes into jq")
def test_the_readmes_failure_alert_fires_for_a_non_zero_exit(
    server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    """The README's line, word for word (only `kickoff` is this checkout's)."""
    example = _readme_line("kickoff events --follow --type failed --json | jq")
    command = example.replace("kickoff ", shlex.join(kickoff_cmd()) + " ", 1)
    start_worker()
    with subprocess.Popen(
        ["bash", "-c", command],
        env=server.env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as follow:
        lines: queue.Queue[str] = queue.Queue()
        assert follow.stdout is not None
        threading.Thread(target=lambda: [lines.put(x) for x in follow.stdout], daemon=True).start()
        try:
            bad: list[int] = []
            first = None
            for _ in range(60):  # until the follower is streaming (it starts at the log's end)
                bad.append(int(ok(kickoff("new", "--", "sh", "-c", "exit 3"))))
                with contextlib.suppress(queue.Empty):
                    first = json.loads(lines.get(timeout=0.5))
                    break
            assert first is not None and first["task_id"] in bad and first["exit_code"] == 3
            ok(kickoff("new", "--wait", "--", "true"))  # succeeded: never shown
            timed = submit(kickoff, "--timeout", "0.3", "--", "sleep", "30")
            while (shown := json.loads(lines.get(timeout=30)))["task_id"] in bad:
                pass
            assert shown["task_id"] == timed  # the timeout, and nothing in between
        finally:
            os.killpg(follow.pid, signal.SIGTERM)


def test_events_type_refuses_an_unknown_name_listing_the_known(kickoff: Kickoff) -> None:
    result = kickoff("events", "--type", "failure")
    assert result.returncode == 2
    assert "unknown event type 'failure'; one of: ServerStarted, TaskSubmitted" in result.stderr
    assert "an outcome: failed" in result.stderr


def test_events_type_failed_lists_every_failure(
    kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker()
    good = submit(kickoff, "--wait", "--", "true")
    bad = int(kickoff("new", "--wait", "--", "sh", "-c", "exit 3").stdout)
    lines = ok(kickoff("events", "--type", "failed", "--json")).splitlines()
    assert [(e["type"], e["task_id"]) for e in map(json.loads, lines)] == [("TaskCompleted", bad)]
    shown = ok(kickoff("events", "--type", "succeeded", "--json", "--limit", "1"))
    assert json.loads(shown)["task_id"] == good


def test_piped_status_prints_its_counts_before_the_rows(
    server: ServerProcess, kickoff: Kickoff
) -> None:
    """`kickoff status > file 2>&1`: counts, header, rows, then the paging hint, in order."""
    ok(kickoff("new", "--from", "-", input="true\n" * 600))
    merged = subprocess.run(
        [*kickoff_cmd(), "status", "--limit", "500"],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert merged[0] == "600 pending"
    assert merged[1].split("\t")[:2] == ["ID", "STATE"]
    assert [int(line.split("\t")[0]) for line in merged[2:502]] == list(range(1, 501))
    assert merged[502:] == ["more: add --after 500"]
