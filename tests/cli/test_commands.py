"""Each client command in-process against a real server: output, --json shapes, exit codes.

Captured output is not a terminal, so these check the plain (piped) form.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cli.conftest import Cli, Result
from tests.conftest import ServerProcess

TASK_FIELDS = {
    "id",
    "state",
    "command",
    "require",
    "want",
    "priority",
    "attempt",
    "max_attempts",
    "worker",
    "exit_code",
    "submitted_at",
    "started_at",
    "finished_at",
}
WORKER_FIELDS = {"id", "name", "tags", "slots", "running", "last_seen", "state"}
EVENT_FIELDS = {"seq", "ts", "type", "task_id", "worker_id", "data"}
STATES = ["pending", "running", "cancelling", "succeeded", "failed", "cancelled"]


def as_json(result: Result) -> Any:
    assert result.code == 0, result
    return json.loads(result.out)


def new(ko: Cli, *args: str) -> int:
    result = ko("new", *args)
    assert result.code == 0, result
    return int(result.out)


def test_new_prints_only_the_id(ko: Cli) -> None:
    first = ko("new", "echo", "hi", "-require", "cpu", "-want", "gpu")
    second = ko("new", "--", "ls", "-la")
    assert (first.code, second.code) == (0, 0)
    assert first.out == "1\n" and second.out == "2\n"
    assert first.err == second.err == ""


def test_new_sends_what_was_asked(ko: Cli) -> None:
    task_id = new(
        ko,
        "-require",
        "cpu,gpu;big",
        "-want",
        "fast",
        "ssd",
        "-priority",
        "-5",
        "-max-attempts",
        "7",
        "-timeout",
        "2.5",
        "-idempotency-key",
        "k1",
        "--",
        "./train.sh",
        "--lr",
        "0.1",
    )
    task = as_json(ko("info", str(task_id), "--json"))
    assert set(task) >= TASK_FIELDS
    assert task["command"] == "./train.sh --lr 0.1"
    assert task["require"] == ["big", "cpu", "gpu"]
    assert task["want"] == ["fast", "ssd"]
    assert (task["priority"], task["max_attempts"], task["timeout_s"]) == (-5, 7, 2.5)
    assert task["idempotency_key"] == "k1"
    assert task["state"] == "pending" and task["worker"] is None
    assert [e["type"] for e in task["events"]] == ["TaskSubmitted"]
    assert set(task["events"][0]) >= EVENT_FIELDS


@pytest.mark.parametrize(
    "args",
    [
        ["--require", "cpu", "gpu", "--", "echo", "x"],
        ["-require", "cpu", "gpu", "--", "echo", "x"],
        ["echo", "x", "--require", "cpu", "gpu"],
        ["echo", "x", "-require", "cpu", "gpu"],
        ["echo", "x", "--require=cpu", "gpu"],
        ["--require", "cpu", "--require", "gpu", "--", "echo", "x"],
    ],
)
def test_words_after_a_tag_option_are_tags(ko: Cli, args: list[str]) -> None:
    task = as_json(ko("info", str(new(ko, *args)), "--json"))
    assert (task["command"], task["require"]) == ("echo x", ["cpu", "gpu"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["echo", "hi", "--requre", "cpu"], "unknown option --requre; if it belongs to the"),
        (["echo", "-n", "hi"], "unknown option -n"),
        (["ls", "-l"], "unknown option -l"),
        (["df", "-h"], "-h after the command"),
        (["--require", "cpu", "make"], "no command given: cpu make are all tags"),
    ],
)
def test_new_refuses_rather_than_run_something_else(ko: Cli, args: list[str], message: str) -> None:
    result = ko("new", *args)
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith("error: ") and message in result.err
    assert "put the command after --" in result.err or "all tags" in result.err
    assert as_json(ko("status", "--all", "--json"))["tasks"] == []  # nothing submitted


def test_new_with_an_idempotency_key_twice_makes_one_task(ko: Cli) -> None:
    assert new(ko, "-idempotency-key", "abc", "--", "true") == new(
        ko, "-idempotency-key", "abc", "--", "true"
    )


def test_new_with_a_known_idempotency_key_and_another_command_is_refused(
    ko: Cli, server: ServerProcess
) -> None:
    first = new(ko, "-idempotency-key", "abc", "--", "make", "test")
    for _ in range(2):  # the second time after a restart, with the key read from the database
        result = ko("new", "-idempotency-key", "abc", "--", "make", "clean")
        assert (result.code, result.out) == (1, "")
        assert f"idempotency key 'abc' already names task {first}" in result.err
        assert new(ko, "-idempotency-key", "abc", "--", "make", "test") == first
        server.restart()


def test_new_json_prints_a_list(ko: Cli) -> None:
    assert as_json(ko("new", "--json", "--", "true")) == [1]


def test_new_from_a_file(ko: Cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "jobs.txt"
    path.write_text(
        "# a comment\necho one\n\n   echo two  \n  # indented comment\necho 'three; four'\n"
    )
    result = ko("new", "-from", str(path), "-require", "cpu")
    assert result.out == "1\n2\n3\n"
    page = as_json(ko("status", "--json"))
    assert [t["command"] for t in page["tasks"]] == ["echo one", "echo two", "echo 'three; four'"]
    assert all(t["require"] == ["cpu"] for t in page["tasks"])


def test_new_from_stdin_with_json_and_keys(ko: Cli) -> None:
    lines = "echo a\necho b\n"
    assert as_json(
        ko("new", "--from", "-", "--json", "--idempotency-key", "run7", stdin=lines)
    ) == [1, 2]
    # the same input with the same key again: no new tasks (keys are KEY:LINE)
    assert as_json(
        ko("new", "--from", "-", "--json", "--idempotency-key", "run7", stdin=lines)
    ) == [1, 2]


def test_status_lists_live_tasks_with_counts(ko: Cli) -> None:
    for i in range(3):
        new(ko, "echo", str(i))
    ko("cancel", "2")
    result = ko("status")
    lines = result.out.splitlines()
    assert lines[0].split("\t")[:3] == ["ID", "STATE", "PRI"]
    assert [line.split("\t")[0] for line in lines[1:]] == ["1", "3"]
    assert lines[1].split("\t")[-1] == "echo 0"
    assert "2 pending · 1 cancelled" in result.err  # counts go to stderr when piped

    page = as_json(ko("status", "--json"))
    assert set(page) >= {"tasks", "counts", "next_after"}
    assert {state: n for state, n in page["counts"].items() if n} == {"pending": 2, "cancelled": 1}
    assert all(set(t) >= TASK_FIELDS for t in page["tasks"])


def test_status_filters_and_pages(ko: Cli) -> None:
    for i in range(5):
        new(ko, "echo", str(i))
    ko("cancel", "1", "4")
    assert [t["id"] for t in as_json(ko("status", "-state", "cancelled", "--json"))["tasks"]] == [
        1,
        4,
    ]
    assert [t["id"] for t in as_json(ko("list", "-all", "--json"))["tasks"]] == [1, 2, 3, 4, 5]
    both = as_json(ko("status", "--state", "pending,cancelled", "--limit", "2", "--json"))
    assert [t["id"] for t in both["tasks"]] == [1, 2] and both["next_after"] == 2
    rest = as_json(ko("status", "--all", "--limit", "2", "--after", "2", "--json"))
    assert [t["id"] for t in rest["tasks"]] == [3, 4]
    plain = ko("status", "--all", "--limit", "2")
    assert "more: add --after 2" in plain.err
    assert "EXIT" in plain.out.splitlines()[0]


def test_status_with_nothing_to_show(ko: Cli) -> None:
    result = ko("status")
    assert (result.code, result.out) == (0, "")
    assert "no tasks" in result.err


def test_info_plain(ko: Cli) -> None:
    task_id = new(ko, "echo", "hello", "-require", "cpu")
    result = ko("info", str(task_id))
    assert result.code == 0
    assert result.out.startswith(f"task {task_id}\n")
    assert "state:" in result.out and "pending" in result.out
    assert "command:" in result.out and "echo hello" in result.out
    assert "TaskSubmitted" in result.out


def test_not_found_exits_4(ko: Cli) -> None:
    for args in (
        ["info", "99"],
        ["wait", "99"],
        ["cancel", "99"],
        ["tags", "nobody", "--add", "x"],
    ):
        result = ko(*args)
        assert result.code == 4, (args, result)
        assert result.err.startswith("error: ")
        assert "99" in result.err or "nobody" in result.err


def test_cancel(ko: Cli) -> None:
    first, second = new(ko, "sleep", "1"), new(ko, "sleep", "2")
    result = ko("cancel", str(first))
    assert (result.code, result.out) == (0, f"{first} cancelled\n")
    again = ko("cancel", str(first), str(second), "--json")
    assert again.code == 1  # one of them had already finished
    results = json.loads(again.out)
    assert results[0]["id"] == first and results[0]["error"]["code"] == "illegal_transition"
    assert results[1] == {"id": second, "state": "cancelled"}


def test_wait_on_cancelled_tasks_exits_1(ko: Cli) -> None:
    task_id = new(ko, "true")
    ko("cancel", str(task_id))
    result = ko("wait", str(task_id))
    assert result.code == 1
    assert f"task {task_id} cancelled" in result.err
    tasks = json.loads(ko("wait", str(task_id), "--json").out)
    assert tasks[0]["id"] == task_id and tasks[0]["state"] == "cancelled"


def test_wait_timeout_exits_1(ko: Cli) -> None:
    task_id = new(ko, "true")
    result = ko("wait", str(task_id), "--timeout", "0.2")
    assert result.code == 1
    assert "timed out after 0.2s" in result.err and "1 pending" in result.err
    assert result.err.startswith("error: ") and result.err.count("\n") == 1


def test_stats(ko: Cli) -> None:
    new(ko, "true")
    data = as_json(ko("stats", "--json"))
    assert {state: data[state] for state in STATES} == dict.fromkeys(STATES, 0) | {"pending": 1}
    assert {"alive", "busy", "slots"} <= set(data["workers"])
    plain = ko("stats")
    assert plain.code == 0 and "1 pending" in plain.out and "workers:" in plain.out


def test_workers_and_tags(ko: Cli, server: ServerProcess) -> None:
    assert as_json(ko("workers", "--json")) == []
    with server.client() as client:
        worker_id = client.post("/v1/workers", {"name": "box1", "tags": ["cpu"], "slots": 2})[
            "worker_id"
        ]
    workers = as_json(ko("workers", "--json"))
    assert len(workers) == 1 and set(workers[0]) >= WORKER_FIELDS
    assert (workers[0]["name"], workers[0]["tags"], workers[0]["slots"]) == ("box1", ["cpu"], 2)
    plain = ko("workers")
    assert plain.out.splitlines()[1].split("\t")[:4] == ["box1", "alive", "0/2", "cpu"]

    assert ko("tags", "box1", "-add", "gpu", "big", "-remove", "cpu").out == "big gpu\n"
    assert as_json(ko("tags", worker_id, "--json")) == {
        "worker_id": worker_id,
        "tags": ["big", "gpu"],
    }
    assert ko("tags", "box1", "--set", "a;b").out == "a b\n"
    assert ko("tags", "box1", "--set", "").out == "\n"


def test_a_wrong_token_exits_5(cli: Cli, server: ServerProcess) -> None:
    for args in (["status"], ["new", "true"], ["info", "1"], ["stats"]):
        result = cli(*args, "--server", server.address, "--token", "wrong")
        assert result.code == 5, result
        assert result.err.startswith("error: ") and "wrong" not in result.err.replace(
            "wrong token", ""
        )


@pytest.mark.usefixtures("terminal")
def test_on_a_terminal_tables_are_aligned_with_ages(ko: Cli) -> None:
    new(ko, "echo", "hi", "-require", "cpu")
    new(ko, "sleep", "5")
    result = ko("status")
    assert "\t" not in result.out
    assert result.err == ""  # counts are part of the screen, on stdout
    assert "2 pending" in result.out
    header = next(line for line in result.out.splitlines() if "STATE" in line)
    assert header.split()[:4] == ["ID", "STATE", "PRI", "AGE"]
    rows = [line for line in result.out.splitlines() if "echo hi" in line or "sleep 5" in line]
    assert len(rows) == 2 and all("ago" in row or "just now" in row for row in rows)
    assert rows[0].index("pending") == rows[1].index("pending")  # aligned

    info = ko("info", "1")
    assert "submitted" in info.out
    assert "ago)" in info.out or "just now)" in info.out


def test_cancelling_a_finished_task_names_it_once_with_its_state(ko: Cli) -> None:
    task_id = new(ko, "true")
    assert ko("cancel", str(task_id)).code == 0
    again = ko("cancel", str(task_id))
    assert (again.code, again.out) == (1, "")
    assert again.err == f"error: task {task_id} has already finished (cancelled)\n"
    missing = ko("cancel", "99")
    assert (missing.code, missing.err) == (4, "error: no task 99\n")


def test_tags_of_a_stopped_worker_say_it_is_stopped(ko: Cli, server: ServerProcess) -> None:
    with server.client() as client:
        worker_id = client.post("/v1/workers", {"name": "cpu1", "tags": ["cpu"], "slots": 1})[
            "worker_id"
        ]
        client.request("DELETE", f"/v1/workers/{worker_id}")
    assert ko("tags", "cpu1").out == "cpu\n"  # still readable
    for key in ("cpu1", worker_id):
        result = ko("tags", key, "--add", "x")
        assert (result.code, result.out) == (1, ""), result
        assert result.err.startswith(f"error: worker cpu1 ({worker_id}) is stopped: ")
    assert ko("tags", "nobody", "--add", "x").code == 4


def test_stats_rate_is_over_the_time_the_log_covers(ko: Cli) -> None:
    ids = [new(ko, "true") for _ in range(5)]
    assert ko("cancel", *map(str, ids)).code == 0  # five tasks finished just now
    data = as_json(ko("stats", "--json"))
    throughput = data["throughput"]
    assert throughput["finished_last_minute"] == 5
    assert 1 <= throughput["window_s"] < 60  # the server started seconds ago
    assert throughput["per_second"] == round(5 / throughput["window_s"], 3)
    shown = ko("stats").out
    assert f"5 finished in the last {throughput['window_s']:.0f}s, since the log began" in shown


@pytest.mark.parametrize("columns", [160, 60])
def test_status_on_a_terminal_cuts_the_command_never_the_other_columns(
    ko: Cli, monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    from kickoff.cli import _terminal

    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(_terminal.out, "terminal", True)
    monkeypatch.setattr(_terminal.out, "columns", columns)
    new(ko, "-require", "cpu", "-want", "gpu", "--", "sh", "-c", "x" * 300)
    new(ko, "echo", "hi")
    lines = ko("status").out.splitlines()
    header = next(line for line in lines if line.startswith("ID"))
    assert header.split() == ["ID", "STATE", "PRI", "AGE", "WORKER", "REQUIRE", "WANT", "COMMAND"]
    rows = lines[lines.index(header) + 2 :]
    assert len(rows) == 2 and set(lines[lines.index(header) + 1]) == {"─"}
    assert rows[0].split()[:7] == ["1", "pending", "0", "just", "now", "-", "cpu"]
    assert rows[0].endswith("x…") and rows[1].endswith("echo hi")
    assert rows[0].index("cpu") == header.index("REQUIRE")
    assert len({row.index("pending") for row in rows} | {header.index("STATE")}) == 1
    if columns == 160:
        assert max(len(line) for line in lines) == 160  # the command fills the rest
    else:  # narrower than the fixed columns: the command keeps a few cells
        assert rows[0].split()[-2:] == ["-c", "xxxxx…"]


def test_a_refused_batch_prints_the_ids_of_those_before_it(
    ko: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`new --from` goes through Client.submit_batches; what it queued before is said."""
    from kickoff import client

    monkeypatch.setattr(client, "MAX_BATCH", 2)
    lines = "true\ntrue\n" + "x" * (65 * 1024) + "\n"  # the second batch's command is too long
    shown = ko("new", "--from", "-", stdin=lines)
    assert shown.code == 2
    assert len(shown.out.split()) == 2
    assert "2 tasks submitted before this; their ids are above" in shown.err
