"""HTTP-level figures of SPEC §8 against real `kickoff server` / `kickoff worker` processes.

Each function starts what it needs in a temporary directory and returns one figure.
Run through `python -m bench` (bench/__main__.py), which prints them beside their goals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from bench._load import hammer, request_bytes

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    token: str
    db: Path | str  # a file, or a postgresql:// URL
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )


def _env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_STATE_HOME": str(tmp / "state"),
        "XDG_DATA_HOME": str(tmp / "data"),  # a PostgreSQL database's token file goes here
        "KICKOFF_DEBUG": "",
    }


def _token_file(db: Path | str, env: dict[str, str]) -> Path:
    if isinstance(db, Path):
        return Path(f"{db}.token")
    from kickoff.dblocation import ServerUrl

    return Path(env["XDG_DATA_HOME"]) / "kickoff" / f"{ServerUrl(db).slug}.token"


# Where the figures' servers keep their log: None, a file in their temporary directory;
# bench/postgres.py sets a function that makes a new PostgreSQL database per server.
DATABASES: Callable[[], str] | None = None


def start_server(tmp: Path, db: Path | str | None = None, *args: str) -> tuple[Server, float]:
    """A server process; returns it and the seconds until /healthz answered."""
    port = free_port()
    db = db or (DATABASES() if DATABASES is not None else tmp / "kickoff.db")
    env = _env(tmp)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kickoff", "server", "--port", str(port), "--db", str(db), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server died: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.005)
    ready = time.perf_counter() - started
    token = _token_file(db, env).read_text().strip()
    return Server(proc, port, token, db, {**env, "KICKOFF_TOKEN": token}), ready


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def server_in(tmp: Path, *args: str) -> Iterator[Server]:
    server, _ = start_server(tmp, None, *args)
    try:
        yield server
    finally:
        stop(server.proc)


def start_worker(server: Server, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kickoff", "worker", "--server", f"{HOST}:{server.port}", *args],
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _batch(n: int, command: str = "true") -> bytes:
    return orjson.dumps(
        {"tasks": [{"command": command, "require": ["cpu" if i % 2 else "gpu"]} for i in range(n)]}
    )


def bulk_submit(seconds: float = 5.0) -> float:
    """Durable bulk submit over HTTP, batches of 1,000: tasks/s."""
    with tempfile.TemporaryDirectory() as tmp, server_in(Path(tmp)) as server:
        raw = request_bytes(
            "POST", "/v1/tasks", _batch(1000), server.token, f"{HOST}:{server.port}"
        )
        ok, elapsed, _ = asyncio.run(hammer(HOST, server.port, raw, clients=4, seconds=seconds))
        return ok * 1000 / elapsed


def single_submit(seconds: float = 5.0) -> float:
    """Single-task submits from 64 concurrent HTTP clients: tasks/s."""
    with tempfile.TemporaryDirectory() as tmp, server_in(Path(tmp)) as server:
        body = orjson.dumps({"command": "true", "require": ["cpu"]})
        raw = request_bytes("POST", "/v1/tasks", body, server.token, f"{HOST}:{server.port}")
        ok, elapsed, _ = asyncio.run(hammer(HOST, server.port, raw, clients=64, seconds=seconds))
        return ok / elapsed


def _wait_idle(http: httpx.Client, workers: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if http.get("/v1/stats").json()["workers"]["alive"] >= workers:
            return
        time.sleep(0.02)
    raise RuntimeError("workers did not register")


def submit_to_start(samples: int = 200) -> tuple[float, float]:
    """Submit -> start latency on an idle worker: (p50, p95) in ms.

    The command writes to a FIFO the benchmark reads, so "start" means the worker's shell
    is running the command: it includes the claim, the durable commit and the spawn.
    """
    with tempfile.TemporaryDirectory() as tmp, server_in(Path(tmp)) as server:
        fifo = Path(tmp) / "started"
        os.mkfifo(fifo)
        worker = start_worker(server, "--have", "cpu")
        try:
            with server.http() as http:
                _wait_idle(http, 1)
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            keep = os.open(fifo, os.O_WRONLY)  # so reads block instead of seeing EOF
            os.set_blocking(reader, True)
            latencies = _latency_loop(server, fifo, reader, samples)
            os.close(keep)
            os.close(reader)
        finally:
            stop(worker)
        latencies.sort()
        return latencies[len(latencies) // 2] * 1e3, latencies[int(len(latencies) * 0.95)] * 1e3


def _latency_loop(server: Server, fifo: Path, reader: int, samples: int) -> list[float]:
    """Blocking calls only: the figure holds no event-loop or thread hand-off of the
    benchmark's own (an asyncio client with the FIFO read in a thread added ~0.1 ms)."""
    out: list[float] = []
    with socket.create_connection((HOST, server.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(samples + 10):
            body = orjson.dumps({"command": f"echo {i} > {fifo}", "require": ["cpu"]})
            raw = request_bytes("POST", "/v1/tasks", body, server.token, f"{HOST}:{server.port}")
            started = time.perf_counter()
            sock.sendall(raw)
            os.read(reader, 64)  # the task's shell has run its command
            elapsed = time.perf_counter() - started
            _read_answer(sock)
            if i >= 10:  # warm-up
                out.append(elapsed)
            time.sleep(0.01)  # let the worker go idle again
    return out


def _read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer with a Content-Length, read whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return body


@dataclass(frozen=True)
class Drained:
    """A drain's rate, and the CPU each part spent per task (ms): the server, the two
    workers together, and their tasks' shells together; and the server's commits per task
    (1 when no two workers' reports share a commit: each pays its own fsync)."""

    rate: float
    server_ms: float
    workers_ms: float
    shells_ms: float
    commits: float = 0.0


def commits_total(http: httpx.Client) -> int:
    """The server's group commits so far (its /metrics)."""
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("kickoff_commits_total "):
            return int(line.split()[1])
    raise RuntimeError("no kickoff_commits_total in /metrics")


TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) / TICKS_PER_S for x in fields[11:15])
    return utime + stime, cutime + cstime


def last_completion(http: httpx.Client) -> float:
    """When the log recorded its last TaskCompleted (a POSIX time): a drain ends there,
    not when the benchmark looked."""
    last_seq = http.get("/v1/stats").json()["last_seq"]
    last = http.get(
        "/v1/events", params={"type": "TaskCompleted", "after": max(0, last_seq - 500)}
    ).json()["events"]
    return max(datetime.fromisoformat(e["ts"]) for e in last).timestamp()


Watch = Callable[["Server"], contextlib.AbstractContextManager[object]]


def drain(tasks: int = 2000, *, watch: Watch | None = None, command: str = "true") -> Drained:
    """End-to-end drain of `tasks` `true` tasks (or `command`), half cpu and half gpu, 2
    single-slot workers; with `watch`, inside watch(server) (bench/dashboard.py: an open
    dashboard)."""
    with tempfile.TemporaryDirectory() as tmp, server_in(Path(tmp)) as server:
        workers = [start_worker(server, "--have", "cpu"), start_worker(server, "--have", "gpu")]
        try:
            with server.http() as http, watch(server) if watch else contextlib.nullcontext():
                _wait_idle(http, 2)
                body = orjson.loads(_batch(tasks, command))
                pids = [server.proc.pid, *(w.pid for w in workers)]
                before = [cpu_seconds(pid) for pid in pids]
                commits = commits_total(http)
                started = datetime.now(UTC)
                http.post("/v1/tasks", json=body)
                while http.get("/v1/stats").json()["succeeded"] < tasks:
                    time.sleep(0.05)  # polling faster would itself cost the server CPU
                after = [cpu_seconds(pid) for pid in pids]
                commits = commits_total(http) - commits
                finished = last_completion(http)
                spent = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)]
                per_task = 1e3 / tasks
                return Drained(
                    tasks / (finished - started.timestamp()),
                    spent[0][0] * per_task,
                    sum(own for own, _ in spent[1:]) * per_task,
                    sum(children for _, children in spent[1:]) * per_task,
                    commits / tasks,
                )
        finally:
            for worker in workers:
                stop(worker)


def make_big_log(db: Path, tasks: int = 1_000_000, events: int = 3_000_000) -> None:
    """A database with `tasks` tasks and `events` events: all submitted, half run to the end
    (claim + complete), the rest of the events heartbeats; half the tasks stay pending."""
    from kickoff.database import Database
    from kickoff.events import model as ev
    from kickoff.store.chain import Recorded

    database = Database(db)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    seq = 0
    batch: list[Recorded] = []

    def add(event: ev.Event) -> None:
        nonlocal seq, at
        seq += 1
        batch.append(Recorded(seq, at, event))
        if len(batch) >= 50_000:
            database.write(batch)
            batch.clear()
            at += timedelta(seconds=1)

    add(ev.WorkerRegistered(worker_id="w1", name="bench", tags=frozenset({"cpu", "gpu"}), slots=1))
    shapes = [frozenset({f"t{i % 10}", f"u{i // 10}"}) for i in range(100)]
    for task_id in range(1, tasks + 1):
        add(
            ev.TaskSubmitted(
                task_id=task_id, command=f"run {task_id}", require=shapes[task_id % 100]
            )
        )
    done = tasks // 2
    for task_id in range(1, done + 1):
        add(ev.TaskClaimed(task_id=task_id, worker_id="w1", attempt=1))
        add(
            ev.TaskCompleted(
                task_id=task_id, worker_id="w1", attempt=1, exit_code=0, duration_s=0.01
            )
        )
    while seq < events:
        add(ev.WorkerHeartbeat(worker_id="w1"))
    if batch:
        database.write(batch)
    database.close()


def restart_to_ready(db: Path) -> float:
    """Seconds from starting a server on `db` until /healthz answers (includes the replay)."""
    with tempfile.TemporaryDirectory() as tmp:
        server, ready = start_server(Path(tmp), db)
        stop(server.proc)
        return ready


def median(values: list[float]) -> float:
    return statistics.median(values)
