"""The real `kickoff` CLI as a subprocess, with a real server and real workers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

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
