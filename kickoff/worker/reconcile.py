"""Reconciliation: after a claim whose answer may have been lost, ask the server which tasks
it thinks this worker runs, and run (or give back) those the worker never heard of.

The answer is checked against the ledger (`ledger.py`), never against the jobs and reports
as they are when it arrives: a task finished and acknowledged while the question was out
still looks running in it, and must not run again.
"""

from __future__ import annotations

import logging
from typing import Any

from kickoff import defaults
from kickoff.errors import KickoffError
from kickoff.worker import replies
from kickoff.worker.core import Core, Mode
from kickoff.worker.jobs import Jobs
from kickoff.worker.replies import BadReply, Refused, Registration

logger = logging.getLogger(__name__)


class Reconciler:
    """Finds the tasks whose claim answers were lost."""

    def __init__(self, core: Core, jobs: Jobs) -> None:
        self.core = core
        self.jobs = jobs

    async def quietly(self, reg: Registration) -> None:
        """`reconcile`, with its failures logged (it runs in a task of its own)."""
        try:
            await self.reconcile(reg)
        except KickoffError as exc:
            logger.error("reconcile failed: %s", exc.message)
        except Exception:
            logger.exception("reconcile failed")

    async def reconcile(self, reg: Registration) -> None:
        """Find tasks the server says this worker runs but it never heard of (a claim's
        answer lost on the way): run them while claiming, else give them back."""
        core = self.core
        params = {
            "worker": reg.worker_id,
            "state": "running,cancelling",
            "limit": defaults.MAX_SLOTS,
        }
        mark = core.ledger.ask()
        try:
            answer = await core.call("GET", "/v1/tasks", what="reconcile", params=params)
            self._settle(answer, reg, mark)
        finally:
            core.ledger.answered(mark)

    def _settle(self, answer: Any, reg: Registration, mark: int) -> None:
        core = self.core
        for raw in replies.task_list(answer):
            try:
                item = replies.assignment(raw, id_key="id")
            except BadReply:
                continue
            if raw.get("worker") != reg.worker_id or reg is not core.registration:
                continue
            if core.heard_of((item.task_id, item.attempt), mark):
                continue
            if isinstance(item, Refused):
                self.jobs.refuse(item, reg)
            elif core.mode is Mode.RUNNING and raw.get("state") == "running":
                logger.warning(
                    "adopting task=%d attempt=%d: its claim answer was lost",
                    item.task_id,
                    item.attempt,
                )
                self.jobs.start(item, reg)
            else:
                self.jobs.give_back(item, reg)
