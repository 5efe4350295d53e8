"""Claiming: whenever a slot is free, one long-poll claim for as many tasks as there are
free slots; what it names is started at once (`jobs.py`). A claim whose answer may have
been lost on the way sets off a reconciliation (`reconcile.py`).

Running and reporting are `jobs.py`'s; the HTTP client is `_http.py`.
"""

from __future__ import annotations

import asyncio
import logging

from kickoff import defaults
from kickoff.errors import KickoffError
from kickoff.worker._retry import Backoff
from kickoff.worker.core import LOST, Core, Mode
from kickoff.worker.jobs import Jobs
from kickoff.worker.session import Session

logger = logging.getLogger(__name__)


class Claims:
    """The claim loop of one worker."""

    def __init__(self, core: Core, session: Session, jobs: Jobs) -> None:
        self.core = core
        self.session = session
        self.jobs = jobs

    async def loop(self) -> None:
        backoff = Backoff()
        while self.core.mode is Mode.RUNNING:
            try:
                await self.step()
                backoff.reset()
            except KickoffError as exc:  # say, a registration refused or answered oddly
                logger.error("claim failed: %s", exc.message)
                await asyncio.sleep(backoff.delay())
            except Exception:
                logger.exception("claim failed")
                await asyncio.sleep(backoff.delay())

    async def step(self) -> None:
        """Wait for a free slot; then claim up to that many tasks (long-poll) and start them."""
        core = self.core
        free = core.free_slots()
        if free <= 0:
            await core.wait_change()
            return
        reg = await self.session.registered()
        if reg is None or core.mode is not Mode.RUNNING:
            return
        wait_s = 0.0 if core.config.burst else core.config.claim_wait_s
        mark = core.ledger.ask()

        async def claim_and_start() -> int:
            answer = await core.call(
                "POST",
                f"/v1/workers/{reg.worker_id}/claim",
                what="claim",
                json={"max_tasks": free, "wait_s": wait_s},
                timeout_s=wait_s + defaults.CLAIM_SLACK_S,
                on_maybe_sent=core.reconcile_soon,
            )
            return self.jobs.take(answer, reg, limit=free, mark=mark)  # once the answer is in

        core.claim_request = asyncio.get_running_loop().create_task(claim_and_start())
        try:
            started = await core.claim_request
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return  # interrupted: stopping, or the registration was lost
        except LOST as exc:
            self.session.lost(reg, "claim", exc.message)
            return
        finally:
            core.claim_request = None
            core.ledger.answered(mark)
        if core.config.burst and not started:
            if core.busy():
                await core.wait_change()
            else:
                logger.info("burst: nothing left that this worker can run")
                core.set_mode(Mode.DRAINING)
