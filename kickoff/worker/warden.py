"""The warden: a small process beside each worker that kills the worker's running tasks when
the worker cannot (it died, or it is frozen past its lease).

Why a process of its own: a `kill -9`, the OOM killer or a crash leaves a worker no chance
to clean up, and a worker stopped with SIGSTOP runs no code at all, while its tasks, in
sessions of their own, run on. `PR_SET_PDEATHSIG` reaches only a direct child (the task's
shell, not what it started), is tied to the thread that spawned it, and does nothing for a
frozen worker. The warden holds the read end of a pipe that only the worker writes: end of
file means the worker is gone, whatever killed it. The worker writes its lease to it
(`lease DEADLINE TASK:ATTEMPT ...`, on `boottime()`) whenever it renews it; a lease that
runs out unrenewed means the worker is frozen or hung, and the warden kills the tasks by
its deadline, before the server can count the worker lost. `bye` ends it after a clean
stop.

A task's processes are found as HTCondor's procd finds a job's: every task starts with
`KICKOFF_WORKER_RUN` (random per worker process) and its task id and attempt in its
environment, which its children inherit; the sessions of those processes count too (a child
that cleared its environment stays in its session). An attempt counts as running if the
worker named it in its last lease or its session leader (the task's shell) still lives:
what finished tasks left behind is not the warden's business. Each process is checked and
signalled through a pidfd, so a pid reused meanwhile is never hit.

This file runs as a script (`python -I -S warden.py FD RUN GRACE`): standard library only,
so that it starts in milliseconds and holds little memory. The worker's end is `Warden`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

RUN_VAR = "KICKOFF_WORKER_RUN"
_RUN = RUN_VAR.encode() + b"="
_TASK = b"KICKOFF_TASK_ID="
_ATTEMPT = b"KICKOFF_ATTEMPT="
POLL_S = 1.0  # the longest sleep: a machine that slept through a deadline acts within this
STOP_POLL_S = 0.05

Key = tuple[int, int]


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


# -- the warden process ---------------------------------------------------------


@dataclass(slots=True)
class _Proc:
    pid: int
    pidfd: int  # -1 without pidfd support
    sid: int
    leader_alive: bool  # a live session leader (pid == sid, not a zombie)
    zombie: bool
    key: Key | None  # (task id, attempt) if it carries this worker's run marker


def _read(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as f:
        return f.read()


def _inspect(pid: int, run: bytes) -> _Proc | None:
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    try:
        stat = _read(pid, "stat").rsplit(b")", 1)[1].split()
        environ = _read(pid, "environ").split(b"\0")
    except (OSError, IndexError):
        if pidfd >= 0:
            os.close(pidfd)
        return None
    state, sid = stat[0], int(stat[3])
    key = None
    if run in environ:
        task = next((v[len(_TASK) :] for v in environ if v.startswith(_TASK)), b"")
        attempt = next((v[len(_ATTEMPT) :] for v in environ if v.startswith(_ATTEMPT)), b"")
        if task.isdigit() and attempt.isdigit():
            key = (int(task), int(attempt))
    zombie = state == b"Z"
    return _Proc(pid, pidfd, sid, pid == sid and not zombie, zombie, key)


def family(run: bytes, listed: Iterable[Key]) -> list[_Proc]:
    """The live processes of the running attempts of the worker run `run` (their pidfds
    open: the caller closes them)."""
    me = os.getpid()
    found: list[_Proc] = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            proc = _inspect(int(name), run)
            if proc is not None:
                found.append(proc)
    running = set(listed) | {p.key for p in found if p.key is not None and p.leader_alive}
    sessions = {p.sid for p in found if p.key in running}
    sessions.discard(os.getsid(0))
    victims = []
    for proc in found:
        if not proc.zombie and (proc.key in running or proc.sid in sessions):
            victims.append(proc)
        elif proc.pidfd >= 0:
            os.close(proc.pidfd)
    return victims


def _signal(proc: _Proc, sig: int) -> None:
    with contextlib.suppress(OSError):
        if proc.pidfd >= 0:
            signal.pidfd_send_signal(proc.pidfd, sig)
        else:
            os.kill(proc.pid, sig)


def sweep(run: bytes, listed: Iterable[Key], sig: int) -> int:
    """Send sig to every process of the running attempts; returns how many there were."""
    victims = family(run, listed)
    for proc in victims:
        _signal(proc, sig)
        if sig == signal.SIGTERM:
            _signal(proc, signal.SIGCONT)  # a stopped process gets the TERM once woken
        if proc.pidfd >= 0:
            os.close(proc.pidfd)
    return len(victims)


def _say(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with contextlib.suppress(OSError):
        os.write(2, f"{stamp} WARNING kickoff.worker.warden: {message}\n".encode())


def _stop_all(run: bytes, listed: set[Key], grace_s: float, deadline: float | None) -> None:
    """The worker died: SIGTERM its running tasks, SIGKILL what is left after the grace
    (or at the lease's deadline, if that comes first)."""
    found = sweep(run, listed, signal.SIGTERM)
    if not found:
        return
    _say(f"the worker is gone; stopping {found} process(es) of its running tasks")
    kill_at = boottime() + grace_s
    if deadline is not None:
        kill_at = min(kill_at, deadline)
    while boottime() < kill_at and family_alive(run, listed):
        time.sleep(STOP_POLL_S)
    sweep(run, listed, signal.SIGKILL)


def family_alive(run: bytes, listed: Iterable[Key]) -> bool:
    victims = family(run, listed)
    for proc in victims:
        if proc.pidfd >= 0:
            os.close(proc.pidfd)
    return bool(victims)


def _keys(words: list[bytes]) -> set[Key]:
    keys = set()
    for word in words:
        task, _, attempt = word.partition(b":")
        keys.add((int(task), int(attempt)))
    return keys


def main(argv: list[str]) -> int:
    """Watch the worker through the pipe `argv[1]` until it says bye or is gone."""
    fd, run, grace_s = int(argv[1]), f"{RUN_VAR}={argv[2]}".encode(), float(argv[3])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)  # it follows the worker, not the terminal
    deadline: float | None = None
    listed: set[Key] = set()
    pending = b""
    while True:
        timeout = None if deadline is None else min(POLL_S, max(0.0, deadline - boottime()))
        if select.select([fd], [], [], timeout)[0]:
            data = os.read(fd, 65536)
            if not data:
                _stop_all(run, listed, grace_s, deadline)
                return 0
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                words = line.split()
                if words == [b"bye"]:
                    return 0
                if words[:1] == [b"lease"]:
                    deadline, listed = float(words[1]), _keys(words[2:])
                elif words[:1] == [b"sweep"]:  # the worker is leaving these to us
                    listed |= _keys(words[1:])
        if deadline is not None and boottime() >= deadline:
            killed = sweep(run, listed, signal.SIGKILL)
            if killed:
                _say(f"the worker's lease ran out; killed {killed} process(es) of its tasks")
            deadline, listed = None, set()


# -- the worker's end -----------------------------------------------------------


class Warden:
    """The worker's end of its warden: start it, tell it each renewed lease, say bye.

    A warden that died (someone killed it) is started again at the next lease."""

    def __init__(self, run: str, *, grace_s: float) -> None:
        self.run = run
        self.grace_s = grace_s
        self.pid = 0
        self._fd = -1

    def start(self) -> None:
        """Raises: OSError: the warden cannot be started."""
        read_fd, write_fd = os.pipe()  # both close-on-exec: no task inherits the write end
        try:
            os.set_inheritable(read_fd, True)  # the warden's alone
            args = [sys.executable, "-I", "-S", __file__, str(read_fd), self.run, str(self.grace_s)]
            self.pid = os.posix_spawn(
                sys.executable,
                args,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                ],
                setsid=True,  # no Ctrl-C of the worker's terminal reaches it
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        os.set_blocking(write_fd, False)  # never hang the worker on a stuck warden
        self._fd = write_fd

    def lease(self, deadline: float, running: Iterable[Key]) -> None:
        """The worker's tasks must be dead by `deadline` (boottime) unless renewed."""
        keys = " ".join(f"{task}:{attempt}" for task, attempt in running)
        self._send(f"lease {deadline:.6f} {keys}\n".encode())

    def _send(self, line: bytes) -> None:
        if self._fd >= 0:
            try:
                os.write(self._fd, line)
                return
            except BlockingIOError:  # it is not reading (stopped?): it has the last lease
                logger.warning("the warden is not reading; lease not passed on")
                return
            except OSError:
                logger.error("the warden died; starting another")
                self._close_fd()
        try:
            self.start()
            os.write(self._fd, line)
        except OSError as exc:
            logger.error("cannot start the warden: %s", exc)

    def close(self, *, sweep: Iterable[Key] | None = None) -> None:
        """Let the warden go. After a clean stop it exits leaving everything as it is. With
        `sweep`, the attempts the worker stopped as it went (or could not stop), it stops
        whatever of them is left as if the worker had died, and goes on after it exits."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                if sweep is None:
                    os.write(self._fd, b"bye\n")
                else:
                    keys = " ".join(f"{task}:{attempt}" for task, attempt in sweep)
                    os.write(self._fd, f"sweep {keys}\n".encode())
            self._close_fd()
        if self.pid and sweep is None:
            deadline = time.monotonic() + 5
            while not self._reaped() and time.monotonic() < deadline:
                time.sleep(0.005)

    def _reaped(self) -> bool:
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid = self.pid
        if pid:
            self.pid = 0
        return pid != 0

    def _close_fd(self) -> None:
        os.close(self._fd)
        self._fd = -1
        if self.pid:
            self._reaped()  # if it is already gone


if __name__ == "__main__":
    sys.exit(main(sys.argv))
