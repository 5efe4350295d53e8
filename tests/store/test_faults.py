"""Storage faults: a truncated, corrupted, foreign, newer or read-only database is refused
with a clear DatabaseRefused; a write that fails (a full disk, an I/O error) writes
nothing, the API answers 503, the live state is rebuilt from the log, and the next
request after the fault is gone works.

The full disk here is real SQLite behaviour (`PRAGMA max_page_count` makes SQLite return
SQLITE_FULL exactly as on a full file system); tests/e2e/test_security_storage.py does the
same with a real, small tmpfs. Read-only cases need root (tests run as root, where chmod
stops nothing): an immutable file (`chattr +i`) and a read-only bind mount.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from kickoff.api.app import create_app
from kickoff.database import SCHEMA_VERSION, Database
from kickoff.database import open_connection as connect
from kickoff.errors import DatabaseRefused, Unavailable
from kickoff.events import model as ev
from kickoff.projections.rebuild import rebuild
from kickoff.service import Service
from kickoff.store.chain import Recorded
from kickoff.store.connection import APPLICATION_ID, lock_exclusive
from kickoff.store.sqlite import SqliteRecorder
from tests.api.conftest import TOKEN, Api, FakeClock

AT = datetime(2026, 1, 1, tzinfo=UTC)

# -- helpers shared with the e2e storage tests (no test_ names here) ---------------


def run_root_tool(*args: str) -> None:
    """Run mount/umount/chattr; skip the test when this machine does not allow it."""
    if os.geteuid() != 0 or shutil.which(args[0]) is None:
        pytest.skip(f"needs root and {args[0]}")
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"{' '.join(args)} not possible here: {result.stderr.strip()}")


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """`chattr +i`: not even root may write it (chmod stops nothing for root)."""
    run_root_tool("chattr", "+i", str(path))
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


@contextlib.contextmanager
def readonly_view(source: Path, target: Path) -> Iterator[Path]:
    """`source` seen through a read-only bind mount at `target`."""
    target.mkdir(parents=True, exist_ok=True)
    run_root_tool("mount", "--bind", "-o", "ro", str(source), str(target))
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@contextlib.contextmanager
def small_tmpfs(target: Path, size_kib: int) -> Iterator[Path]:
    """A real file system of `size_kib` KiB at `target`: it fills up for real."""
    target.mkdir(parents=True, exist_ok=True)
    run_root_tool("mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(target))
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def make_database(path: Path, tasks: int = 400) -> Path:
    """A closed kickoff database with `tasks` submitted tasks (a few hundred KiB)."""
    db = Database(path)
    db.write(
        [
            Recorded(i, AT, ev.TaskSubmitted(task_id=i, command="x" * 300))
            for i in range(1, tasks + 1)
        ]
    )
    db.close()
    return path


def open_and_load(path: Path) -> None:
    """What the server does at start-up."""
    db = Database(path)
    try:
        db.load()
    finally:
        db.close()


def projection_rows(conn: sqlite3.Connection) -> list[object]:
    return [
        conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        for table in ("tasks", "workers", "task_counts", "projection_state")
    ]


def assert_projections_match_the_log(path: Path, tmp_path: Path) -> None:
    """No half-written change: the projections equal a rebuild from the log alone."""
    live = sqlite3.connect(path)
    copy_path = tmp_path / "rebuilt.db"
    copy = sqlite3.connect(copy_path, isolation_level=None)
    live.backup(copy)
    rebuild(copy, SqliteRecorder(copy))
    try:
        assert projection_rows(live) == projection_rows(copy)
    finally:
        live.close()
        copy.close()


@pytest.fixture
def good_db(tmp_path: Path) -> Path:
    return make_database(tmp_path / "good.db")


def mutated(tmp_path: Path, good_db: Path, name: str, change: Callable[[Path], None]) -> Path:
    path = tmp_path / name
    shutil.copy(good_db, path)
    change(path)
    return path


# -- refused at start-up --------------------------------------------------------


@pytest.mark.parametrize("keep", [5, 50, 100, 4096, "half", "all but one page", "all but one byte"])
def test_a_truncated_database_is_refused(tmp_path: Path, good_db: Path, keep: object) -> None:
    size = good_db.stat().st_size
    cut = {"half": size // 2, "all but one page": size - 4096, "all but one byte": size - 1}
    length = cut.get(str(keep), keep)
    assert isinstance(length, int)

    def truncate(path: Path) -> None:
        os.truncate(path, length)

    path = mutated(tmp_path, good_db, "cut.db", truncate)
    with pytest.raises(DatabaseRefused, match="truncated") as caught:
        open_and_load(path)
    assert str(path) in caught.value.message
    assert os.path.getsize(path) == length  # reported, not repaired


def scribble(start: int, end: int | None = None) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        data = bytearray(path.read_bytes())
        stop = len(data) if end is None else end
        rng = random.Random(start)
        data[start:stop] = rng.randbytes(stop - start)
        path.write_bytes(bytes(data))

    return change


@pytest.mark.parametrize(
    ("where", "change", "message"),
    [
        ("the header", scribble(16, 100), "not a SQLite database"),
        ("page 1 (the schema)", scribble(100, 4096), "damaged"),
        ("every page after the first", scribble(4096), "damaged"),
    ],
)
def test_a_corrupted_database_is_refused(
    tmp_path: Path, good_db: Path, where: str, change: Callable[[Path], None], message: str
) -> None:
    path = mutated(tmp_path, good_db, "bad.db", change)
    before = path.read_bytes()
    with pytest.raises(DatabaseRefused, match=message):
        open_and_load(path)
    assert path.read_bytes() == before  # not silently repaired


def test_a_corrupted_event_is_refused_by_a_full_replay(tmp_path: Path, good_db: Path) -> None:
    """Start-up loads the projections' checkpoint, which does not read old events; a full
    replay (and `kickoff verify`) reads every one, and refuses a damaged page."""
    conn = sqlite3.connect(good_db)
    pages = [p for (p,) in conn.execute("SELECT pageno FROM dbstat WHERE name = 'events'")]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    page = pages[len(pages) // 2]
    path = mutated(tmp_path, good_db, "bad.db", scribble((page - 1) * page_size, page * page_size))
    db = Database(path)
    try:
        with pytest.raises(DatabaseRefused, match=r"damaged|does not fold|cannot read"):
            db.replay()
    finally:
        db.close()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("shopping list: eggs, milk\n" * 100)
    with pytest.raises(DatabaseRefused, match="not a SQLite database"):
        open_and_load(path)
    assert path.read_text().startswith("shopping list")


def test_another_programs_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(DatabaseRefused, match="not a kickoff database"):
        open_and_load(path)
    assert path.read_bytes() == before  # not even switched to WAL mode
    assert not Path(f"{path}-wal").exists()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("photos",)]
    conn.close()


def test_a_database_from_a_newer_kickoff_is_refused(tmp_path: Path, good_db: Path) -> None:
    def newer(path: Path) -> None:
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
        conn.close()

    path = mutated(tmp_path, good_db, "newer.db", newer)
    with pytest.raises(DatabaseRefused, match=r"newer than this kickoff knows.*upgrade"):
        open_and_load(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


def test_an_immutable_database_file_is_refused_at_once(tmp_path: Path, good_db: Path) -> None:
    """SQLite would open it read-only without a word and fail at the first event."""
    with immutable(good_db), pytest.raises(DatabaseRefused, match="read-only"):
        open_and_load(good_db)


def test_a_database_on_a_read_only_mount_is_refused(tmp_path: Path, good_db: Path) -> None:
    with readonly_view(good_db.parent, tmp_path / "ro") as view:
        with pytest.raises(DatabaseRefused, match="cannot open"):
            open_and_load(view / good_db.name)
        with pytest.raises(DatabaseRefused, match=r"cannot create .*Read-only file system"):
            open_and_load(view / "new.db")  # not even a new one


def test_readonly_open_still_works_on_a_read_only_copy(tmp_path: Path, good_db: Path) -> None:
    """The offline tools open read-only; a path with URI characters is no problem."""
    odd = tmp_path / "odd?name#1%.db"
    shutil.copy(good_db, odd)
    conn = connect(odd, readonly=True)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 400
    conn.close()


def test_a_second_server_on_the_same_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    fd = lock_exclusive(path)
    try:
        code = (
            "import sys; from pathlib import Path\n"
            "from kickoff.store.connection import lock_exclusive\n"
            "from kickoff.errors import DatabaseRefused\n"
            f"try: lock_exclusive(Path({str(path)!r}))\n"
            "except DatabaseRefused as e: print(e.message); sys.exit(1)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert result.returncode == 1
        assert "in use by another kickoff server" in result.stdout
    finally:
        os.close(fd)
    os.close(lock_exclusive(path))  # free again once the first one let go


# -- a write that fails writes nothing ------------------------------------------


def events_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def test_a_failure_inside_the_transaction_leaves_nothing_and_the_next_write_works(
    tmp_path: Path,
) -> None:
    """A failure after the events went in but before the projections did (simulated with a
    trigger on this connection only): the whole transaction goes, and the log's in-memory
    tail goes back with it, so the same seqs can be written again."""
    db = Database(tmp_path / "k.db")
    db.write([Recorded(1, AT, ev.TaskSubmitted(task_id=1, command="a"))])
    db.conn.execute(
        "CREATE TEMP TRIGGER fail BEFORE INSERT ON main.tasks "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END"
    )
    batch = [Recorded(2, AT, ev.TaskSubmitted(task_id=2, command="b"))]
    with pytest.raises(Unavailable, match="disk I/O error"):
        db.write(batch)
    assert events_count(db.conn) == 1
    assert not db.conn.in_transaction
    db.conn.execute("DROP TRIGGER fail")
    db.write(batch)
    assert events_count(db.conn) == 2
    db.close()
    assert_projections_match_the_log(tmp_path / "k.db", tmp_path)


def test_a_full_disk_leaves_nothing_and_the_next_write_works(tmp_path: Path) -> None:
    path = make_database(tmp_path / "k.db", tasks=10)
    db = Database(path)
    pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
    db.conn.execute(f"PRAGMA max_page_count = {pages}")
    big = [Recorded(i, AT, ev.TaskSubmitted(task_id=i, command="y" * 2000)) for i in range(11, 211)]
    with pytest.raises(Unavailable, match="disk is full"):
        db.write(big)
    assert events_count(db.conn) == 10
    assert db.recorder.last_seq == 10 or db._tail_stale
    db.conn.execute(f"PRAGMA max_page_count = {pages * 1000}")
    db.write(big)
    assert events_count(db.conn) == 210
    db.close()
    assert_projections_match_the_log(path, tmp_path)


# -- the running service: 503, rebuilt state, and back to work --------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """The app in-process on its own database (as tests/api's fixture of the same name)."""
    clock = FakeClock()
    db_path = tmp_path / "api.db"
    # Expiry runs only when a test calls it, so that nothing writes behind a test's back.
    service = Service(db_path, clock=clock, heartbeat_timeout_s=30, expire_every_s=3600)
    app = create_app(service, token=TOKEN)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield Api(client, service, clock, db_path)


def fill_disk(api: Api) -> int:
    """Cap the writer's database at its current size: the next page it needs is refused
    with SQLITE_FULL, as on a full disk. Returns the cap."""
    conn = api.service.recording.db.conn
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    conn.execute(f"PRAGMA max_page_count = {pages}")
    return pages


def free_disk(api: Api) -> None:
    api.service.recording.db.conn.execute("PRAGMA max_page_count = 1073741823")


def snapshot(api: Api) -> tuple[int, int, object, object]:
    """What must not change across a failed write: last seq (memory and disk), task count
    on disk, and the live state's counts."""
    on_disk = sqlite3.connect(api.db_path)
    try:
        last = on_disk.execute("SELECT max(seq) FROM events").fetchone()[0]
        tasks = on_disk.execute("SELECT count(*) FROM tasks").fetchone()[0]
    finally:
        on_disk.close()
    assert api.service.last_seq == last
    return last, tasks, dict(api.service.state.counts), sorted(api.service.state.tasks)


def test_full_disk_gives_503_and_nothing_half_done(api: Api, tmp_path: Path) -> None:
    worker = api.register("cpu")
    first = api.submit(command="before", require=["cpu"])
    before = snapshot(api)
    fill_disk(api)
    batch = {"tasks": [{"command": "z" * 4000, "require": ["cpu"]} for _ in range(300)]}
    response = api.client.post("/v1/tasks", json=batch)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "unavailable" and "disk is full" in error["message"]
    assert snapshot(api) == before  # memory rebuilt from the log, disk untouched
    # reads still work while the disk is full
    assert api.client.get(f"/v1/tasks/{first}").json()["state"] == "pending"
    assert api.client.get("/v1/stats").json()["last_seq"] == before[0]
    # the pending task is still there to claim once there is room again
    free_disk(api)
    assert [t["task_id"] for t in api.claim(worker)] == [first]
    ids = api.client.post("/v1/tasks", json=batch).json()["ids"]
    assert len(ids) == 300 and ids[0] == first + 1  # no id was used up by the failure
    assert_projections_match_the_log(api.db_path, tmp_path)


def test_a_claim_that_cannot_be_written_leaves_the_task_pending(api: Api) -> None:
    worker, busy = api.register(), api.register(name="busy")
    held = api.submit(command="held")
    api.claim(busy)  # a busy worker: each of its heartbeats is an event
    task_id = api.submit(command="x" * 60_000)
    fill_disk(api)
    # fill the last free bytes of the file with events until a write is refused
    for _ in range(1000):
        response = api.client.post(f"/v1/workers/{busy}/heartbeat", json={"running": [[held, 1]]})
        if response.status_code == 503:
            break
        assert response.status_code == 200
    else:
        pytest.fail("the capped database never filled up")
    response = api.client.post(f"/v1/workers/{worker}/claim", json={"wait_s": 0})
    assert response.status_code == 503
    assert api.service.state.tasks[task_id].state == "pending"
    free_disk(api)
    assert [t["task_id"] for t in api.claim(worker)] == [task_id]
    assert api.client.get(f"/v1/tasks/{task_id}").json()["attempt"] == 1


def test_heartbeats_refused_by_a_full_disk_do_not_cost_a_worker_its_lease(api: Api) -> None:
    def expire() -> int:
        return int(api.client.portal.call(api.service.expire))  # type: ignore[union-attr]

    beating, silent = api.register(name="beating"), api.register(name="silent")
    api.submit(command="a")
    api.submit(command="b")
    api.claim(beating)
    api.claim(silent)
    fill_disk(api)
    for _ in range(1000):  # fill the last free bytes until a heartbeat is refused
        beat = api.client.post(f"/v1/workers/{beating}/heartbeat", json={"running": []})
        if beat.status_code == 503:
            break
    else:
        pytest.fail("the capped database never filled up")
    api.clock.advance(45)  # longer than the heartbeat timeout, all of it with a full disk
    assert expire() == 0  # nothing is decided while writes fail
    free_disk(api)
    assert expire() == 0  # nor before a write has gone through again
    beat = api.client.post(f"/v1/workers/{beating}/heartbeat", json={"running": [[1, 1]]})
    assert beat.status_code == 200
    assert expire() == 1  # the lease restart: a ServerStarted, as after a restart
    assert expire() == 0
    assert set(api.service.state.workers) == {beating, silent}
    api.clock.advance(31)  # a worker that stays silent is still lost in the end
    api.client.post(f"/v1/workers/{beating}/heartbeat", json={"running": [[1, 1]]})
    assert expire() > 0
    assert set(api.service.state.workers) == {beating}
