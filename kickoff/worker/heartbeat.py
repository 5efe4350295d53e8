"""Heartbeats: one request per interval lists every running task; its answer renews the
lease (`session.py`) and names the tasks to stop (cancelled, or no longer this worker's).
One try per beat: the next beat is the retry, so a hung request never holds up a renewal.
After a claim whose answer may have been lost, a beat also sets off a reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from kickoff import defaults
from kickoff.errors import KickoffError, ServerUnreachable, Unavailable
from kickoff.worker import _retry, replies
from kickoff.worker.core import LOST, Core
from kickoff.worker.lease import boottime
from kickoff.worker.reconcile import Reconciler
from kickoff.worker.replies import Registration
from kickoff.worker.session import Session

logger = logging.getLogger(__name__)


class Heartbeat:
    """The heartbeat loop of one worker."""

    def __init__(self, core: Core, session: Session, reconciler: Reconciler) -> None:
        self.core = core
        self.session = session
        self.reconciler = reconciler
        self._reconciling: asyncio.Task[None] | None = None
        self._unreachable_since: float | None = None  # heartbeats failing since (boottime)

    async def loop(self) -> None:
        core, session = self.core, self.session
        while True:
            reg = await session.registered()
            lease = session.lease
            if reg is None or lease is None:  # stopping while lost: nothing to renew
                await core.wait_change()
                continue
            session.new_registration.clear()
            delay = lease.renewed_at + reg.heartbeat_interval_s - boottime()
            if delay > 0:
                with contextlib.suppress(TimeoutError):  # a new registration beats anew
                    async with asyncio.timeout(delay):
                        await session.new_registration.wait()
                if reg is not core.registration:
                    continue
            try:
                await self.step()
            except Exception:
                logger.exception("heartbeat failed")

    async def step(self) -> None:
        """Report every running task in one request, once; renew the lease; stop the
        tasks the answer names."""
        core, session = self.core, self.session
        reg = await session.registered()
        if reg is None or session.check_lease():
            return
        running = [
            [job.task_id, job.attempt]
            for job in core.jobs.values()
            if job.worker_id == reg.worker_id and not job.abandoned
        ]
        path = f"/v1/workers/{reg.worker_id}/heartbeat"
        sent = boottime()
        try:
            answer = await core.client.request(
                "POST", path, json={"running": running}, timeout=reg.heartbeat_interval_s
            )
        except LOST as exc:
            session.lost(reg, "heartbeat", exc.message)
            return
        except (ServerUnreachable, Unavailable) as exc:
            self._unreachable(reg, exc, sent)
            return
        except KickoffError as exc:
            logger.error("heartbeat refused: %s", exc.message)
            return
        self._reachable(reg)
        session.renew(reg, sent)
        self._stop(reg, replies.cancel_ids(answer))
        if core.reconcile_at is not None and time.monotonic() >= core.reconcile_at:
            core.reconcile_at = None
            if self._reconciling is None or self._reconciling.done():
                # beside the heartbeats: its retries must not hold up the next renewal
                self._reconciling = core.spawn(self.reconciler.quietly(reg))

    def _stop(self, reg: Registration, task_ids: list[int]) -> None:
        for task_id in task_ids:
            job = self.core.jobs.get(task_id)
            if job is None or job.worker_id != reg.worker_id:
                continue
            if not job.cancelled:
                logger.info("cancelling task=%d attempt=%d", job.task_id, job.attempt)
            job.stop(cancelled=True)

    def _unreachable(self, reg: Registration, exc: KickoffError, sent: float) -> None:
        """A heartbeat failed. Refused (no server runs there) or 503 (it cannot write):
        nobody can count this worker lost meanwhile, so the lease is renewed."""
        if isinstance(exc, Unavailable) or _retry.refused(exc):
            self.session.renew(reg, sent)
        now = boottime()
        if self._unreachable_since is None:
            self._unreachable_since = now
        elif now - self._unreachable_since < defaults.WARN_EVERY_S:
            return
        else:
            self._unreachable_since = now
        logger.warning("heartbeat failed: %s", _retry.short(exc.message))

    def _reachable(self, reg: Registration) -> None:
        if self._unreachable_since is not None:
            self._unreachable_since = None
            logger.info("heartbeat of worker=%s went through", reg.worker_id)
