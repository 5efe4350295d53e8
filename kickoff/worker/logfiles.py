"""The worker's log directory: a directory per server (named after the server's database
identity, the `server_id` of its registration), in it one `task-<id>-<attempt>.log` per
attempt, pruned to the newest files (by task id) so that a busy worker does not fill the
disk with small files. Task ids are only unique per server, hence a directory each; and a
file is never truncated or replaced: should a name be taken (a database restored from a
backup hands out ids again), the file gets the next free `task-<id>-<attempt>.<n>.log`.

Making a file can be the dear part of starting a task: on the 2-core bench machine (ext4
without a journal, which skips recently deleted inodes) a new inode cost 100-200 µs of
kernel time, naming an existing one ~8 µs. `LogFiles` therefore keeps a few unnamed files
(O_TMPFILE) made ahead of time, and names one right after a task started; where the
filesystem cannot, it makes each file on the spot. A spare is made on the event loop right
after a task ended, in a callback that runs once the task's report is on its way: the
worker waits for the server's answer anyway. (A thread cost more than the file: a wakeup
each way, and the two threads trading the GIL.)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
from collections.abc import Container, Iterator
from pathlib import Path

from kickoff import defaults

logger = logging.getLogger(__name__)

NAME_RE = re.compile(r"task-(\d+)-(\d+)(?:\.\d+)?\.log")
MAX_SUFFIX = 1000  # task-<id>-<attempt>.<n>.log: the names tried once the plain one is taken
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_MODE = 0o600


def path(log_dir: Path, task_id: int, attempt: int) -> Path:
    """Where an attempt's output goes (unless that name was taken: see `names`)."""
    return log_dir / name(task_id, attempt)


def name(task_id: int, attempt: int, n: int = 0) -> str:
    return f"task-{task_id}-{attempt}.log" if n == 0 else f"task-{task_id}-{attempt}.{n}.log"


def names(task_id: int, attempt: int) -> Iterator[str]:
    """The names an attempt's file may get, in the order they are tried."""
    for n in range(MAX_SUFFIX):
        yield name(task_id, attempt, n)


def create(log_dir: Path, task_id: int, attempt: int) -> int:
    """Open a new, empty log file for the attempt under the first free name.

    Raises:
        OSError: the file cannot be made.
    """
    for filename in names(task_id, attempt):
        try:
            return os.open(log_dir / filename, _FLAGS, _MODE)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "every name is taken", str(path(log_dir, task_id, attempt)))


def _unnamed(log_dir: Path) -> int:
    """A new unnamed file in log_dir (the slow part: a new inode)."""
    return os.open(log_dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, _MODE)


class LogFiles:
    """New log files for a worker's attempts, from a small stock of unnamed ones; `use()`
    moves on to another directory (the worker registered with another server).

    `take()` hands out a descriptor before the spawn; `started()` names a file from the
    stock once the process runs, so that naming never delays a start. `top_up()` refills
    the stock on the event loop, one file per loop iteration: the worker calls it when a
    task ends, so the file is made while it waits for the server anyway, not while a new
    task starts up. `close()` releases the stock (unnamed files vanish with their
    descriptor).
    """

    def __init__(self, log_dir: Path, *, spares: int = defaults.LOG_SPARES) -> None:
        self.log_dir = log_dir
        # Naming an unnamed file takes O_TMPFILE and /proc (linkat through /proc/self/fd).
        usable = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
        self.spares = spares if usable else 0
        self._stock: list[int] = []
        self._topping_up = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dir_fd = -1
        self._made: Path | None = None  # the directory `use` made sure of
        self._closed = False

    def take(self, task_id: int, attempt: int) -> tuple[int, bool]:
        """A descriptor of the attempt's new, empty log file (the caller closes it), and
        whether it is still unnamed: then pass it to `started()` right after the spawn.

        Raises:
            OSError: the file cannot be made.
        """
        if self._stock:
            return self._stock.pop(), True
        self.top_up()  # ran dry: many tasks at once
        return create(self.log_dir, task_id, attempt), False

    def use(self, log_dir: Path) -> None:
        """Make files in log_dir from now on (made if need be, private to the user).

        Raises:
            OSError: the directory cannot be made.
        """
        if log_dir == self._made:
            return
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._made = log_dir
        self._release()  # unnamed files are made in the directory they are named in
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
        self.log_dir = log_dir
        self.top_up()

    def started(self, fd: int, task_id: int, attempt: int, *, unnamed: bool) -> None:
        """After the spawn: give a file from the stock its name."""
        if not unnamed:
            return
        try:
            self._name(fd, task_id, attempt)
        except OSError as exc:  # the output still reaches the tail, just no file
            logger.warning(
                "the log file of task=%d attempt=%d got no name: %s", task_id, attempt, exc
            )
            self._give_up(exc)

    def _name(self, fd: int, task_id: int, attempt: int) -> None:
        """Link an unnamed file into the log directory under the attempt's first free name
        (a file already there is never touched).

        Raises:
            OSError: it cannot be named.
        """
        if self._dir_fd < 0:
            self._dir_fd = os.open(self.log_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        # os.link calls linkat(..., AT_SYMLINK_FOLLOW) only when given a dir fd; following
        # /proc/self/fd/N is how an O_TMPFILE file gets a name without privileges.
        source = f"/proc/self/fd/{fd}"
        for filename in names(task_id, attempt):
            try:
                os.link(source, filename, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
                return
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "every name is taken", name(task_id, attempt))

    def top_up(self) -> None:
        """Refill the stock, a file per event loop iteration, starting once the caller's
        step is over (a task ended: its report is sent first)."""
        if not self.spares or self._topping_up or self._closed:
            return
        if len(self._stock) >= self.spares:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._topping_up = True
        self._loop.call_soon(self._make_one)

    def _make_one(self) -> None:
        self._topping_up = False
        if self._closed or not self.spares:
            return
        try:
            fd = _unnamed(self.log_dir)
        except OSError as exc:
            self._give_up(exc)
            return
        self._stock.append(fd)
        self.top_up()

    def _give_up(self, exc: BaseException) -> None:
        """Make every file on the spot from now on (no O_TMPFILE here, say)."""
        if self.spares:
            logger.debug("making each log file on the spot in %s: %s", self.log_dir, exc)
            self.spares = 0
            self._release()

    def _release(self) -> None:
        while self._stock:
            os.close(self._stock.pop())

    def close(self) -> None:
        self._closed = True
        self._release()
        if self._dir_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._dir_fd)
            self._dir_fd = -1


def prune(log_dir: Path, *, keep: int, protect: Container[tuple[int, int]] = ()) -> int:
    """Delete all but the `keep` newest task log files; returns how many were deleted.

    Newest means the highest (task id, attempt): ids grow in submission order. Files of
    the attempts in `protect` (running here) and files not named like task logs stay.
    """
    found: list[tuple[int, int, str]] = []
    with os.scandir(log_dir) as entries:
        for entry in entries:
            match = NAME_RE.fullmatch(entry.name)
            if match:
                found.append((int(match[1]), int(match[2]), entry.name))
    if len(found) <= keep:
        return 0
    found.sort()
    deleted = 0
    for task_id, attempt, filename in found[: len(found) - keep]:
        if (task_id, attempt) in protect:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log_dir / filename)
            deleted += 1
    return deleted
