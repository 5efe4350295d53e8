"""Pruning the task log directory: every PRUNE_EVERY_S the oldest task log files beyond
`--keep-logs` are deleted, never those of a running task. Which files those are is
`logfiles.prune`'s."""

from __future__ import annotations

import asyncio
import logging

from kickoff import defaults
from kickoff.worker import logfiles
from kickoff.worker.core import Core

logger = logging.getLogger(__name__)


class Pruner:
    """Keeps one worker's log directory to `keep_logs` task files."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def loop(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:
                logger.exception("pruning the log directory failed")
            await asyncio.sleep(defaults.PRUNE_EVERY_S)

    async def step(self) -> None:
        """Delete the oldest task log files beyond `keep_logs` (in a thread: it lists the
        directory)."""
        core = self.core
        running = {job.key for job in core.jobs.values()}
        deleted = await asyncio.to_thread(
            logfiles.prune, core.log_dir, keep=core.config.keep_logs, protect=running
        )
        if deleted:
            logger.debug("deleted %d old task log file(s)", deleted)
