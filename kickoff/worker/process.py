"""One attempt of one task as an OS process: `/bin/sh -c CMD` in its own session, output
to a log file, the exit status as a shell reports it, TERM -> KILL of the whole process
group, and the output tail. No HTTP here; the loop decides when to stop a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kickoff import defaults
from kickoff.resources import show
from kickoff.worker import logfiles
from kickoff.worker.warden import RUN_VAR

logger = logging.getLogger(__name__)

SHELL = "/bin/sh"
# Signals a task starts with at their default action, whatever the worker ignores (Python
# ignores SIGPIPE; a worker started with `nohup` or `&` ignores SIGHUP or SIGINT).
_DEFAULT_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
SPAWN_FAILED_EXIT = 127  # what a shell reports for a command it cannot start
LOST_STATUS = 255 << 8  # the wait status reported when the exit status is unknown
# The worker's own secrets: a task runs someone's command, and must not be able to act as
# the worker (claim, complete, cancel) with its token.
WORKER_ONLY_ENV = ("KICKOFF_TOKEN",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """A claimed task, validated: what the worker was asked to run."""

    task_id: int
    attempt: int
    command: str
    timeout_s: float | None = None
    array_index: int | None = None  # KICKOFF_ARRAY_INDEX, for a task of an array
    cwd: str | None = None  # where to run it (None: the worker's own directory)
    env: tuple[tuple[str, str], ...] = ()  # set on top of the worker's environment
    resources: tuple[tuple[str, int], ...] = ()  # what the attempt holds (KICKOFF_RESOURCES)
    gpu_ids: tuple[int, ...] = ()  # the devices it holds (CUDA_VISIBLE_DEVICES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How an attempt ended, as reported to the server."""

    exit_code: int
    duration_s: float
    output_tail: str
    timed_out: bool = False
    cancelled: bool = False
    scratch_dir: str | None = None  # where it ran instead of its missing directory


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N after signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def read_tail(fd: int, limit: int = defaults.OUTPUT_TAIL_BYTES) -> str:
    """The last `limit` bytes of an open file, decoded as UTF-8 with replacement.

    Most outputs are short: one read from the start gets all of it (and says so by
    coming back short); only a longer file costs a stat and a second read.
    """
    data = os.pread(fd, limit + 1, 0)
    if len(data) > limit:
        size = os.fstat(fd).st_size
        start = max(0, size - limit)
        data = os.pread(fd, size - start, start)
    # NUL as U+FFFD, as an undecodable byte: the server refuses a tail that holds NUL (it
    # goes into the log as text), and a refused report would leave the task running
    return data.decode("utf-8", errors="replace").replace("\0", "\ufffd")


class TaskEnv:
    """The environment tasks start with: the worker's own without its credentials, made
    once (as bytes, ready for the spawn) and copied per attempt with its ids added.

    `run` marks every task of one worker process (`KICKOFF_WORKER_RUN`): its warden finds
    a task's processes by it, and by the task's id and attempt, should the worker die.
    `gpus`: the worker hands out GPUs, so a task sees only those it holds (none if it
    asked for none: CUDA_VISIBLE_DEVICES is then empty).
    """

    def __init__(
        self, env: Mapping[str, str], *, run: str | None = None, gpus: bool = False
    ) -> None:
        self.base = {
            os.fsencode(name): os.fsencode(value)
            for name, value in env.items()
            if name not in WORKER_ONLY_ENV
        }
        if run is not None:
            self.base[RUN_VAR.encode()] = run.encode()
        self.gpus = gpus

    def for_attempt(
        self,
        task_id: int,
        attempt: int,
        worker_id: str,
        array_index: int | None = None,
        extra: tuple[tuple[str, str], ...] = (),
        resources: tuple[tuple[str, int], ...] = (),
        gpu_ids: tuple[int, ...] = (),
    ) -> dict[bytes, bytes]:
        """The environment of one attempt: the worker's, the task's own variables over it
        (`extra`, from its submission), and the attempt's ids and holdings over both:
        KICKOFF_RESOURCES (`gpu=2,mem=16G`, empty for none), and on a worker with GPUs
        KICKOFF_GPU_IDS and CUDA_VISIBLE_DEVICES (`1,3`)."""
        env = self.base.copy()
        for name, value in extra:
            if name not in WORKER_ONLY_ENV:  # the server refuses them; a worker trusts no one
                env[os.fsencode(name)] = os.fsencode(value)
        env[b"KICKOFF_TASK_ID"] = b"%d" % task_id
        env[b"KICKOFF_ATTEMPT"] = b"%d" % attempt
        env[b"KICKOFF_WORKER"] = worker_id.encode()
        if array_index is not None:
            env[b"KICKOFF_ARRAY_INDEX"] = b"%d" % array_index
        env[b"KICKOFF_RESOURCES"] = show(resources).encode()
        if self.gpus or gpu_ids:
            devices = ",".join(map(str, gpu_ids)).encode()
            env[b"KICKOFF_GPU_IDS"] = env[b"CUDA_VISIBLE_DEVICES"] = devices
        return env


class _Reaper:
    """Watches the processes of one event loop through one epoll set of their pidfds,
    itself a single reader of the loop: starting and reaping a process then costs
    `pidfd_open`, one `epoll_ctl` and a `close`, not a reader added and removed per
    process (which an event loop pays for in several system calls)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.watched: dict[int, Process] = {}  # by pidfd
        loop.add_reader(self.epoll.fileno(), self._ready)

    def watch(self, pidfd: int, process: Process) -> None:
        self.epoll.register(pidfd, select.EPOLLIN)
        self.watched[pidfd] = process

    def forget(self, pidfd: int) -> None:
        """Stop watching (closing the pidfd takes it out of the epoll set)."""
        self.watched.pop(pidfd, None)

    def _ready(self) -> None:
        if len(self.watched) == 1:  # the usual single slot: no need to ask which one
            for process in list(self.watched.values()):
                process._reap()
            return
        for pidfd, _ in self.epoll.poll(0):
            found = self.watched.get(pidfd)
            if found is None:  # not ours any more (cannot happen once it is closed)
                with contextlib.suppress(OSError):
                    self.epoll.unregister(pidfd)
                continue
            found._reap()

    def close(self) -> None:
        if not self.loop.is_closed():
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.epoll.fileno())
        self.epoll.close()


_reapers: dict[asyncio.AbstractEventLoop, _Reaper] = {}


def _reaper(loop: asyncio.AbstractEventLoop) -> _Reaper:
    """The reaper of a loop (made on first use; those of closed loops are let go)."""
    reaper = _reapers.get(loop)
    if reaper is None:
        for old in [old for old in _reapers if old.is_closed()]:
            _reapers.pop(old).close()
        reaper = _reapers[loop] = _Reaper(loop)
    return reaper


def scratch_note(asked: str, scratch: str) -> bytes:
    """The first line of an attempt's output when its directory is missing here."""
    return (
        f"kickoff worker: the directory {asked} does not exist on this worker; "
        f"running in the empty scratch directory {scratch}\n"
    ).encode("utf-8", "surrogateescape")


def make_scratch(task_id: int, attempt: int) -> str:
    """A fresh, empty, private directory for one attempt (kept afterwards: it may hold
    the results; the system's temporary directory is cleaned by the system).

    Raises:
        OSError: it cannot be made.
    """
    return tempfile.mkdtemp(prefix=f"kickoff-task-{task_id}-{attempt}-")


class _Chdir:
    """Spawn a process in another directory: posix_spawn takes no directory (Python's has
    no POSIX_SPAWN_CHDIR), and forking a subprocess costs ten times the spawn. So the
    worker changes its own directory for the spawn and goes back by a descriptor of its
    own. The event loop's thread does both with nothing between them; the worker's
    other threads (name lookups) use no relative paths."""

    home = -1  # a descriptor of the worker's own directory, opened on first use

    @classmethod
    def enter(cls, path: str) -> None:
        """Raises: OSError (FileNotFoundError, NotADirectoryError, PermissionError)."""
        if cls.home < 0:
            cls.home = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        os.chdir(path)

    @classmethod
    def leave(cls) -> None:
        os.fchdir(cls.home)


def seal_inherited_fds() -> None:
    """Make every descriptor above stderr close-on-exec, so that tasks never inherit them.

    Python opens its own files close-on-exec; this covers what the worker itself inherited
    (a pipe of the shell or test harness that started it), as `close_fds=True` would.
    """
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2:
                with contextlib.suppress(OSError):
                    os.set_inheritable(fd, False)


class Process:
    """A running `/bin/sh -c CMD`, leader of its own session and process group."""

    def __init__(
        self, pid: int, log_fd: int, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.pid = pid
        self.log_fd = log_fd
        self.loop = loop = loop or asyncio.get_running_loop()
        self.exited: asyncio.Future[int] = loop.create_future()  # the wait status
        self._pidfd = -1
        self._reaper: _Reaper | None = None
        self._watch(loop)

    @classmethod
    def start(
        cls,
        command: str,
        *,
        env: Mapping[str, str] | Mapping[bytes, bytes],
        log_fd: int,
        loop: asyncio.AbstractEventLoop | None = None,
        cwd: str | None = None,
    ) -> Process:
        """Spawn the command with stdin from /dev/null and stdout+stderr to log_fd (which
        the Process then owns: `close()` closes it, and so does a failed start), in `cwd`
        (None: the worker's own directory).

        Raises:
            OSError: the shell cannot be started, or cwd cannot be entered.
            ValueError: the command or environment holds a NUL byte.
        """
        try:
            if cwd is not None:
                _Chdir.enter(cwd)
            try:
                pid = cls._spawn(command, env, log_fd)
            finally:
                if cwd is not None:
                    _Chdir.leave()
        except BaseException:
            os.close(log_fd)
            raise
        return cls(pid, log_fd, loop)

    @staticmethod
    def _spawn(command: str, env: Mapping[str, str] | Mapping[bytes, bytes], log_fd: int) -> int:
        return os.posix_spawn(
            SHELL,
            [SHELL, "-c", command],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
            setsigdef=_DEFAULT_SIGNALS,
            setsigmask=(),
        )

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Resolve `exited` when the process ends: a pidfd in the loop's reaper, no thread."""
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: wait in a thread instead
            waiter = loop.run_in_executor(None, os.waitpid, self.pid, 0)
            waiter.add_done_callback(self._waited)
            return
        self._reaper = _reaper(loop)
        self._reaper.watch(self._pidfd, self)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else (a waitpid(-1) elsewhere)
            pid, status = self.pid, LOST_STATUS
        if pid == 0:  # readable but not yet reapable: wait for the next wakeup
            return
        self._unwatch()
        if not self.exited.done():
            self.exited.set_result(status)

    def _waited(self, waiter: asyncio.Future[tuple[int, int]]) -> None:
        if not self.exited.done():
            self.exited.set_result(waiter.result()[1])

    def signal_group(self, sig: int) -> bool:
        """Send sig to the process group; False when no process of it is left."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        except PermissionError:  # the group's id was reused by someone else's process
            return False
        return True

    async def terminate(self, grace_s: float) -> None:
        """SIGTERM the group, SIGKILL it after grace_s, and wait for the leader to end."""
        self.signal_group(signal.SIGTERM)
        self.signal_group(signal.SIGCONT)  # a stopped process gets the TERM only once woken
        # asyncio.wait, not wait_for: 3.11's wait_for can swallow a cancel that arrives as
        # the process ends, and the cancelled job would then go on to report
        done, _ = await asyncio.wait([self.exited], timeout=grace_s)
        if not done:
            logger.info("escalating to SIGKILL pid=%d after %.1fs", self.pid, grace_s)
        # Also when the leader obeyed: children that ignored the TERM must not outlive it.
        self.signal_group(signal.SIGKILL)
        await self.exited

    def tail(self) -> str:
        return read_tail(self.log_fd)

    def _unwatch(self) -> None:
        if self._pidfd < 0:
            return
        if self._reaper is not None:
            self._reaper.forget(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1

    def close(self) -> None:
        """Release the log file (and the pidfd, if the process was never reaped)."""
        self._unwatch()
        if self.log_fd >= 0:
            os.close(self.log_fd)
            self.log_fd = -1


class Job:
    """One attempt of a task on this worker: its process, its timeout, why it was stopped."""

    def __init__(
        self,
        assignment: Assignment,
        *,
        worker_id: str,
        log_dir: Path,
        env: Mapping[str, str] | TaskEnv,
        grace_s: float = defaults.CANCEL_GRACE_S,
        log_files: logfiles.LogFiles | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        keep_output: bool = False,
    ) -> None:
        self.assignment = assignment
        self.keep_output = keep_output  # run() leaves output_fd open: close_output() closes it
        self.worker_id = worker_id
        self.log_dir = log_dir
        self.env = env
        self.grace_s = grace_s
        self.log_files = log_files
        self.loop = loop  # the running loop (looked up when not given)
        self.process: Process | None = None
        self.cancelled = False  # stopped because the server (or Ctrl-C twice) said so
        self.timed_out = False
        self.abandoned = False  # its registration is gone: nobody will take its report
        self._started_at: float | None = None
        self.scratch_dir: str | None = None  # where it runs instead of its missing cwd
        self._failed: Outcome | None = None  # why it never started
        self._stopping: asyncio.Task[None] | None = None
        # What the server has of its output (kickoff/worker/output.py): bytes sent, whether
        # it keeps no more (the cap) or takes none (the attempt is over there)
        self.output_sent = 0
        self.output_capped = False
        self.output_refused = False
        # its log file once the process ended, kept open until the last output is sent
        self.output_fd = -1

    @property
    def task_id(self) -> int:
        return self.assignment.task_id

    @property
    def attempt(self) -> int:
        return self.assignment.attempt

    @property
    def key(self) -> tuple[int, int]:
        return (self.assignment.task_id, self.assignment.attempt)

    def task_env(self) -> dict[bytes, bytes]:
        """The worker's environment without its credentials, plus the task's own ids."""
        env = self.env if isinstance(self.env, TaskEnv) else TaskEnv(self.env)
        a = self.assignment
        return env.for_attempt(
            a.task_id, a.attempt, self.worker_id, a.array_index, a.env, a.resources, a.gpu_ids
        )

    def start(self) -> None:
        """Spawn the command now, on the caller's stack (once; never after a stop)."""
        if self._started_at is not None:
            return
        self._started_at = time.monotonic()
        a = self.assignment
        if self.cancelled:  # stopped before it started: never run it
            self._failed = Outcome(
                exit_code=128 + signal.SIGTERM,
                duration_s=0.0,
                output_tail="kickoff worker: stopped before it started\n",
                cancelled=True,
            )
            return
        files = self.log_files
        try:
            env = self.task_env()
            log_fd, unnamed = (
                files.take(a.task_id, a.attempt)
                if files is not None
                else (logfiles.create(self.log_dir, a.task_id, a.attempt), False)
            )
            self.process = self._spawn(a, env, log_fd)
            if files is not None:
                files.started(log_fd, a.task_id, a.attempt, unnamed=unnamed)
        except (OSError, ValueError) as exc:
            logger.error("cannot start task=%d attempt=%d: %s", a.task_id, a.attempt, exc)
            self._failed = self._unstarted(f"cannot start the command: {exc}")
            return
        except Exception:  # a bug: report the attempt failed rather than lose its slot
            logger.exception("task=%d attempt=%d: the worker failed to start it", *self.key)
            if self.process is None:
                self._failed = self._unstarted("internal error while starting the task", code=1)
            return
        logger.debug("started task=%d attempt=%d pid=%d", a.task_id, a.attempt, self.process.pid)

    def _spawn(self, a: Assignment, env: dict[bytes, bytes], log_fd: int) -> Process:
        """The process, in the task's directory; where that is missing here (or cannot be
        looked at), in a fresh scratch directory, said on the first line of its output
        (SPEC §9: never silently in the worker's own directory).

        Raises:
            OSError, ValueError: see Process.start (log_fd is closed then).
        """
        cwd = a.cwd
        if cwd is not None and not os.path.isdir(cwd):
            try:
                self.scratch_dir = make_scratch(a.task_id, a.attempt)
                os.write(log_fd, scratch_note(cwd, self.scratch_dir))
            except OSError:
                os.close(log_fd)
                raise
            logger.info(
                "task=%d attempt=%d: no directory %s here; running in %s",
                a.task_id,
                a.attempt,
                cwd,
                self.scratch_dir,
            )
            cwd = self.scratch_dir
        return Process.start(a.command, env=env, log_fd=log_fd, loop=self.loop, cwd=cwd)

    def _unstarted(self, why: str, *, code: int = SPAWN_FAILED_EXIT) -> Outcome:
        started = self._started_at or time.monotonic()
        return Outcome(
            exit_code=code,
            duration_s=time.monotonic() - started,
            output_tail=f"kickoff worker: {why}\n",
            cancelled=self.cancelled,
        )

    async def run(self) -> Outcome:
        """Run the command to its end (or until stopped) and say how it ended; starts it
        first unless `start()` already did."""
        self.start()
        started = self._started_at
        assert started is not None
        if self.process is None:
            assert self._failed is not None
            return self._failed
        try:
            return await self._wait(self.process, started)
        except asyncio.CancelledError:  # the worker is going down hard: leave nothing behind
            self.process.signal_group(signal.SIGKILL)
            raise
        finally:
            process = self.process
            if self.keep_output:  # its output is to be sent yet
                self.output_fd, process.log_fd = process.log_fd, -1
            process.close()
            if self.log_files is not None:
                self.log_files.top_up()  # now, not while the next task starts

    async def _wait(self, process: Process, started: float) -> Outcome:
        timer = None
        if self.assignment.timeout_s is not None:
            timer = process.loop.call_later(self.assignment.timeout_s, self._time_out)
        try:
            status = await process.exited
        finally:
            if timer is not None:
                timer.cancel()
        duration = time.monotonic() - started
        if self._stopping is not None:
            await self._stopping  # the group may still hold children of the leader
        return Outcome(
            exit_code=exit_code(status),
            duration_s=duration,
            output_tail=process.tail(),
            timed_out=self.timed_out,
            cancelled=self.cancelled,
            scratch_dir=self.scratch_dir,
        )

    def close_output(self) -> None:
        if self.output_fd >= 0:
            os.close(self.output_fd)
            self.output_fd = -1

    def _time_out(self) -> None:
        a = self.assignment
        logger.info("timed out task=%d attempt=%d after %ss", a.task_id, a.attempt, a.timeout_s)
        self.timed_out = True
        self.stop()

    def stop(self, *, cancelled: bool = False, grace_s: float | None = None) -> None:
        """Begin TERM -> KILL of the process group (once); `cancelled` marks the report,
        `grace_s` shortens the grace (the lease ran out: it must be dead in time)."""
        self.cancelled = self.cancelled or cancelled
        if self.process is None or self._stopping is not None:
            return  # not started yet (run() stops it at once), or already stopping
        grace = self.grace_s if grace_s is None else min(grace_s, self.grace_s)
        self._stopping = asyncio.get_running_loop().create_task(self.process.terminate(grace))
