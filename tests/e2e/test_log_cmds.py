"""The log commands against a real server: history, events (and --follow), and the offline
commands on a live server's database."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from tests.conftest import ServerProcess, kickoff_cmd, wait_until

Run = Callable[..., subprocess.CompletedProcess[str]]


def drive_one_task(server: ServerProcess, *, beats: int = 3) -> tuple[int, str]:
    """Submit, claim, heartbeat and complete one task through the HTTP API."""
    with server.client() as api:
        worker = api.post("/v1/workers", {"name": "box", "tags": ["cpu"], "slots": 1})["worker_id"]
        (task,) = api.post("/v1/tasks", {"command": "echo hi", "require": ["cpu"]})["ids"]
        (claim,) = api.post(f"/v1/workers/{worker}/claim", {"max_tasks": 1, "wait_s": 0})["tasks"]
        for _ in range(beats):
            api.post(f"/v1/workers/{worker}/heartbeat", {"running": [[task, claim["attempt"]]]})
        api.post(
            f"/v1/tasks/{task}/complete",
            {
                "worker_id": worker,
                "attempt": claim["attempt"],
                "exit_code": 0,
                "duration_s": 0.5,
                "output_tail": "hi\n",
            },
        )
        api.request("DELETE", f"/v1/workers/{worker}")  # or it is lost (and logged) in 2 s
    return task, worker


def test_history(server: ServerProcess, kickoff: Run) -> None:
    task, worker = drive_one_task(server)
    result = kickoff("history", str(task))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"task {task} · succeeded · echo hi" in text
    assert f"claimed by {worker} (attempt 1 of 3)" in text
    assert f"3 heartbeats from {worker} between" in text
    assert f"succeeded on {worker}: exit code 0 after 0.50s" in text
    assert text.rstrip().endswith("hi")
    assert "\x1b[" not in text  # piped: plain

    result = kickoff("history", str(task), "--json")
    events = json.loads(result.stdout)
    assert [e["type"] for e in events] == [
        "TaskSubmitted",
        "TaskClaimed",
        *["WorkerHeartbeat"] * 3,
        "TaskCompleted",
    ]
    assert all(set(e) == {"seq", "ts", "type", "task_id", "worker_id", "data"} for e in events)

    missing = kickoff("history", "999")
    assert missing.returncode == 4
    assert "Traceback" not in missing.stderr


def test_events_query_and_filters(server: ServerProcess, kickoff: Run) -> None:
    task, worker = drive_one_task(server)
    everything = [json.loads(line) for line in kickoff("events", "--json").stdout.splitlines()]
    seqs = [e["seq"] for e in everything]
    assert seqs == list(range(1, len(seqs) + 1))
    assert everything[0]["type"] == "ServerStarted"

    def seqs_of(*args: str) -> list[int]:
        result = kickoff("events", "--json", *args)
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["seq"] for line in result.stdout.splitlines()]

    completed = seqs_of("--type", "completed")
    assert [everything[s - 1]["type"] for s in completed] == ["TaskCompleted"]
    assert seqs_of("--type", "TaskSubmitted,TaskClaimed") == [
        e["seq"] for e in everything if e["type"] in ("TaskSubmitted", "TaskClaimed")
    ]
    assert seqs_of("--task", str(task)) == [e["seq"] for e in everything if e["task_id"] == task]
    assert seqs_of("--worker", "box") == [e["seq"] for e in everything if e["worker_id"] == worker]
    assert seqs_of("--since", "3", "--until", "5") == [3, 4, 5]
    assert seqs_of("--limit", "2") == [1, 2]
    assert seqs_of("--since", "1h") == seqs
    assert seqs_of("--until", "2000-01-01") == []

    plain = kickoff("events", "--since", "2", "--limit", "1").stdout.splitlines()
    assert len(plain) == 1
    cells = plain[0].split("\t")
    assert cells[0] == "2" and cells[2] == everything[1]["type"] and len(cells) == 6

    assert kickoff("events", "--type", "nonsense").returncode == 2
    assert kickoff("events", "--since", "soon").returncode == 2


class Follower:
    """`kickoff events --follow --json` in the background, its lines collected."""

    def __init__(self, server: ServerProcess, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*kickoff_cmd(), "events", "--follow", "--json", *args],
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def commands(self) -> list[str]:
        return [e["data"].get("command", "") for e in self.lines if e["type"] == "TaskSubmitted"]

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=15)
        self.reader.join(timeout=5)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, err


def submit_until_seen(server: ServerProcess, follower: Follower, tag: str) -> str:
    """Submit until the follower prints one of ours (it may take a moment to connect)."""
    n = 0

    def seen() -> bool:
        nonlocal n
        n += 1
        with server.client() as api:
            api.post("/v1/tasks", {"command": f"echo {tag}-{n}"})
        return any(c.startswith(f"echo {tag}-") for c in follower.commands())

    wait_until(seen, timeout=20, what=f"the follower to print a task tagged {tag}")
    return next(c for c in follower.commands() if c.startswith(f"echo {tag}-"))


def test_follow_sees_new_events_and_stops_on_ctrl_c(server: ServerProcess) -> None:
    with server.client() as api:
        api.post("/v1/tasks", {"command": "echo before"})
    follower = Follower(server, "--type", "TaskSubmitted")
    submit_until_seen(server, follower, "live")
    assert "echo before" not in follower.commands()  # without --since: only new events
    assert {e["type"] for e in follower.lines} == {"TaskSubmitted"}
    code, err = follower.interrupt()
    assert code == 0, err
    assert "Traceback" not in err


def test_follow_with_since_replays_the_backlog_and_survives_a_restart(
    server: ServerProcess,
) -> None:
    with server.client() as api:
        api.post("/v1/tasks", {"command": "echo before"})
    follower = Follower(server, "--since", "1")
    wait_until(lambda: "echo before" in follower.commands(), timeout=20, what="the backlog")
    server.restart()
    submit_until_seen(server, follower, "after-restart")
    seqs = [e["seq"] for e in follower.lines]
    assert seqs == sorted(set(seqs))  # nothing twice, in order
    code, _ = follower.interrupt()
    assert code == 0


def test_offline_commands_on_a_live_servers_database(server: ServerProcess, kickoff: Run) -> None:
    task, _ = drive_one_task(server, beats=6)
    db = str(server.db_path)
    replayed = kickoff("replay", "--db", db, "--json")
    assert replayed.returncode == 0, replayed.stderr
    view = json.loads(replayed.stdout)
    assert view["stats"]["succeeded"] == 1 and view["disagreements"] == []
    assert kickoff("replay", "--db", db, "--task", str(task)).returncode == 0

    verified = kickoff("verify", "--db", db)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "all good" in verified.stdout

    refused = kickoff("projections", "rebuild", "--db", db)
    assert refused.returncode == 1
    assert "in use by another kickoff server" in refused.stderr

    compacted = kickoff("compact", "--db", db, "--before", str(view["seq"]), "--json")
    assert compacted.returncode == 0, compacted.stderr
    assert json.loads(compacted.stdout)["archived"] == 5
    drive_one_task(server)  # the server goes on writing after the compaction
    assert kickoff("verify", "--db", db).returncode == 0

    assert server.stop() == 0
    rebuilt = kickoff("projections", "rebuild", "--db", db)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt tasks, workers, task_counts and groups" in rebuilt.stdout
    final = kickoff("verify", "--db", db, "--json")
    assert final.returncode == 0, final.stdout
    assert json.loads(final.stdout)["archived"]["checked"] == 5
