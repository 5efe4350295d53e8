"""Upkeep: what the clock makes happen. Lease expiry (a worker that stops beating loses
its tasks) and delayed retries coming due, each recorded as events by a timer loop, never
on replay. The rules are state/decide.py's. Also here: when each worker was last heard
from beyond what the log says (its idle heartbeats, which are not all events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from kickoff import defaults
from kickoff.errors import Unavailable
from kickoff.service.claims import Claims
from kickoff.service.recording import Recording
from kickoff.state import decide

logger = logging.getLogger(__name__)


class Upkeep:
    """The timers of one server: lease expiry and delayed retries."""

    def __init__(
        self,
        recording: Recording,
        claims: Claims,
        *,
        heartbeat_timeout_s: float,
        expire_every_s: float,
    ) -> None:
        self.recording = recording
        self.claims = claims
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.expire_every_s = expire_every_s
        self.heard: dict[str, datetime] = {}
        """When each worker was last heard from by a request that may not be in the log
        (a heartbeat): expiry counts it. Memory only: a restart restarts every lease."""
        self._timers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._timers = [loop.create_task(self._expire_loop()), loop.create_task(self._retry_loop())]

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    async def expire(self) -> int:
        """Apply lease expiry as of the clock now; returns the number of events."""
        recording = self.recording
        if recording.leases_stale:
            # Heartbeats were refused while storage failed: not the workers' fault. Once a
            # write has gone through again, every lease restarts, as after a restart.
            if not recording.written_since_failure:
                return 0
            recording.leases_stale = False
            await recording.commit(decide.server_started(self.heartbeat_timeout_s))
            return 1
        now = recording.clock()
        workers = recording.state.workers
        heard = self.heard
        for gone in [w for w in heard if w not in workers]:
            del heard[gone]
        events = decide.expire(
            recording.state, now, timeout_s=self.heartbeat_timeout_s, heard=heard
        )
        await recording.commit(events)
        if events:  # requeued tasks were handed out; lost workers' parked claims must end
            self.claims.wake()
        return len(events)

    async def start_due_retries(self) -> int:
        """Record the delayed retries due by the clock now; returns how many started."""
        now = self.recording.clock()
        state = self.recording.state
        if not state.retry_heap or state.retry_heap[0][0] > now:
            return 0
        events = decide.retries_due(state, now)
        await self.recording.commit(events)  # parked claims are served by the requeues
        return len(events)

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(defaults.RETRY_CHECK_S)
            try:
                await self.start_due_retries()
            except Unavailable:
                logger.warning("delayed retries deferred: storage unavailable")

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.expire_every_s)
            try:
                await self.expire()
            except Unavailable:
                logger.warning("lease expiry deferred: storage unavailable")
