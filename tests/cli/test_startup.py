"""The client path loads only what it uses: the commands people run in loops never import
typer, rich, httpx or orjson, and no client command loads the server's parts (store,
fold, projections, audit, worker, service, API). Seen from a real process, with
`python -X importtime` (figures: bench/cli.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ServerProcess

SERVER_PARTS = re.compile(
    r"kickoff\.(store|projections|worker|service|api|server|events|audit"
    r"|state\.(?!task_state$)\w+)(\.|$)"
)
HEAVY = re.compile(r"(typer|click|rich|httpx|orjson|starlette|uvicorn|sqlite3)(\.|$)")


def imported(server: ServerProcess, *args: str) -> list[str]:
    """The modules `kickoff ARGS...` imported, in order."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kickoff", *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode in (0, 1, 4), result.stderr[-2000:]  # 4: the worker is unknown
    return [
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]


@pytest.mark.parametrize(
    "args",
    [["--help"], ["new", "--", "true"], ["new", "-require", "cpu", "--", "true"], ["status"]],
    ids=["help", "new", "new-seed", "status"],
)
def test_the_quick_commands_import_no_framework(server: ServerProcess, args: list[str]) -> None:
    modules = imported(server, *args)
    assert "kickoff.cli" in modules
    assert [m for m in modules if HEAVY.match(m)] == []
    assert [m for m in modules if SERVER_PARTS.match(m)] == []


@pytest.mark.parametrize(
    "args",
    [
        ["info", "1"],
        ["why", "1"],
        ["cancel", "1"],
        ["wait", "1", "--timeout", "0.1"],
        ["stats"],
        ["workers"],
        ["tags", "box", "--add", "x"],
        ["history", "1"],
        ["events", "--limit", "1"],
        ["logs", "1"],
        ["new", "--help"],
    ],
)
def test_no_client_command_loads_the_server(server: ServerProcess, args: list[str]) -> None:
    """(Each may use the pure story-telling of audit/history.py and audit/timespec.py, and
    `events` the event types' names, from events/model.py.)"""
    with server.client() as api:
        api.post("/v1/tasks", {"command": "true"})
    modules = imported(server, *args)
    pure = {"kickoff.audit", "kickoff.audit.history", "kickoff.audit.timespec"}
    if args[0] == "events":
        pure |= {"kickoff.events", "kickoff.events.model"}
    assert [m for m in modules if SERVER_PARTS.match(m) and m not in pure] == []
    assert "httpx" not in modules and "sqlite3" not in modules
