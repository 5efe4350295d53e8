"""A real `kickoff worker` against a real server: matching, cancel, kill -9, Ctrl-C,
server restarts, tags files. Processes are checked through /proc, never by timing."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kickoff.client import Client
from kickoff.errors import StaleAttempt
from tests.conftest import ServerProcess, WorkerProcess, kickoff_cmd, wait_until

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture(autouse=True)
def task_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Workers started here inherit this cwd, and so do their tasks: never the repo's."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def submit(client: Client, command: str, **fields: Any) -> int:
    ids: list[int] = client.post("/v1/tasks", {"command": command, **fields})["ids"]
    return ids[0]


def get(client: Client, task_id: int) -> dict[str, Any]:
    task: dict[str, Any] = client.get(f"/v1/tasks/{task_id}")
    return task


def state_is(client: Client, task_id: int, *states: str) -> Callable[[], Any]:
    def check() -> Any:
        task = get(client, task_id)
        return task if task["state"] in states else False

    return check


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group, from /proc."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(name))
    return members


def read_pid(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text else None


def kill_group(pgid: int | None) -> None:
    if pgid is not None and group_members(pgid):
        os.killpg(pgid, signal.SIGKILL)


def events_of(client: Client, task_id: int) -> list[str]:
    return [e["type"] for e in client.get(f"/v1/tasks/{task_id}/events", heartbeats=0)["events"]]


def test_tasks_reach_only_workers_whose_tags_satisfy_require(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    with server.client() as client:
        plain = submit(client, "echo plain")
        cpu = submit(client, "echo cpu", require=["cpu"])
        gpu = submit(client, "echo gpu", require=["gpu"])
        both = submit(client, "echo both", require=["cpu", "gpu"])
        worker = start_worker("--have", "cpu", "--name", "cpu-box", "--burst")
        assert worker.proc.wait(timeout=30) == 0, worker.output()
        assert get(client, plain)["worker_name"] == "cpu-box"
        assert get(client, cpu)["output_tail"] == "cpu\n"
        assert get(client, gpu)["state"] == "pending"
        assert get(client, both)["state"] == "pending"

        worker = start_worker("--have", "cpu gpu", "--name", "big-box", "--burst")
        assert worker.proc.wait(timeout=30) == 0, worker.output()
        for task_id in (gpu, both):
            task = get(client, task_id)
            assert (task["state"], task["worker_name"]) == ("succeeded", "big-box")


def test_have_accepts_repeats_commas_and_spaces(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    with server.client() as client:
        task_id = submit(client, "true", require=["a", "b", "c", "d"])
        worker = start_worker("--have", "a,b", "--have", "c d", "--burst")
        assert worker.proc.wait(timeout=30) == 0, worker.output()
        assert get(client, task_id)["state"] == "succeeded"


def test_tasks_get_their_ids_but_not_the_worker_s_token(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    assert server.env["KICKOFF_TOKEN"]  # the worker below gets its token from the environment
    with server.client() as client:
        task_id = submit(
            client,
            'echo "token=${KICKOFF_TOKEN-unset} home=$HOME" "$KICKOFF_TASK_ID" "$KICKOFF_ATTEMPT"',
        )
        worker = start_worker("--name", "tokenless", "--burst")
        assert worker.proc.wait(timeout=30) == 0, worker.output()
        task = get(client, task_id)
    home = server.env["HOME"]
    assert task["output_tail"] == f"token=unset home={home} {task_id} 1\n"
    assert server.token not in task["output_tail"]


def test_cancel_kills_the_process_group(
    server: ServerProcess, start_worker: StartWorker, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    worker = start_worker("--have", "cpu")
    with server.client() as client:
        task_id = submit(client, f"echo $$ > {pid_file}; sleep 600 & sleep 600; wait")
        wait_until(lambda: read_pid(pid_file), what="the task to start")
        pgid = read_pid(pid_file)
        assert pgid is not None
        wait_until(lambda: len(group_members(pgid)) >= 3, what="sh and two sleeps")
        try:
            client.post(f"/v1/tasks/{task_id}/cancel")
            task = wait_until(state_is(client, task_id, "cancelled"), what="cancelled")
            wait_until(lambda: not group_members(pgid), what="no process left in the group")
        finally:
            kill_group(pgid)
        assert task["state"] == "cancelled"
    assert worker.stop() == 0, worker.output()


def test_a_killed_worker_s_task_runs_again_elsewhere_and_its_late_report_is_refused(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server("--heartbeat-timeout", "1")
    pid_file = tmp_path / "pid.1"
    command = (
        f"echo $$ > {tmp_path}/pid.$KICKOFF_ATTEMPT; "
        'if [ "$KICKOFF_ATTEMPT" = 1 ]; then sleep 600; fi; echo attempt $KICKOFF_ATTEMPT'
    )

    def worker(name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.log").open("wb") as log:
            return subprocess.Popen(
                [*kickoff_cmd(), "worker", "--name", name],
                env=server.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )

    first = worker("doomed")
    second: subprocess.Popen[bytes] | None = None
    try:
        with server.client() as client:
            task_id = submit(client, command)
            running = wait_until(state_is(client, task_id, "running"), what="running")
            wait_until(lambda: read_pid(pid_file), what="attempt 1 started")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            second = worker("rescuer")
            task = wait_until(state_is(client, task_id, "succeeded"), timeout=30, what="rerun")
            assert task["attempt"] == 2
            assert task["worker_name"] == "rescuer"
            assert task["output_tail"] == "attempt 2\n"
            assert "TaskLeaseExpired" in events_of(client, task_id)
            with pytest.raises(StaleAttempt):
                client.post(
                    f"/v1/tasks/{task_id}/complete",
                    {"worker_id": running["worker"], "attempt": 1, "exit_code": 0},
                )
    finally:
        kill_group(read_pid(pid_file))
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=15)


def test_ctrl_c_once_drains_and_exits_0(server: ServerProcess, start_worker: StartWorker) -> None:
    worker = start_worker("--name", "drainer")
    with server.client() as client:
        task_id = submit(client, "sleep 1; echo finished")
        wait_until(state_is(client, task_id, "running"), what="running")
        worker.proc.send_signal(signal.SIGINT)
        later = submit(client, "echo too late")
        assert worker.proc.wait(timeout=30) == 0, worker.output()
        task = get(client, task_id)
        assert (task["state"], task["output_tail"]) == ("succeeded", "finished\n")
        assert get(client, later)["state"] == "pending"
        workers = client.get("/v1/workers", all=1)["workers"]
        assert [w["state"] for w in workers if w["name"] == "drainer"] == ["stopped"]


def test_ctrl_c_twice_kills_and_requeues(
    server: ServerProcess, start_worker: StartWorker, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    worker = start_worker("--grace", "1")
    with server.client() as client:
        task_id = submit(client, f"echo $$ > {pid_file}; sleep 600")
        wait_until(lambda: read_pid(pid_file), what="started")
        pgid = read_pid(pid_file)
        assert pgid is not None
        try:
            worker.proc.send_signal(signal.SIGINT)
            wait_until(lambda: "stopping" in worker.output(), what="first Ctrl-C seen")
            worker.proc.send_signal(signal.SIGINT)
            assert worker.proc.wait(timeout=30) == 130, worker.output()
            wait_until(lambda: not group_members(pgid), what="the task killed")
        finally:
            kill_group(pgid)
        task = get(client, task_id)
        assert task["state"] == "pending"  # requeued for its next attempt
        assert "TaskRequeued" in events_of(client, task_id)


def test_sigterm_drains_like_ctrl_c(server: ServerProcess, start_worker: StartWorker) -> None:
    worker = start_worker()
    with server.client() as client:
        task_id = submit(client, "sleep 0.5; echo ok")
        wait_until(state_is(client, task_id, "running"), what="running")
        assert worker.stop(signal.SIGTERM) == 0, worker.output()
        assert get(client, task_id)["state"] == "succeeded"


def test_sigterm_with_the_server_gone_exits_once_nothing_is_left_to_report(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    """Nothing to deliver, nobody to say goodbye to: the worker gives up deregistering
    after a few seconds and exits 0 (the server counts it lost), instead of hanging."""
    worker = start_worker()
    with server.client() as client:
        wait_until(lambda: client.get("/v1/workers")["workers"], what="registered")
    server.kill()
    assert worker.stop(signal.SIGTERM, timeout=15) == 0, worker.output()
    assert "could not deregister" in worker.output()


def test_server_killed_and_restarted_while_a_task_runs(
    server: ServerProcess, start_worker: StartWorker, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    release = tmp_path / "release"
    worker = start_worker()
    with server.client() as client:
        task_id = submit(
            client,
            f"echo run >> {runs}; while [ ! -e {release} ]; do sleep 0.05; done; echo done",
        )
        wait_until(state_is(client, task_id, "running"), what="running")
    server.kill()
    release.touch()  # the task ends while the server is down; its report must wait
    wait_until(lambda: "report of task" in worker.output(), what="a failed report")
    server.start()
    with server.client() as client:
        task = wait_until(state_is(client, task_id, "succeeded"), timeout=30, what="reported")
        assert task["output_tail"] == "done\n"
        assert events_of(client, task_id).count("TaskClaimed") == 1
    assert runs.read_text() == "run\n"
    assert worker.proc.poll() is None  # rode out the outage
    assert worker.stop() == 0, worker.output()


def test_tags_file_changes_which_tasks_it_gets(
    server: ServerProcess, start_worker: StartWorker, tmp_path: Path
) -> None:
    tags_file = tmp_path / "tags"
    tags_file.write_text("cpu\n")
    worker = start_worker("--tags-file", str(tags_file), "--name", "flex")
    with server.client() as client:
        wait_until(lambda: client.get("/v1/workers")["workers"], what="registered")
        gpu_task = submit(client, "echo gpu", require=["gpu"])
        cpu_task = submit(client, "echo cpu", require=["cpu"])
        wait_until(state_is(client, cpu_task, "succeeded"), what="cpu task")
        assert get(client, gpu_task)["state"] == "pending"

        tags_file.write_text("cpu\ngpu  # added\n")
        wait_until(state_is(client, gpu_task, "succeeded"), what="gpu task after the change")
        assert get(client, gpu_task)["worker_name"] == "flex"

        tags_file.write_text("cpu\n")
        wait_until(lambda: client.get("/v1/workers/flex")["tags"] == ["cpu"], what="gpu dropped")
        later = submit(client, "echo gpu again", require=["gpu"])
        probe = submit(client, "echo probe", require=["cpu"])  # runs after `later` was seen
        wait_until(state_is(client, probe, "succeeded"), what="probe")
        assert get(client, later)["state"] == "pending"
    assert worker.stop() == 0, worker.output()


def test_bad_tags_are_a_usage_error(server: ServerProcess, start_worker: StartWorker) -> None:
    worker = start_worker("--have", "bad!tag")
    assert worker.proc.wait(timeout=30) == 2
    assert "invalid tag" in worker.output()
    assert "Traceback" not in worker.output()


def test_wrong_token_exits_5(server: ServerProcess, start_worker: StartWorker) -> None:
    bad = "not-the-token-zz9"
    worker = start_worker("--token", bad, env={**server.env, "KICKOFF_TOKEN": bad})
    assert worker.proc.wait(timeout=30) == 5
    assert "Traceback" not in worker.output()
    assert bad not in worker.output()


def _burst(server: ServerProcess, command: str) -> None:
    """Submit a task and run a burst worker until it is done (the default log directory)."""
    with server.client() as client:
        task_id = submit(client, command)
    subprocess.run(
        [*kickoff_cmd(), "worker", "--server", server.address, "--burst"],
        env=server.env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    with server.client() as client:
        assert get(client, task_id)["state"] == "succeeded"


def test_task_logs_of_two_servers_never_collide(
    make_server: Callable[..., ServerProcess], isolated_env: dict[str, str]
) -> None:
    """Issue 12.3: task 1 of one server and task 1 of another, one user's log directory."""
    logs = Path(isolated_env["XDG_STATE_HOME"]) / "kickoff" / "worker-logs"
    for word in ("alpha", "beta"):
        _burst(make_server(), f"echo {word}")
    files = sorted(logs.glob("*/task-1-1.log"))
    assert sorted(f.read_text() for f in files) == ["alpha\n", "beta\n"]
    assert len({f.parent for f in files}) == 2  # a directory per server


def test_a_restored_database_never_truncates_an_earlier_task_s_log(
    make_server: Callable[..., ServerProcess], isolated_env: dict[str, str]
) -> None:
    """A database restored from a backup hands task 1 out again: the first run's file
    stays as it was, the second run's gets a name of its own."""
    server = make_server()
    server.stop()
    db = server.db_path
    backup = {p: p.read_bytes() for p in db.parent.glob(f"{db.name}*") if p.is_file()}
    server.start()
    _burst(server, "echo first")
    server.stop()
    for p in db.parent.glob(f"{db.name}-*"):
        p.unlink()
    for p, data in backup.items():
        p.write_bytes(data)
    server.start()
    _burst(server, "echo second")
    logs = Path(isolated_env["XDG_STATE_HOME"]) / "kickoff" / "worker-logs"
    (server_dir,) = logs.iterdir()
    assert sorted((p.name, p.read_text()) for p in server_dir.iterdir()) == [
        ("task-1-1.1.log", "second\n"),
        ("task-1-1.log", "first\n"),
    ]
