"""Storage faults with the real `kickoff server`: each bad database stops it with exit 1
and one `error: ...` line (never a traceback); a disk that fills up while it runs (a real,
small tmpfs) gives 503s, writes nothing half, and the server carries on once there is
room again, and after a restart."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from kickoff.database import SCHEMA_VERSION
from tests.conftest import ServerProcess, free_port, kickoff_cmd
from tests.store.test_faults import (
    assert_projections_match_the_log,
    immutable,
    make_database,
    readonly_view,
    scribble,
    small_tmpfs,
)

MiB = 1024 * 1024


def start(db: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Start a server that must refuse to run (a timeout means it did run)."""
    return subprocess.run(
        [*kickoff_cmd(), "server", "--port", str(free_port()), "--db", str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "listening" not in result.stdout


def set_pragma(path: Path, pragma: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA {pragma}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ("truncated", "is truncated"),
        ("corrupted", "damaged"),
        ("not sqlite", "not a SQLite database"),
        ("another program's", "not a kickoff database"),
        ("newer schema", "upgrade kickoff"),
    ],
)
def test_a_bad_database_stops_the_server_with_a_clear_message(
    tmp_path: Path, isolated_env: dict[str, str], fault: str, needle: str
) -> None:
    db = make_database(tmp_path / "k.db")
    if fault == "truncated":
        os.truncate(db, db.stat().st_size // 2)
    elif fault == "corrupted":
        scribble(4096)(db)
    elif fault == "not sqlite":
        db.write_text("a text file\n" * 500)
    elif fault == "another program's":
        db.unlink()
        set_pragma(db, "user_version = 3")
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE mine (x)")
        conn.commit()
        conn.close()
    else:
        set_pragma(db, f"user_version = {SCHEMA_VERSION + 1}")
    before = db.read_bytes()
    assert_refused(start(db, isolated_env), needle, str(db))
    assert db.read_bytes() == before  # reported, not repaired


def test_an_immutable_database_stops_the_server(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    db = make_database(tmp_path / "k.db")
    with immutable(db):
        assert_refused(start(db, isolated_env), "read-only")


def test_a_read_only_directory_stops_the_server(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    source = tmp_path / "data"
    source.mkdir()
    make_database(source / "k.db")
    with readonly_view(source, tmp_path / "ro") as view:
        assert_refused(start(view / "k.db", isolated_env), "Read-only file system")
        assert_refused(start(view / "new" / "k.db", isolated_env), "Read-only file system")


def test_a_read_only_database_with_its_lock_and_token_in_place(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """Nothing needs creating, and still: refused at once, with the reason."""
    source = tmp_path / "data"
    source.mkdir()
    db = make_database(source / "k.db")
    Path(f"{db}.token").write_text("t" * 43 + "\n")
    Path(f"{db}.token").chmod(0o600)
    Path(f"{db}.lock").touch()
    with readonly_view(source, tmp_path / "ro") as view:
        assert_refused(start(view / "k.db", isolated_env), "Read-only file system")


# -- a disk that fills up while the server runs -------------------------------------


def post(server: ServerProcess, path: str, body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.token}"}
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)


def get(server: ServerProcess, path: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.token}"}
    return httpx.get(f"{server.url}{path}", headers=headers, timeout=30)


def fill(path: Path, leave: int) -> None:
    """Write a filler file until only about `leave` bytes are free."""
    stats = os.statvfs(path.parent)
    free = stats.f_bavail * stats.f_frsize
    with path.open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


@pytest.fixture
def server_on_tmpfs(
    tmp_path: Path, isolated_env: dict[str, str]
) -> Iterator[Callable[[], ServerProcess]]:
    """A real server whose database lives on a 16 MiB tmpfs (mounted for this test)."""
    started: list[ServerProcess] = []
    mount = tmp_path / "small"

    def make() -> ServerProcess:
        server = ServerProcess(
            db_path=mount / "k.db",
            port=free_port(),
            base_env=isolated_env,
            extra_args=["--heartbeat-timeout", "30"],
            log_path=tmp_path / "server.log",
        )
        server.start()
        started.append(server)
        return server

    with small_tmpfs(mount, 16 * 1024):
        yield make
        for server in started:
            server.stop()


def test_a_full_disk_gives_503_then_works_again(
    server_on_tmpfs: Callable[[], ServerProcess], tmp_path: Path
) -> None:
    server = server_on_tmpfs()
    filler = server.db_path.parent / "filler"
    accepted: list[int] = []
    accepted += post(server, "/v1/tasks", {"command": "first"}).json()["ids"]
    fill(filler, leave=256 * 1024)
    batch = {"tasks": [{"command": "x" * 3000} for _ in range(100)]}
    refusals = 0
    for _ in range(50):
        response = post(server, "/v1/tasks", batch)
        if response.status_code == 503:
            refusals += 1
            error = response.json()["error"]
            assert error["code"] == "unavailable" and "disk is full" in error["message"]
            break
        assert response.status_code == 201, response.text
        accepted += response.json()["ids"]
    assert refusals == 1, "the disk never filled up"
    # still up, still answering reads, and it knows exactly what is on disk
    stats = get(server, "/v1/stats").json()
    assert stats["pending"] == len(accepted)
    assert get(server, f"/v1/tasks/{accepted[-1]}").status_code == 200
    # a small write may still fail or pass; it never half-happens (checked after restart)
    # make room: the next batch goes through, numbered right after the last accepted one
    filler.unlink()
    response = post(server, "/v1/tasks", batch)
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    assert ids[0] == accepted[-1] + 1
    accepted += ids
    assert server.stop() == 0
    assert "Traceback" not in server.output()
    assert_projections_match_the_log(server.db_path, tmp_path)
    server.start()  # replays what is on disk: exactly the accepted tasks
    page = get(server, f"/v1/tasks?state=all&limit={len(accepted) + 10}").json()
    assert [t["id"] for t in page["tasks"]] == accepted


def test_a_full_disk_at_start_up_is_a_clear_error(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    mount = tmp_path / "small"
    with small_tmpfs(mount, 4 * 1024):
        db = make_database(mount / "k.db", tasks=10)
        Path(f"{db}.token").write_text("t" * 43 + "\n")
        Path(f"{db}.token").chmod(0o600)
        Path(f"{db}.lock").touch()
        shutil.rmtree(mount / "nothing", ignore_errors=True)
        fill(mount / "filler", leave=0)
        result = start(db, isolated_env)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("error: ") and "full" in result.stderr, result.stderr
