"""The log directory: files made ahead of time (unnamed, O_TMPFILE) and named when a task
starts, the on-the-spot fallback, and pruning."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from kickoff.worker import logfiles
from kickoff.worker.logfiles import LogFiles


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def open_log(files: LogFiles, task_id: int, attempt: int) -> int:
    """What a job does: take a descriptor, spawn (not here), then have it named."""
    fd, unnamed = files.take(task_id, attempt)
    files.started(fd, task_id, attempt, unnamed=unnamed)
    return fd


async def stocked(files: LogFiles) -> LogFiles:
    files.top_up()
    for _ in range(500):
        if files._stock or not files.spares:
            break
        await asyncio.sleep(0.01)
    return files


def test_files_made_ahead_are_named_when_taken(tmp_path: Path) -> None:
    async def scenario() -> list[Path]:
        files = await stocked(LogFiles(tmp_path, spares=4))
        assert files._stock, "no O_TMPFILE on this filesystem?"
        assert list(tmp_path.iterdir()) == []  # the stock has no names
        taken = []
        for task_id in range(1, 7):  # more than the stock: topped up, or made on the spot
            fd = open_log(files, task_id, 2)
            os.write(fd, f"output {task_id}\n".encode())
            os.close(fd)
            taken.append(logfiles.path(tmp_path, task_id, 2))
        files.close()
        return taken

    for task_id, path in enumerate(asyncio.run(scenario()), start=1):
        assert path.read_text() == f"output {task_id}\n"
        assert path.stat().st_mode & 0o777 == 0o600
    assert len(list(tmp_path.iterdir())) == 6


def test_a_file_from_the_stock_is_named_only_once_started(tmp_path: Path) -> None:
    async def scenario() -> None:
        files = await stocked(LogFiles(tmp_path))
        fd, unnamed = files.take(8, 1)
        assert unnamed and list(tmp_path.iterdir()) == []
        os.write(fd, b"early output\n")  # the task may write before the file has a name
        files.started(fd, 8, 1, unnamed=unnamed)
        os.close(fd)
        files.close()

    asyncio.run(scenario())
    assert logfiles.path(tmp_path, 8, 1).read_text() == "early output\n"


@pytest.mark.parametrize("spares", [8, 0])  # named from the stock, or made on the spot
def test_a_file_of_the_same_name_is_never_truncated_or_replaced(
    tmp_path: Path, spares: int
) -> None:
    """Say a database restored from a backup hands out task 3 again: both outputs stay."""
    old = logfiles.path(tmp_path, 3, 1)
    old.write_text("an older run's output\n")
    (tmp_path / "task-3-1.1.log").write_text("and another\n")

    async def scenario() -> None:
        files = await stocked(LogFiles(tmp_path, spares=spares))
        fd = open_log(files, 3, 1)
        os.write(fd, b"this run\n")
        assert os.fstat(fd).st_size == len(b"this run\n")
        os.close(fd)
        files.close()

    asyncio.run(scenario())
    assert old.read_text() == "an older run's output\n"
    assert (tmp_path / "task-3-1.1.log").read_text() == "and another\n"
    assert (tmp_path / "task-3-1.2.log").read_text() == "this run\n"


def test_use_moves_on_to_another_directory(tmp_path: Path) -> None:
    async def scenario() -> None:
        files = await stocked(LogFiles(tmp_path))
        files.use(tmp_path / "0123456789abcdef")
        await asyncio.sleep(0.05)  # the stock, made again in the new directory
        os.close(open_log(files, 1, 1))
        files.close()

    asyncio.run(scenario())
    assert (tmp_path / "0123456789abcdef" / "task-1-1.log").exists()
    assert not logfiles.path(tmp_path, 1, 1).exists()


def test_close_releases_the_stock(tmp_path: Path) -> None:
    before = open_fds()

    async def scenario() -> None:
        files = await stocked(LogFiles(tmp_path, spares=6))
        assert len(open_fds() - before) >= 3
        files.close()

    asyncio.run(scenario())
    assert open_fds() - before == set()


def test_files_are_made_with_their_name_once_naming_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_proc(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", "/proc/self/fd/9")

    async def scenario() -> None:
        files = await stocked(LogFiles(tmp_path))
        monkeypatch.setattr(os, "link", no_proc)
        for task_id in (1, 2):
            fd, unnamed = files.take(task_id, 1)
            files.started(fd, task_id, 1, unnamed=unnamed)
            os.close(fd)
        assert files.spares == 0 and files._stock == []
        files.close()

    asyncio.run(scenario())
    # the first came from the stock and stays unnamed; the second was made with its name
    assert [p.name for p in tmp_path.iterdir()] == ["task-2-1.log"]


def test_without_spares_each_file_is_made_on_the_spot(tmp_path: Path) -> None:
    async def scenario() -> None:
        files = LogFiles(tmp_path, spares=0)
        files.top_up()
        os.close(open_log(files, 5, 1))
        assert files._stock == []
        files.close()

    asyncio.run(scenario())
    assert [p.name for p in tmp_path.iterdir()] == ["task-5-1.log"]


def test_a_missing_log_directory_is_an_os_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        files = LogFiles(tmp_path / "missing")
        files.top_up()
        with pytest.raises(OSError):
            open_log(files, 1, 1)
        await asyncio.sleep(0.05)
        files.close()

    asyncio.run(scenario())
