"""Sending the output of running attempts to the server (SPEC §9), read back from their log
files: every OUTPUT_FLUSH_S, what each running task wrote since the last look goes out as
`POST /v1/tasks/{id}/output` (the bytes themselves, at most OUTPUT_CHUNK_BYTES each). A
task that wrote nothing costs nothing but an fstat.

Back-pressure: one request at a time for the whole worker's running tasks, the next only
once the server answered; a task writing faster than that is not slowed down (it writes to
its file), its output waits in the file and goes out at the server's pace, up to the
server's cap (then nothing more is sent; the file keeps all). What is left when a task
ends, if small and UTF-8 (the common case: a short task's whole output), rides in its
report (`finish`); more is sent first, so a reader that sees the attempt ended has seen
all it kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from kickoff import defaults
from kickoff.errors import Conflict, KickoffError, NotFound
from kickoff.worker.core import Core
from kickoff.worker.ledger import Key
from kickoff.worker.process import Job

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 30.0


class OutputSender:
    """Sends the new output of one worker's running jobs (see the module docstring)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._lock = asyncio.Lock()  # one request at a time while tasks run
        # each job's own: `finish` waits for a send of that job only, never another's
        # (a quiet task's report is not held up by a loud one's chunk)
        self._job_locks: dict[Key, asyncio.Lock] = {}

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(defaults.OUTPUT_FLUSH_S)
            try:
                await self.step()
            except Exception:
                logger.exception("sending task output failed")

    async def step(self) -> None:
        """Send what each running job wrote since the last look (one request each, at most)."""
        for job in list(self.core.jobs.values()):
            process = job.process
            if process is None or process.log_fd < 0 or job.output_capped or job.output_refused:
                continue
            if os.fstat(process.log_fd).st_size <= job.output_sent:
                continue
            async with self._lock, self._job_lock(job):
                # it may have ended meanwhile: its file is then output_fd (or closed, by
                # `finish`, and its number maybe another's already)
                fd = process.log_fd if process.log_fd >= 0 else job.output_fd
                if fd >= 0 and not (job.output_capped or job.output_refused):
                    await self._send(job, fd)

    def _job_lock(self, job: Job) -> asyncio.Lock:
        lock = self._job_locks.get(job.key)
        if lock is None:
            lock = self._job_locks[job.key] = asyncio.Lock()
        return lock

    async def _send(self, job: Job, fd: int) -> bool:
        """Send up to a chunk from where the server is; False when nothing more can be
        sent now (the server is away, refused it, or is at the cap)."""
        data = os.pread(fd, defaults.OUTPUT_CHUNK_BYTES, job.output_sent)
        if not data:
            return False
        params = {
            "attempt": job.attempt,
            "offset": job.output_sent,
            "worker": job.worker_id,
        }
        try:
            answer = await self.core.client.request(
                "POST",
                f"/v1/tasks/{job.task_id}/output",
                params=params,
                content=data,
                timeout=SEND_TIMEOUT_S,
            )
        except (Conflict, NotFound) as exc:  # the attempt is over there: send no more
            logger.info("output of task=%d attempt=%d refused: %s", *job.key, exc.message)
            job.output_refused = True
            return False
        except KickoffError as exc:  # away, or busy: the bytes wait in the file
            logger.debug("output of task=%d attempt=%d not sent: %s", *job.key, exc.message)
            return False
        total = answer.get("total") if isinstance(answer, dict) else None
        sent = job.output_sent + len(data)
        job.output_sent = total if isinstance(total, int) and 0 <= total <= sent else sent
        if isinstance(answer, dict) and answer.get("capped") is True:
            job.output_capped = True
            return False
        return True

    async def finish(self, job: Job) -> dict[str, Any] | None:
        """After the job's end: send what is left of its output but the last small part,
        which is returned to ride in its report (`{"offset", "text"}`; None: nothing
        left, or nothing more the server takes). Closes the job's log file."""
        try:
            if job.output_fd < 0 or job.output_refused or job.abandoned:
                return None
            async with self._job_lock(job):
                return await self._rest(job, job.output_fd)
        finally:
            job.close_output()
            self._job_locks.pop(job.key, None)

    async def _rest(self, job: Job, fd: int) -> dict[str, Any] | None:
        while True:
            if job.output_capped:  # the server keeps no more, but counts what was written
                size = os.fstat(fd).st_size
                return {"offset": size, "text": ""} if size > job.output_sent else None
            data = os.pread(fd, defaults.OUTPUT_INLINE_BYTES + 1, job.output_sent)
            if not data:
                return None
            if len(data) <= defaults.OUTPUT_INLINE_BYTES:
                with contextlib.suppress(UnicodeDecodeError):
                    return {"offset": job.output_sent, "text": data.decode("utf-8")}
            if not await self._send(job, fd) and not job.output_capped:
                return None
