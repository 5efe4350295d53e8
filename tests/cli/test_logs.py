"""`kickoff logs` against a real server, the output sent as a worker sends it: piped, the
bytes as written; on a terminal, control characters escaped (but newline, tab and carriage
return), unless --raw; --tail; bad words."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli
from tests.conftest import ServerProcess

OUTPUT = b"one\n\x1b]0;owned\x07two\tx\n50%\r100%\nlast\n"


@pytest.fixture
def task_id(server: ServerProcess) -> int:
    """A finished task whose worker sent OUTPUT (half while it ran, half in its report)."""
    with server.client() as api:
        task = api.submit("printf ...")
        worker = api.post("/v1/workers", {"name": "w", "tags": [], "slots": 1})["worker_id"]
        api.post(f"/v1/workers/{worker}/claim", {"max_tasks": 1, "wait_s": 0})
        half = len(OUTPUT) // 2
    import httpx

    httpx.post(
        f"{server.url}/v1/tasks/{task}/output",
        params={"attempt": 1, "offset": 0, "worker": worker},
        content=OUTPUT[:half],
        headers={"Authorization": f"Bearer {server.token}"},
    ).raise_for_status()
    with server.client() as api:
        rest = {"offset": half, "text": OUTPUT[half:].decode()}
        report = {"worker_id": worker, "attempt": 1, "exit_code": 0, "output": rest}
        api.post(f"/v1/tasks/{task}/complete", report)
    return task


def test_piped_the_bytes_are_as_written(ko: Cli, task_id: int) -> None:
    shown = ko("logs", str(task_id))
    assert (shown.code, shown.out) == (0, OUTPUT.decode())


@pytest.mark.usefixtures("terminal")
def test_on_a_terminal_control_characters_are_escaped_unless_raw(ko: Cli, task_id: int) -> None:
    shown = ko("logs", str(task_id))
    assert shown.out == "one\n\\x1b]0;owned\\x07two\tx\n50%\r100%\nlast\n"
    assert ko("logs", str(task_id), "--raw").out == OUTPUT.decode()


def test_tail_and_unknown_ids(ko: Cli, task_id: int) -> None:
    assert ko("logs", str(task_id), "--tail", "2").out == "50%\r100%\nlast\n"
    assert ko("logs", str(task_id), "--tail", "0").out == ""
    assert ko("logs", str(task_id), "--tail", "99").out == OUTPUT.decode()
    missing = ko("logs", "999")
    assert missing.code == 4 and "no task 999" in missing.err
    assert ko("logs", str(task_id), "--attempt", "0").code == 2
    assert ko("logs", "x").code == 2
