"""Hostile data never acts on the operator's terminal: no raw control character, no markup.

A submitted command, a task's output and a worker's name come from whoever submitted the
task or runs the worker. Each command that shows them is run, on a terminal and piped,
against a real server holding such data; `--json` stays exact.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from kickoff.cli import _terminal, _view_log, _view_tasks, _view_workers
from tests.cli.conftest import Cli
from tests.conftest import ServerProcess

TITLE = "\x1b]0;pwned\x07"  # OSC: retitle the window (or, with 52, write the clipboard)
CLEAR = "\x1b[2J"  # CSI: clear the screen
C1_CSI = "\x9b31m"  # CSI as one C1 character
MARKUP = "[bold]x[/bold] [link=http://evil.example]y[/link]"
COMMAND = f"echo {MARKUP} {TITLE}{CLEAR}{C1_CSI}\x7f\x08end"
TAIL = f"line 1\r\n\tline 2 {TITLE}{CLEAR}\n{C1_CSI}\rline 3 {MARKUP}\n"
NAME = "[red]box[/red]"  # the server refuses control characters in names, not brackets

SGR = re.compile(r"\x1b\[[0-9;]*m")  # kickoff's own colors, the only escape allowed out
ACTING = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but \t and \n, DEL, C1


def assert_inert(shown: str) -> None:
    """Nothing in `shown` but kickoff's colors acts on a terminal, and markup stayed text."""
    left = ACTING.findall(SGR.sub("", shown))
    assert not left, f"raw control characters {left!r} in:\n{shown!r}"


def drive(server: ServerProcess) -> tuple[int, str]:
    """A task with a hostile command, run by a worker with a bracketed name, whose output
    tail is hostile too."""
    with server.client() as api:
        worker = api.post("/v1/workers", {"name": NAME, "tags": [], "slots": 1})["worker_id"]
        (task,) = api.post("/v1/tasks", {"command": COMMAND})["ids"]
        (claim,) = api.post(f"/v1/workers/{worker}/claim", {"max_tasks": 1, "wait_s": 0})["tasks"]
        api.post(
            f"/v1/tasks/{task}/complete",
            {"worker_id": worker, "attempt": claim["attempt"], "exit_code": 3, "output_tail": TAIL},
        )
    return task, worker


@pytest.fixture(params=["terminal", "piped"])
def where(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "terminal":
        from kickoff.cli import _terminal

        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setenv("TERM", "xterm-256color")  # colors on
        for stream in (_terminal.out, _terminal.err):
            monkeypatch.setattr(stream, "terminal", True)
            monkeypatch.setattr(stream, "columns", 250)  # wide enough that nothing is cut
    return str(request.param)


def run_ok(ko: Cli, *args: str) -> str:
    result = ko(*args)
    assert result.code == 0, result
    assert_inert(result.out)
    assert_inert(result.err)
    return result.out


def test_status(ko: Cli, server: ServerProcess, where: str) -> None:
    drive(server)
    shown = run_ok(ko, "status", "--all")
    assert f"echo {MARKUP} \\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\x7f\\x08end" in shown
    assert NAME in shown


def test_info(ko: Cli, server: ServerProcess, where: str) -> None:
    task, _ = drive(server)
    shown = run_ok(ko, "info", str(task))
    assert f"echo {MARKUP} \\x1b]0;pwned\\x07\\x1b[2J" in shown
    assert NAME in shown
    # the output tail keeps its lines and tabs; CRLF is a newline, a lone CR is shown
    assert "line 1\n\tline 2 \\x1b]0;pwned\\x07\\x1b[2J\n\\x9b31m\\rline 3 " + MARKUP in shown


def test_history(ko: Cli, server: ServerProcess, where: str) -> None:
    task, _ = drive(server)
    shown = run_ok(ko, "history", str(task))
    assert f"echo {MARKUP} \\x1b]0;pwned\\x07" in shown
    assert "\\x9b31m\\rline 3 " + MARKUP in shown


def test_events(ko: Cli, server: ServerProcess, where: str) -> None:
    drive(server)
    shown = run_ok(ko, "events")
    assert f"command=echo {MARKUP} \\x1b]0;pwned\\x07" in shown
    assert f"name={NAME}" in shown


def test_workers(ko: Cli, server: ServerProcess, where: str) -> None:
    drive(server)
    shown = run_ok(ko, "workers", "--all")
    assert NAME in shown


def test_replay(cli: Cli, server: ServerProcess, where: str) -> None:
    task, _ = drive(server)
    db = str(server.db_path)
    shown = run_ok(cli, "replay", "--db", db, "--task", str(task))
    assert f"echo {MARKUP} \\x1b]0;pwned\\x07" in shown
    assert "\\x9b31m\\rline 3 " + MARKUP in shown
    running = run_ok(cli, "replay", "--db", db, "--until", "4")  # claimed, not yet completed
    assert f"echo {MARKUP} \\x1b]0;pwned" in running and NAME in running


def test_json_stays_exact(ko: Cli, server: ServerProcess) -> None:
    task, worker = drive(server)
    info = json.loads(run_json(ko, "info", str(task), "--json"))
    assert (info["command"], info["output_tail"], info["worker_name"]) == (COMMAND, TAIL, NAME)
    events = [json.loads(line) for line in run_json(ko, "events", "--json").splitlines()]
    [submitted] = [e for e in events if e["type"] == "TaskSubmitted"]
    assert submitted["data"]["command"] == COMMAND
    history = json.loads(run_json(ko, "history", str(task), "--json"))
    assert history[-1]["data"]["output_tail"] == TAIL
    [found] = json.loads(run_json(ko, "workers", "--all", "--json"))
    assert (found["id"], found["name"]) == (worker, NAME)


def run_json(ko: Cli, *args: str) -> str:
    result = ko(*args)
    assert result.code == 0, result
    assert "\x1b" not in result.out  # JSON escapes C0 characters itself
    return result.out


# -- what the server refuses today but an older database (or replay) may still hold --------

EVIL = f"box{TITLE}{C1_CSI}"


def worker(**fields: Any) -> dict[str, Any]:
    return {
        "id": "w1",
        "name": EVIL,
        "host": EVIL,
        "tags": ["cpu"],
        "slots": 2,
        "running": 1,
        "state": "alive",
        "last_seen": "2026-01-01T00:00:00Z",
        **fields,
    }


def task(**fields: Any) -> dict[str, Any]:
    return {
        "id": 7,
        "state": "failed",
        "command": COMMAND,
        "require": [],
        "want": [],
        "priority": 0,
        "attempt": 1,
        "max_attempts": 3,
        "worker": "w1",
        "worker_name": EVIL,
        "exit_code": None,
        "reason": f"lost {TITLE}",
        "submitted_at": "2026-01-01T00:00:00Z",
        "started_at": None,
        "finished_at": None,
        "output_tail": TAIL,
        **fields,
    }


EVENT = {
    "seq": 3,
    "ts": "2026-01-01T00:00:00Z",
    "type": "WorkerRegistered",
    "task_id": None,
    "worker_id": f"w1{CLEAR}",
    "data": {"name": EVIL, "host": EVIL},
}


@pytest.mark.parametrize(
    "show",
    [
        lambda: _view_workers.workers([worker()], everything=True),
        lambda: _view_tasks.info(task(), [EVENT]),
        lambda: _view_tasks.status({"tasks": [task()], "counts": {"failed": 1}}, ["all"]),
        lambda: _view_tasks.unfinished([task()], summary=True),
        lambda: _view_workers.tags(EVIL, {"tags": ["cpu", EVIL]}),
        lambda: _view_tasks.cancelled([{"id": 7, "state": EVIL}], {}),
        lambda: _view_log.print_event_line(EVENT),
    ],
    ids=["workers", "info", "status", "wait", "tags", "cancel", "events"],
)
def test_views_escape_names_and_ids_too(
    show: Any, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    show()
    out, err = capsys.readouterr()
    assert_inert(out)
    assert_inert(err)
    assert "\\x1b]0;pwned\\x07" in out + err


def test_one_line_and_block() -> None:
    assert _terminal.one_line("a\tb\nc\x1b[1m\x9b\x7f") == "a\\tb\\nc\\x1b[1m\\x9b\\x7f"
    assert _terminal.block("a\r\n\tb\x1b]0;t\x07\rc\n") == "a\n\tb\\x1b]0;t\\x07\\rc\n"
    assert _terminal.block("é ü 日本 ok") == "é ü 日本 ok"  # printable text is untouched
