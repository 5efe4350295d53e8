"""Shared fixtures: a real `kickoff server` subprocess, real workers, the real CLI.

Every test gets its own HOME/XDG directories, so tokens and databases never leak between
tests or into the user's own config.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from kickoff.client import Client

STARTUP_TIMEOUT_S = 20.0

# Hypothesis: `ci` (the default) is modest and deterministic; HYPOTHESIS_PROFILE=dev digs deeper.
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", parent=settings.get_profile("ci"), max_examples=1000, derandomize=False
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def free_port() -> int:
    """A free loopback port (bind 0, as uvicorn's tests do)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, *, what: str = "") -> Any:
    """Poll until predicate() is truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.01)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or predicate}: last={last!r}"
    )


def kickoff_cmd() -> list[str]:
    return [sys.executable, "-m", "kickoff"]


@pytest.fixture
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses: private HOME and XDG dirs."""
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("KICKOFF_SERVER", "KICKOFF_TOKEN", "KICKOFF_DB", "KICKOFF_DEBUG"):
        env.pop(name, None)
    return env


@dataclass
class ServerProcess:
    """A real server subprocess; restartable on the same database."""

    db_path: Path | str  # a file, or a postgresql:// URL
    port: int
    base_env: dict[str, str]
    extra_args: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    starts: int = 0
    preexec: Callable[[], None] | None = None  # run in the child before exec (resource limits)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def env(self) -> dict[str, str]:
        return {**self.base_env, "KICKOFF_SERVER": self.address, "KICKOFF_TOKEN": self.token}

    def start(self) -> None:
        self.starts += 1
        args = [
            *kickoff_cmd(),
            "server",
            "--port",
            str(self.port),
            "--db",
            str(self.db_path),
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                args, env=self.base_env, stdout=log, stderr=log, preexec_fn=self.preexec
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        else:
            self.proc.kill()  # do not leave it running for the rest of the session
            self.proc.wait()
            raise AssertionError(f"server did not answer /healthz:\n{self.output()}")
        self.token = self.token_file.read_text().strip()

    @property
    def token_file(self) -> Path:
        """Beside a database file; for PostgreSQL in the server's data dir (kickoff.auth)."""
        if isinstance(self.db_path, str):
            from kickoff.dblocation import ServerUrl

            slug = ServerUrl(self.db_path).slug
            return Path(self.base_env["XDG_DATA_HOME"]) / "kickoff" / f"{slug}.token"
        return Path(f"{self.db_path}.token")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: Any) -> Client:
        return Client(self.address, token=self.token, **kwargs)

    def kill(self) -> None:
        """kill -9."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM, wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server ignored SIGTERM:\n{self.output()}") from None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def make_server(
    tmp_path: Path, isolated_env: dict[str, str]
) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: make_server(*extra_args) -> a started server with its own database."""
    started: list[ServerProcess] = []

    def make(*extra_args: str) -> ServerProcess:
        n = len(started)
        server = ServerProcess(
            db_path=tmp_path / f"server{n}" / "kickoff.db",
            port=free_port(),
            base_env=isolated_env,
            extra_args=list(extra_args),
            log_path=tmp_path / f"server{n}.log",
        )
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A started server with default options and a 2 s heartbeat timeout."""
    return make_server("--heartbeat-timeout", "2")


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def start_worker(server: ServerProcess, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: start_worker(*args, env=None) -> a real `kickoff worker` on the server."""
    workers: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        log_path = tmp_path / f"worker{len(workers)}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*kickoff_cmd(), "worker", "--server", server.address, *args],
                env=env or server.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        worker = WorkerProcess(proc, log_path)
        workers.append(worker)
        return worker

    yield start
    finish(workers)


def finish(workers: list[WorkerProcess], grace: float = 1.5) -> None:
    """A test's end: SIGTERM to every worker (running tasks may finish), after `grace`
    seconds a second one to those still running (kills their tasks), then wait."""
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(w.proc.poll() is None for w in workers):
        time.sleep(0.02)
    for worker in workers:
        worker.stop()


@pytest.fixture
def kickoff(server: ServerProcess) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real CLI as a subprocess against the server."""

    def run(
        *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*kickoff_cmd(), *args],
            env=env or server.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A throw-away PostgreSQL cluster for the whole session (tests/_postgres.py); skips
    (fails with CI set) without PostgreSQL."""
    from tests import _postgres

    with _postgres.cluster() as running:
        yield running


@pytest.fixture
def pg_url(pg_cluster: Any) -> str:
    """The URL of a new, empty database on the session's cluster."""
    return str(pg_cluster.database())
