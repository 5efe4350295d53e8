"""The real server process: start-up, graceful stop, kill -9, concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sqlite3
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from kickoff.database import open_connection
from kickoff.errors import KickoffError
from tests.conftest import ServerProcess, kickoff_cmd
from tests.e2e.test_log_cmds import Follower, submit_until_seen


def test_startup_lines_and_graceful_stop(server: ServerProcess) -> None:
    out = server.output()
    assert f"listening on http://127.0.0.1:{server.port}" in out
    assert str(server.db_path) in out
    assert "an empty log, opened in" in out
    assert f"--token {server.token}" in out  # the ready-to-paste worker command
    assert server.stop() == 0


def test_restart_replays_the_log(server: ServerProcess) -> None:
    with server.client() as client:
        ids = client.post("/v1/tasks", {"tasks": [{"command": f"echo {i}"} for i in range(50)]})[
            "ids"
        ]
    server.restart()
    with server.client() as client:
        page = client.get("/v1/tasks", limit=100)
    assert [t["id"] for t in page["tasks"]] == ids
    # the banner says how: from the checkpoint at the log's end (a ServerStarted, then a
    # TaskSubmitted per id), nothing folded after it; it said "replayed 0 events"
    checkpoint = ids[-1] + 1
    assert f"loaded the checkpoint at seq {checkpoint:,} and 0 events after it" in server.output()


def test_refuses_a_database_that_is_not_kickoffs(tmp_path, isolated_env) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "other.db"
    sqlite3.connect(db).execute("CREATE TABLE x (y)").connection.commit()
    result = subprocess.run(
        [*kickoff_cmd(), "server", "--port", "1", "--db", str(db)],
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "not a kickoff database" in result.stderr
    assert "Traceback" not in result.stderr


def test_acknowledged_submits_survive_kill_9(server: ServerProcess) -> None:
    acked: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def submitter(n: int) -> None:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=5
        ) as http:
            i = 0
            while not stop.is_set():
                try:
                    response = http.post("/v1/tasks", json={"command": f"echo {n}-{i}"})
                except httpx.TransportError:
                    return
                if response.status_code == 201:
                    with lock:
                        acked.extend(response.json()["ids"])
                i += 1

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    while len(acked) < 300:
        threading.Event().wait(0.01)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join()
    server.start()
    with server.client() as client:
        for task_id in acked:
            assert client.get(f"/v1/tasks/{task_id}")["id"] == task_id
    conn = sqlite3.connect(server.db_path)
    seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_every_task_claimed_exactly_once_under_load(
    make_server: Callable[..., ServerProcess],
) -> None:
    """100 concurrent submitters and 24 claiming workers over real HTTP."""
    server = make_server("--heartbeat-timeout", "120")  # these workers do not heartbeat
    per_submitter, submitters, workers = 10, 100, 24
    total = per_submitter * submitters
    headers = {"Authorization": f"Bearer {server.token}"}

    async def run() -> tuple[list[int], list[int]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(
            base_url=server.url, headers=headers, timeout=30, limits=limits
        ) as http:
            submitted: list[int] = []
            claimed: list[int] = []

            async def submit(n: int) -> None:
                for i in range(per_submitter):
                    response = await http.post(
                        "/v1/tasks", json={"command": f"true {n}.{i}", "require": ["cpu"]}
                    )
                    submitted.extend(response.json()["ids"])

            async def work(n: int) -> None:
                reg = await http.post(
                    "/v1/workers", json={"name": f"load{n}", "tags": ["cpu"], "slots": 2}
                )
                worker_id = reg.json()["worker_id"]
                while len(claimed) < total:
                    response = await http.post(
                        f"/v1/workers/{worker_id}/claim", json={"max_tasks": 2, "wait_s": 0.5}
                    )
                    assert response.status_code == 200, response.text
                    for task in response.json()["tasks"]:
                        claimed.append(task["task_id"])
                        done = await http.post(
                            f"/v1/tasks/{task['task_id']}/complete",
                            json={
                                "worker_id": worker_id,
                                "attempt": task["attempt"],
                                "exit_code": 0,
                            },
                        )
                        assert done.status_code == 200, done.text

            await asyncio.gather(
                *(submit(n) for n in range(submitters)), *(work(n) for n in range(workers))
            )
            return submitted, claimed

    submitted, claimed = asyncio.run(asyncio.wait_for(run(), 120))
    assert len(set(submitted)) == total
    duplicates = [task for task, n in Counter(claimed).items() if n > 1]
    assert duplicates == []
    assert sorted(claimed) == sorted(submitted)
    conn = open_connection(server.db_path, readonly=True)  # a file, or PostgreSQL's (test_postgres)
    per_task = conn.execute(
        "SELECT count(*), count(DISTINCT task_id) FROM events WHERE type = 'TaskClaimed'"
    ).fetchone()
    assert per_task == (total, total)
    assert (
        conn.execute("SELECT n FROM task_counts WHERE state = 'succeeded'").fetchone()[0] == total
    )
    conn.close()


def test_client_error_mapping(
    server: ServerProcess, make_server: Callable[..., ServerProcess]
) -> None:
    with server.client() as client:
        try:
            client.get("/v1/tasks/12345")
        except KickoffError as exc:
            assert (exc.code, exc.exit_code) == ("not_found", 4)
        else:
            raise AssertionError("expected NotFound")


def test_a_long_poll_claim_ends_when_its_worker_hangs_up(server: ServerProcess) -> None:
    """A worker that gave up waiting (Ctrl-C, timeout) must not be handed a task later."""
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
        worker_id = http.post("/v1/workers", json={"name": "quitter", "tags": ["cpu"]}).json()[
            "worker_id"
        ]
        with contextlib.suppress(httpx.ReadTimeout):  # the client hangs up while the claim waits
            http.post(f"/v1/workers/{worker_id}/claim", json={"wait_s": 30}, timeout=0.3)
        task_id = http.post("/v1/tasks", json={"command": "true", "require": ["cpu"]}).json()[
            "ids"
        ][0]
        threading.Event().wait(0.3)  # time for a (wrongly) still-waiting claim to take it
        assert http.get(f"/v1/tasks/{task_id}").json()["state"] == "pending"


def test_a_response_leaves_in_one_piece(server: ServerProcess) -> None:
    """Head and body of an answer arrive together, so a worker wakes once per answer
    (uvicorn writes them separately; the server joins writes made in one turn)."""
    request = (
        f"GET /v1/stats HTTP/1.1\r\nHost: {server.address}\r\n"
        f"Authorization: Bearer {server.token}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        for _ in range(40):
            sock.sendall(request)
            first = sock.recv(65536)  # wakes at the first piece to arrive
            head, _, body = first.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            assert head.startswith(b"HTTP/1.1 200") and len(body) == length, first


def test_a_second_server_on_a_port_in_use_changes_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    """One `error:` line, exit 6; no file made, the running server's token still the one
    its local clients find."""
    config = Path(server.base_env["XDG_CONFIG_HOME"]) / "kickoff" / "tokens.json"
    remembered = config.read_bytes()
    other = tmp_path / "other"
    result = subprocess.run(
        [*kickoff_cmd(), "server", "--port", str(server.port), "--db", str(other / "other.db")],
        env=server.base_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 6, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert f"{server.port}" in lines[0] and "in use" in lines[0]
    assert not other.exists()
    assert config.read_bytes() == remembered
    local = {k: v for k, v in server.env.items() if k != "KICKOFF_TOKEN"}
    stats = subprocess.run(
        [*kickoff_cmd(), "stats"], env=local, capture_output=True, text=True, timeout=60
    )
    assert stats.returncode == 0, stats.stderr


def test_ctrl_c_with_a_follower_connected_stops_at_once_and_restarts(
    server: ServerProcess,
) -> None:
    """The stream ends at once (not after the graceful-stop grace, with a CancelledError
    traceback); the port is free for an immediate restart, which the follower rejoins."""
    follower = Follower(server, "--type", "TaskSubmitted")
    try:
        submit_until_seen(server, follower, "before")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=15) == 0
        output = server.output()
        for sign in ("Traceback", "CancelledError", "graceful shutdown exceeded"):
            assert sign not in output, output
        server.start()
        submit_until_seen(server, follower, "after")
    finally:
        code, err = follower.interrupt()
    assert code == 0 and "Traceback" not in err, err


def test_the_banner_says_loopback_only_and_shows_a_way_in(server: ServerProcess) -> None:
    out = server.output()
    assert "listening on 127.0.0.1 only (loopback)" in out and "--host 0.0.0.0" in out
    assert f"--server {socket.gethostname()}:{server.port}" not in out
    assert f"ssh -fN -L {server.port}:127.0.0.1:{server.port} " in out
    assert f"kickoff worker --server 127.0.0.1:{server.port} --token {server.token}" in out


def test_the_banner_on_the_network_shows_this_machines_name(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server("--host", "0.0.0.0")
    out = server.output()
    assert "loopback" not in out
    shown = f"kickoff worker --server {socket.gethostname()}:{server.port} --token {server.token}"
    assert shown in out
