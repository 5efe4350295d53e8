"""A throw-away PostgreSQL cluster for the tests: `initdb` and `pg_ctl` in a temporary
directory, as an unprivileged user (PostgreSQL refuses to run as root: CI runs as root,
so the cluster belongs to `nobody` there), listening on a free loopback port.

Without PostgreSQL's binaries the tests that need it skip, saying so; with `CI` set they
fail instead (.ci/run installs Debian's `postgresql`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import pytest

SUPERUSER = "kickoff_admin"


def binaries() -> Path | None:
    """The directory holding initdb and pg_ctl: on PATH, or Debian's versioned one."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A running cluster; `database()` makes a fresh, empty database on it."""

    bindir: Path
    root: Path
    durable: bool = False  # fsync on (bench/postgres.py); the tests' cluster skips it
    port: int = field(default_factory=_free_port)
    _names: Iterator[int] = field(default_factory=lambda: count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _as_owner(self, *args: str) -> list[str]:
        if os.geteuid() != 0:
            return list(args)
        return ["runuser", "-u", "nobody", "--", *args]

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            self._as_owner(*args), capture_output=True, text=True, timeout=120, cwd=self.root
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
        self.root.chmod(0o755)
        initdb, pg_ctl = str(self.bindir / "initdb"), str(self.bindir / "pg_ctl")
        self._run(initdb, "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        )
        if not self.durable:  # nothing here survives the session: skip the disk's flushes
            options += " -c fsync=off -c full_page_writes=off"
        self._run(pg_ctl, "-D", str(self.data), "-o", options, "-l", "log", "-w", "start")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement)

    def database(self) -> str:
        """A new empty database; its URL."""
        name = f"t{next(self._names)}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)


def missing(reason: str) -> None:
    """Skip locally; fail in CI, where PostgreSQL must be there."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: .ci/run installs Debian's postgresql)")
    pytest.skip(f"{reason}: install PostgreSQL (Debian: apt-get install postgresql) to run these")


@contextlib.contextmanager
def cluster(*, durable: bool = False) -> Iterator[Cluster]:
    bindir = binaries()
    if bindir is None:
        missing("no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg is not installed (pip install -e '.[postgresql]')")
    assert bindir is not None
    with tempfile.TemporaryDirectory(prefix="kickoff-pg-") as root:
        running = Cluster(bindir, Path(root), durable=durable)
        running.start()
        try:
            yield running
        finally:
            running.stop()
