"""The worker: its parts put together, run until stopped, and shut down (`Worker`).

One event loop and one HTTP client. Each activity is a small loop doing one step at a
time: claims (`claims.py`) fill free slots, heartbeats (`heartbeat.py`) renew the lease
and stop what the server names, output (`output.py`) goes to the server, the tags file
(`tags.py`) is followed, the log directory pruned (`pruning.py`). Each claimed task runs
in an asyncio task of its own that waits for its process and delivers its report
(`jobs.py`). How Ctrl-C stops it is `stopping.py`'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal

from kickoff.errors import InvalidInput
from kickoff.worker._retry import Requester
from kickoff.worker.claims import Claims
from kickoff.worker.core import Core, Mode, WorkerConfig
from kickoff.worker.heartbeat import Heartbeat
from kickoff.worker.jobs import Jobs
from kickoff.worker.outbox import Outbox
from kickoff.worker.output import OutputSender
from kickoff.worker.process import Job, TaskEnv, seal_inherited_fds
from kickoff.worker.pruning import Pruner
from kickoff.worker.reconcile import Reconciler
from kickoff.worker.replies import Registration
from kickoff.worker.session import Session
from kickoff.worker.stopping import Stopping
from kickoff.worker.tags import TagsSync
from kickoff.worker.tagsfile import TagsFile

__all__ = ["Mode", "Worker", "WorkerConfig"]

logger = logging.getLogger(__name__)

INTERRUPTED_EXIT = 130


class Worker:
    """One kickoff worker bound to one server through one client: its parts, and its run
    from registration to goodbye."""

    def __init__(self, client: Requester, config: WorkerConfig) -> None:
        self.core = core = Core(client, config)
        run_id = secrets.token_hex(16)  # its tasks carry it: the warden finds them
        self.session = Session(core, run_id)
        env = TaskEnv(dict(os.environ), run=run_id, gpus=bool(config.gpu_ids))
        self.output = OutputSender(core)
        self.jobs_part = Jobs(core, self.session, self.output, env)
        self.claims = Claims(core, self.session, self.jobs_part)
        self.heartbeat = Heartbeat(core, self.session, Reconciler(core, self.jobs_part))
        self._tags_file = TagsFile(config.tags_file) if config.tags_file else None
        self.stopping = Stopping(core)

    # What tests and the entry points look at:
    @property
    def client(self) -> Requester:
        return self.core.client

    @property
    def config(self) -> WorkerConfig:
        return self.core.config

    @property
    def mode(self) -> Mode:
        return self.core.mode

    @property
    def registration(self) -> Registration | None:
        return self.core.registration

    @property
    def jobs(self) -> dict[int, Job]:
        return self.core.jobs

    @property
    def outbox(self) -> Outbox:
        return self.core.outbox

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM (see `Stopping.interrupt`)."""
        self.stopping.interrupt()

    def _prepare(self) -> None:
        """Raises: InvalidInput: the log directory or the tags file cannot be used."""
        core = self.core
        try:
            core.config.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self._tags_file is not None:
                core.file_tags = self._tags_file.poll() or frozenset()
        except OSError as exc:
            raise InvalidInput(f"{exc.filename}: {exc.strerror}") from exc
        core.tags()
        core.loop = asyncio.get_running_loop()
        seal_inherited_fds()
        if core.config.exit_with_fd is not None:
            self.stopping.watch_parent(core.config.exit_with_fd)

    def _loops(self) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        loops = [
            loop.create_task(self.claims.loop()),
            loop.create_task(self.heartbeat.loop()),
            loop.create_task(self.output.loop()),
        ]
        if self._tags_file is not None:
            sync = TagsSync(self.core, self.session, self._tags_file)
            loops.append(loop.create_task(sync.loop()))
        if self.core.config.keep_logs > 0:
            loops.append(loop.create_task(Pruner(self.core).loop()))
        return loops

    async def _until_idle(self) -> None:
        """Return once the worker stopped claiming and has nothing left to run or report
        (or, after a second Ctrl-C, once the deadline passed)."""
        core = self.core
        while core.mode is Mode.RUNNING or core.busy():
            if core.deadline_passed():
                logger.warning("giving up on %d undelivered report(s)", len(core.outbox))
                return
            await core.wait_change(core.time_left())

    async def _shutdown(self, loops: list[asyncio.Task[None]]) -> None:
        """Stop everything (tasks are left only after a deadline: they are killed)."""
        core = self.core
        self.stopping.killed.update(job.key for job in core.jobs.values())
        for task in [*loops, *core.tasks]:
            task.cancel()
        for job in core.jobs.values():
            if job.process is not None:
                job.process.signal_group(signal.SIGKILL)
        await asyncio.gather(*loops, *core.tasks, return_exceptions=True)
        core.log_files.close()

    async def run(self) -> int:
        """Register and work until stopped; returns the exit code (0 after a clean stop).

        Raises:
            KickoffError: the server refused the registration (wrong token, bad tags).
            InvalidInput: the log directory or the tags file cannot be used.
        """
        core = self.core
        self._prepare()
        self.session.guard.start()
        try:
            registering = self.session.registered()
            if not await core.race(registering, lambda: core.mode is not Mode.RUNNING):
                return 0
            core.log_files.top_up()
            loops = self._loops()
            try:
                await self._until_idle()
                await self.session.deregister()
            finally:
                await self._shutdown(loops)
        finally:
            self.session.guard.close(self.stopping.killed)
        return INTERRUPTED_EXIT if core.mode is Mode.ABORTING else 0
