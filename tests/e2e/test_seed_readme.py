"""Every example of the original kickoff README, word for word, against real processes.

The README's placeholders (`<server ip address>`, `my_task_server`, `<server address>`,
`<command to execute>`, `<task id>`) become real values; nothing else changes. The clients
run with no KICKOFF_SERVER or KICKOFF_TOKEN: the address comes only from `-server`, and the
token from the config the server wrote for this user.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, kickoff_cmd, wait_until

# Quoted from the original README (the "Examples" section), in order.
SERVER = "kickoff server"
WORKER = "kickoff worker -have cpu gpu -server <server ip address>"
NEW = "kickoff new <command to execute> -require cpu -want gpu -server my_task_server"
STATUS = "kickoff status -server <server address>"
INFO = "kickoff info <task id> -server <server address>"
CANCEL = "kickoff cancel <task id> -server <server address>"

PLACEHOLDER = re.compile(r"<[^>]+>|my_task_server")


def words(example: str, **values: list[str]) -> list[str]:
    """The example as argv (without `kickoff`), each placeholder replaced by its words."""
    argv: list[str] = []
    for i, part in enumerate(PLACEHOLDER.split(example)):
        argv.extend(part.split())
        found = PLACEHOLDER.findall(example)
        if i < len(found):
            argv.extend(values[found[i].strip("<>").replace(" ", "_")])
    assert argv[0] == "kickoff"
    return argv[1:]


def test_words() -> None:
    argv = words(NEW, command_to_execute=["echo", "hi"], my_task_server=["h:1"])
    assert argv == ["new", "echo", "hi", "-require", "cpu", "-want", "gpu", "-server", "h:1"]


class Readme:
    """Runs README examples with a private HOME, as a user on the server's machine would."""

    def __init__(self, env: dict[str, str], address: str, tmp: Path) -> None:
        self.env = env
        self.address = address
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []

    def run(self, example: str, **values: list[str]) -> subprocess.CompletedProcess[str]:
        values = {
            "server_ip_address": [self.address],
            "server_address": [self.address],
            "my_task_server": [self.address],
            **values,
        }
        return subprocess.run(
            [*kickoff_cmd(), *words(example, **values)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self, example: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"proc{len(self.procs)}.log").open("ab")
        self.logs.append(log)
        argv = words(example, server_ip_address=[self.address])
        proc = subprocess.Popen(
            [*kickoff_cmd(), *argv],
            env=self.env,
            stdout=log,
            stderr=log,
            cwd=self.tmp,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def task(self, task_id: int) -> dict[str, Any]:
        result = subprocess.run(
            [*kickoff_cmd(), "info", str(task_id), "--json", "--server", self.address],
            env=self.env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def workers(self) -> list[dict[str, Any]]:
        result = subprocess.run(
            [*kickoff_cmd(), "workers", "--json", "--server", self.address],
            env=self.env,
            capture_output=True,
            text=True,
        )
        return list(json.loads(result.stdout)) if result.returncode == 0 else []

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


@pytest.fixture
def readme(server: ServerProcess, tmp_path: Path) -> Iterator[Readme]:
    runner = Readme(server.base_env, server.address, tmp_path)
    yield runner
    runner.stop()


def new_task(readme: Readme, *command: str) -> int:
    result = readme.run(NEW, command_to_execute=list(command))
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\d+\n", result.stdout), result.stdout  # the id alone
    return int(result.stdout)


def test_the_readme_examples(readme: Readme, tmp_path: Path) -> None:
    readme.start(WORKER)
    readme.start(WORKER.replace("-have cpu gpu", "-have gpu"))  # lacks cpu: must get nothing
    workers = wait_until(lambda: len(readme.workers()) == 2 and readme.workers(), what="2 workers")
    readme_worker = next(w for w in workers if w["tags"] == ["cpu", "gpu"])

    # a task runs, on the worker that has what it requires
    marker = tmp_path / "ran.txt"
    done = new_task(readme, "touch", str(marker))
    wait_until(lambda: readme.task(done)["state"] == "succeeded", what="task succeeded")
    assert marker.exists()
    assert readme.task(done)["worker"] == readme_worker["id"]

    # one running, one waiting (the only worker with cpu is busy)
    running = new_task(readme, "sleep", "60")
    wait_until(lambda: readme.task(running)["state"] == "running", what="task running")
    waiting = new_task(readme, "sleep", "60")
    assert readme.task(waiting)["state"] == "pending"

    status = readme.run(STATUS)
    assert status.returncode == 0, status.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in status.stdout.splitlines()[1:]}
    assert set(rows) == {str(running), str(waiting)}  # waiting or being executed, no more
    assert rows[str(running)][1] == "running" and rows[str(waiting)][1] == "pending"
    assert rows[str(running)][-1] == "sleep 60"

    info = readme.run(INFO, task_id=[str(running)])
    assert info.returncode == 0, info.stderr
    assert re.search(r"^state:\s+running$", info.stdout, re.MULTILINE)
    assert re.search(r"^command:\s+sleep 60$", info.stdout, re.MULTILINE)
    assert re.search(r"^require:\s+cpu$", info.stdout, re.MULTILINE)
    assert re.search(r"^want:\s+gpu$", info.stdout, re.MULTILINE)
    assert readme_worker["id"] in info.stdout and readme_worker["name"] in info.stdout

    cancel = readme.run(CANCEL, task_id=[str(waiting)])
    assert (cancel.returncode, cancel.stdout) == (0, f"{waiting} cancelled\n")
    cancel = readme.run(CANCEL, task_id=[str(running)])
    assert cancel.returncode == 0, cancel.stderr
    assert cancel.stdout.startswith(f"{running} cancelling")
    wait_until(lambda: readme.task(running)["state"] == "cancelled", what="running task cancelled")
    assert readme.run(STATUS).stdout == ""  # nothing waiting or running any more


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_the_readme_examples_on_the_default_port(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    """`kickoff server` with no option at all, and `-server HOST` without a port."""
    if not port_is_free(3355):
        pytest.skip("port 3355 is in use on this machine")
    readme = Readme(isolated_env, "127.0.0.1", tmp_path)
    try:
        server = readme.start(SERVER)

        def healthy() -> bool:
            assert server.poll() is None, (tmp_path / "proc0.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get("http://127.0.0.1:3355/healthz", timeout=1).status_code == 200
            return False

        wait_until(healthy, timeout=20, what="kickoff server on port 3355")
        readme.start(WORKER)
        marker = tmp_path / "ran.txt"
        result = readme.run(
            NEW, command_to_execute=["touch", str(marker)], my_task_server=["localhost"]
        )
        assert result.returncode == 0, result.stderr
        task_id = int(result.stdout)
        wait_until(
            lambda: readme.task(task_id)["state"] == "succeeded", timeout=20, what="task ran"
        )
        assert marker.exists()
        assert readme.run(INFO, task_id=[str(task_id)]).returncode == 0
        assert readme.run(STATUS).returncode == 0
        assert readme.run(CANCEL, task_id=[str(task_id)]).returncode == 1  # already finished
    finally:
        readme.stop()
