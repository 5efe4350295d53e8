"""Completion reports and the outbox: reports the server has not acknowledged yet.

Each report is sent until the server takes or refuses it, however long the server is
away, so no completion is lost. A task's slot counts as busy while its report is here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kickoff.errors import Conflict, InvalidInput, KickoffError, NotFound, TooLarge
from kickoff.worker._retry import Backoff
from kickoff.worker.process import Outcome

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The end of one attempt, as `POST /v1/tasks/{id}/complete` takes it."""

    task_id: int
    attempt: int
    worker_id: str
    outcome: Outcome

    @property
    def key(self) -> tuple[int, int]:
        return (self.task_id, self.attempt)

    @property
    def what(self) -> str:
        """The report, as log lines name it."""
        return f"report of task={self.task_id} attempt={self.attempt}"

    def body(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "worker_id": self.worker_id,
            "attempt": self.attempt,
            "exit_code": o.exit_code,
            "duration_s": round(o.duration_s, 6),
            "output_tail": o.output_tail,
            "timed_out": o.timed_out,
            "cancelled": o.cancelled,
        }


class Outbox:
    """Reports waiting for the server's acknowledgement.

    `send` makes one attempt (retrying an unreachable server itself); `gone(worker_id)`
    says the report's registration was lost, so nobody will take it; `settled(key)` is
    called whenever a report leaves the outbox.
    """

    def __init__(
        self,
        send: Callable[[Report], Awaitable[None]],
        *,
        gone: Callable[[str], bool],
        settled: Callable[[tuple[int, int]], None],
    ) -> None:
        self.send = send
        self.gone = gone
        self.settled = settled
        self.pending: dict[tuple[int, int], Report] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self.pending)

    def __contains__(self, key: object) -> bool:
        return key in self.pending

    def put(self, report: Report) -> None:
        """Deliver a report in the background."""
        self.pending[report.key] = report
        task = asyncio.get_running_loop().create_task(self.deliver(report))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver(self, report: Report) -> None:
        """Send a report until the server takes or refuses it."""
        self.pending[report.key] = report
        try:
            await self._until_settled(report)
        except Exception:
            logger.exception("dropped the report of task=%d attempt=%d", *report.key)
        finally:
            self.pending.pop(report.key, None)
            self.settled(report.key)

    async def _until_settled(self, report: Report) -> None:
        backoff: Backoff | None = None  # made on the first failure, like the message
        while not self.gone(report.worker_id):
            try:
                await self.send(report)
                return
            except (Conflict, NotFound) as exc:
                logger.warning("the server refused the %s: %s", report.what, exc.message)
                return
            except (InvalidInput, TooLarge) as exc:
                logger.error("the server refused the %s as invalid: %s", report.what, exc.message)
                return
            except KickoffError as exc:
                backoff = backoff or Backoff()
                delay = backoff.delay()
                logger.error("%s failed: %s; retrying in %.2fs", report.what, exc.message, delay)
                await asyncio.sleep(delay)
        logger.info("dropped the %s: the server requeued it", report.what)

    async def aclose(self) -> None:
        """Stop delivering (reports still pending are lost)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
