"""Where and with what a task runs (SPEC §9), with a real server, worker and CLI: the
submit directory, --cwd, the scratch directory when a directory is missing on the worker,
--env and --env-pass."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess, WorkerProcess, kickoff_cmd, wait_until


def run(
    server: ServerProcess, *args: str, cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*kickoff_cmd(), *args],
        env={**server.env, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def finished(server: ServerProcess, task_id: int) -> dict[str, Any]:
    with server.client() as api:
        return dict(
            wait_until(
                lambda: (t := api.get(f"/v1/tasks/{task_id}"))["finished_at"] and t,
                timeout=30,
                what=f"task {task_id} to finish",
            )
        )


@pytest.fixture
def worker(start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    return start_worker()


def test_relative_paths_resolve_in_the_submit_directory(
    server: ServerProcess, worker: WorkerProcess, tmp_path: Path
) -> None:
    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    (project / "data.txt").write_text("from the project\n")
    (project / "sub" / "more.txt").write_text("from sub\n")
    here = run(server, "new", "cat data.txt && pwd", cwd=project)
    assert here.returncode == 0, here.stderr
    task = finished(server, int(here.stdout))
    assert task["state"] == "succeeded", task
    assert task["output_tail"] == f"from the project\n{project}\n"
    assert task["cwd"] == str(project)
    there = run(server, "new", "--cwd", "sub", "--", "cat", "more.txt", cwd=project)
    assert finished(server, int(there.stdout))["output_tail"] == "from sub\n"


def test_a_missing_directory_gets_a_scratch_directory_said_on_the_first_line(
    server: ServerProcess, worker: WorkerProcess, tmp_path: Path
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    submitted = run(server, "new", "pwd; ls -A | wc -l", cwd=gone)
    gone.rmdir()  # as on a worker that does not have the submit machine's directories
    task = finished(server, int(submitted.stdout))
    first, where, count = task["output_tail"].splitlines()
    assert first.startswith(f"kickoff worker: the directory {gone} does not exist")
    assert where.startswith("/") and "kickoff-task-" in where and where in first
    assert where != os.getcwd()  # never the worker's own directory
    assert count.strip() == "0"  # fresh and empty
    history = run(server, "history", str(task["id"]), cwd=tmp_path)
    assert f"ran in the scratch directory {where}" in history.stdout
    assert f"in {gone}" in history.stdout


def test_env_and_env_pass_are_set_on_top_of_the_workers_environment(
    server: ServerProcess, worker: WorkerProcess, tmp_path: Path
) -> None:
    submitted = run(
        server,
        "new",
        "--env",
        "GREETING=hello world",
        "--env",
        "EMPTY=",
        "--env-pass",
        "MINE",
        "--",
        'echo "$GREETING|$EMPTY|$MINE|${KICKOFF_TOKEN-unset}|$HOME"',
        cwd=tmp_path,
        MINE="only the submitter has this",
    )
    assert submitted.returncode == 0, submitted.stderr
    task = finished(server, int(submitted.stdout))
    home = server.env["HOME"]  # the worker's own environment is the base
    assert task["output_tail"] == f"hello world||only the submitter has this|unset|{home}\n"
    assert task["env"] == {
        "EMPTY": "",
        "GREETING": "hello world",
        "MINE": "only the submitter has this",
    }


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--env", "NOEQUALS"], "expected KEY=VALUE"),
        (["--env", "1BAD=x"], "not a variable name"),
        (["--env", "KICKOFF_TOKEN=x"], "set by the worker"),
        (["--env-pass", "SURELY_NOT_SET_HERE"], "not set in this environment"),
        (["--env", "BIG=" + "x" * 70_000], "bytes of names and values"),
    ],
)
def test_bad_env_exits_2_and_submits_nothing(
    server: ServerProcess, tmp_path: Path, args: list[str], says: str
) -> None:
    done = run(server, "new", *args, "--", "true", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and says in done.stderr
    with server.client() as api:
        assert api.get("/v1/tasks", state="all")["tasks"] == []
