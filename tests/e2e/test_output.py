"""Task output from anywhere (SPEC §9), with real servers, workers and shell commands:
`kickoff logs --follow` from a second client while the task prints, `new --follow` exit
codes, output kept across a server `kill -9` and after its worker is killed, the cap,
and a task printing as fast as it can beside a drain, the server answering throughout."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ServerProcess, WorkerProcess, kickoff_cmd, wait_until

Kickoff = Callable[..., subprocess.CompletedProcess[str]]
StartWorker = Callable[..., WorkerProcess]


def submit(kickoff: Kickoff, *args: str) -> int:
    result = kickoff("new", *args)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def output_of(server: ServerProcess, task_id: int, **params: object) -> bytes:
    with server.client() as api:
        return b"".join(api.logs(task_id, **params))  # type: ignore[arg-type]


def state_of(server: ServerProcess, task_id: int) -> str:
    with server.client() as api:
        return str(api.get(task_id)["state"])


def test_logs_follow_shows_lines_while_the_task_still_runs(
    server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker, tmp_path: Path
) -> None:
    start_worker()
    flag = tmp_path / "go-on"
    script = (
        "for i in 1 2 3; do echo line $i; sleep 0.5; done; "
        f"until [ -e {flag} ]; do sleep 0.05; done; "
        "for i in 4 5 6; do echo line $i; sleep 0.5; done; exit 7"
    )
    task_id = submit(kickoff, "--", "sh", "-c", script)
    follower = subprocess.Popen(
        [*kickoff_cmd(), "logs", str(task_id), "--follow"],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert follower.stdout is not None
    try:
        seen = [follower.stdout.readline() for _ in range(3)]
        assert seen == [b"line 1\n", b"line 2\n", b"line 3\n"]
        assert state_of(server, task_id) == "running"  # it waits for the flag: not over
        flag.touch()
        rest, errors = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert rest == b"line 4\nline 5\nline 6\n", errors
    assert follower.returncode == 7  # the task's exit code


def test_new_follow_prints_the_output_and_exits_with_the_task_s_code(
    server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker()
    failed = kickoff("new", "--follow", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert failed.returncode == 3
    assert failed.stdout == "out\nerr\n"  # both streams, in the order written
    task_id = int(failed.stderr.split()[-1])  # `task ID` on stderr
    assert state_of(server, task_id) == "failed"
    assert kickoff("new", "--follow", "--", "echo", "fine").returncode == 0
    killed = kickoff("new", "--follow", "--", "sh", "-c", "echo bye; kill -9 $$")
    assert killed.returncode == 137  # 128 + SIGKILL, as a shell says
    assert killed.stdout.startswith("bye\n")  # (then the shell's own "Killed")
    retried = kickoff("new", "--follow", "--retries", "1", "--", "sh", "-c", "echo try; exit 1")
    assert retried.returncode == 1
    assert retried.stdout == "try\ntry\n"  # each attempt's output, in turn
    assert "attempt 2" in retried.stderr
    many = kickoff("new", "--follow", "--array", "1-2", "--", "true")
    assert many.returncode == 2 and "--follow" in many.stderr


def test_output_is_kept_across_a_server_kill_9(
    server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker, tmp_path: Path
) -> None:
    start_worker()
    flag = tmp_path / "finish"
    script = f"echo before; until [ -e {flag} ]; do sleep 0.05; done; echo after"
    task_id = submit(kickoff, "--", "sh", "-c", script)
    follower = subprocess.Popen(
        [*kickoff_cmd(), "logs", str(task_id), "--follow"],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert follower.stdout is not None
    try:
        assert follower.stdout.readline() == b"before\n"
        server.kill()
        server.start()  # (same port: the follower reconnects and goes on where it was)
        assert output_of(server, task_id) == b"before\n"
        flag.touch()  # the worker reports to the restarted server
        wait_until(lambda: state_of(server, task_id) == "succeeded", 30, what="finished")
        rest, errors = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert (follower.returncode, rest) == (0, b"after\n"), errors
    result = kickoff("logs", str(task_id))
    assert (result.returncode, result.stdout) == (0, "before\nafter\n")


def test_output_is_kept_after_its_worker_is_killed(
    server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    worker = start_worker()
    task_id = submit(kickoff, "--", "sh", "-c", "echo working; sleep 600")
    wait_until(lambda: output_of(server, task_id) == b"working\n", 15, what="output sent")
    worker.kill()  # kill -9: the server counts it lost after its heartbeat timeout (2 s)
    wait_until(lambda: state_of(server, task_id) == "pending", 30, what="requeued")
    result = kickoff("logs", str(task_id), "--attempt", "1")
    assert (result.returncode, result.stdout) == (0, "working\n")
    assert kickoff("logs", str(task_id), "--attempt", "3").returncode == 4


def test_past_the_cap_the_output_is_counted_and_said(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server("--output-cap", "1K")
    worker = subprocess.Popen(
        [*kickoff_cmd(), "worker", "--server", server.address],
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run = subprocess.run(
            [*kickoff_cmd(), "new", "--follow", "--", "head", "-c", "5000", "/dev/zero"],
            env=server.env,
            capture_output=True,
            timeout=60,
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert run.returncode == 0
    assert run.stdout == b"\0" * 1024
    assert b"3,976 more bytes of attempt 1 were not kept" in run.stderr


def test_a_task_printing_flat_out_starves_neither_the_server_nor_a_drain(
    make_server: Callable[..., ServerProcess], kickoff: Kickoff, tmp_path: Path
) -> None:
    server = make_server("--heartbeat-timeout", "5")
    env = server.env
    workers = [
        subprocess.Popen(
            [*kickoff_cmd(), "worker", "--server", server.address, "--have", tag],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for tag in ("loud", "quiet")
    ]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*kickoff_cmd(), *args], env=env, capture_output=True, text=True, timeout=60
        )

    try:
        flag = tmp_path / "stop"
        loud_cmd = f"head -c 256M /dev/zero | tr '\\0' x; until [ -e {flag} ]; do sleep 0.1; done"
        loud = int(run("new", "--require", "loud", "--", "sh", "-c", loud_cmd).stdout)
        wait_until(lambda: len(output_of(server, loud, offset=-1)) == 1, 30, what="loud output")
        ids: list[int] = []
        for _ in range(20):
            ids.append(int(run("new", "--require", "quiet", "--", "echo", "small").stdout))
            assert run("status").returncode == 0  # answered while the output pours in
        assert run("wait", *map(str, ids)).returncode == 0
        assert all(output_of(server, i) == b"small\n" for i in ids)
        flag.touch()
        wait_until(lambda: state_of(server, loud) == "succeeded", 60, what="loud done")
        with server.client() as api:
            info = api.output_info(loud)
        assert info["size"] == 64 * 1024 * 1024  # the default cap
        assert info["total"] >= info["size"]
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)


README = Path(__file__).parents[2] / "README.md"


def test_the_readme_output_section_word_for_word(
    server: ServerProcess, start_worker: StartWorker, tmp_path: Path
) -> None:
    """Its transcript, command by command against a fresh server (stdout and stderr as a
    terminal shows them, one after the other), is what the README says."""
    import re

    section = README.read_text().split("\n## Output from anywhere", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```console\n(.*?)```", section, re.DOTALL)
    start_worker()
    shown, last = [], 0
    for line in block.splitlines():
        if not line.startswith("$ "):
            continue
        command = line[2:]
        if command == "echo $?":
            shown.append(f"$ {command}\n{last}\n")
            continue
        run = subprocess.run(
            ["sh", "-c", command.replace("kickoff ", f"{' '.join(kickoff_cmd())} ", 1)],
            env=server.env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        )
        last = run.returncode
        shown.append(f"$ {command}\n{run.stdout}")
    assert "".join(shown) == block


def test_logs_of_a_task_whose_worker_sent_no_output_shows_its_tail(
    server: ServerProcess, kickoff: Kickoff
) -> None:
    """A worker of an older kickoff sends no output, only its report's 4 KiB tail."""
    task_id = submit(kickoff, "--", "echo old")
    with server.client() as api:
        worker = api.post("/v1/workers", {"name": "old", "tags": [], "slots": 1})["worker_id"]
        api.post(f"/v1/workers/{worker}/claim", {"max_tasks": 1, "wait_s": 0})
        report = {"worker_id": worker, "attempt": 1, "exit_code": 0, "output_tail": "old\n"}
        api.post(f"/v1/tasks/{task_id}/complete", report)
    for args in ([], ["--follow"]):
        shown = kickoff("logs", str(task_id), *args)
        assert (shown.returncode, shown.stdout) == (0, "old\n")
        assert "keeps no output of task" in shown.stderr
