"""Stopping a worker: Ctrl-C (or SIGTERM) once drains (no new claims; running tasks finish
and are reported), twice kills the tasks (reported cancelled, so the server requeues them),
three times stops waiting for the server. The end of `kickoff up`'s pipe kills at once.

Waiting until idle and shutting the loops down are `worker.py`'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from kickoff import defaults
from kickoff.worker.core import Core, Mode
from kickoff.worker.ledger import Key

logger = logging.getLogger(__name__)


class Stopping:
    """Moves one worker down its stop ladder (running, draining, aborting) and remembers
    the attempts it killed on the way (the warden finishes off what is left of them)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.killed: set[Key] = set()  # attempts killed because this worker is stopping

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM. First: stop claiming, let tasks finish. Second: kill them.
        Third: stop waiting for the server."""
        core = self.core
        if core.mode is Mode.RUNNING:
            logger.info(
                "stopping: no new tasks; waiting for %d running task(s) (Ctrl-C again kills them)",
                len(core.jobs),
            )
            if core.interrupt_claim():  # the server may still hand it a task: look later
                core.reconcile_at = time.monotonic() + core.config.claim_wait_s + 1
            core.set_mode(Mode.DRAINING)
        elif core.mode is Mode.DRAINING:
            self.abort()
        else:
            logger.warning("exiting without waiting for the server")
            core.abort_deadline = time.monotonic()
            core.changed()

    def abort(self) -> None:
        """Kill every running task, report it cancelled (the server requeues it), exit."""
        core = self.core
        logger.warning("killing %d running task(s)", len(core.jobs))
        core.abort_deadline = time.monotonic() + core.config.grace_s + defaults.ABORT_DEADLINE_S
        for job in core.jobs.values():
            self.killed.add(job.key)
            job.stop(cancelled=True)
        core.set_mode(Mode.ABORTING)

    def watch_parent(self, fd: int) -> None:
        """`kickoff up` holds the other end of this pipe: its end means `up` is gone."""
        os.set_blocking(fd, False)
        (self.core.loop or asyncio.get_running_loop()).add_reader(fd, self._parent_gone, fd)

    def _parent_gone(self, fd: int) -> None:
        try:
            if os.read(fd, 64):
                return  # nothing is ever written; only its end counts
        except BlockingIOError:
            return
        except OSError:
            pass
        (self.core.loop or asyncio.get_running_loop()).remove_reader(fd)
        os.close(fd)
        logger.warning("the process that started this worker is gone; stopping at once")
        if self.core.mode is not Mode.ABORTING:
            self.abort()
        self.core.abort_deadline = time.monotonic()
        self.core.changed()
