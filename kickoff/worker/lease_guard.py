"""What makes a lease hold on the worker's side: a timer that stops the registration's
tasks when the lease is about to run out unrenewed, and the warden (`warden.py`), a process
that kills them by the lease's deadline if this worker cannot (it died, or it is frozen).

When a lease runs out and what losing the registration then means are `session.py`'s;
the lease's timing is `lease.py`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from kickoff.worker.core import Core
from kickoff.worker.lease import Lease, boottime
from kickoff.worker.ledger import Key
from kickoff.worker.warden import Warden

logger = logging.getLogger(__name__)


class LeaseGuard:
    """The lease timer and the warden of one worker; `on_due` runs when the timer fires
    (it checks whether the lease ran out, and calls `again` if not)."""

    def __init__(self, core: Core, run_id: str, *, on_due: Callable[[], object]) -> None:
        self.core = core
        config = core.config
        self.warden = Warden(run_id, grace_s=config.grace_s) if config.warden else None
        self._on_due = on_due
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start the warden (a worker that cannot still runs, and says so)."""
        if self.warden is None:
            return
        try:
            self.warden.start()
        except OSError as exc:
            logger.error("cannot start the warden (tasks may outlive this worker): %s", exc)

    def guard(self, lease: Lease, running: Iterable[Key]) -> None:
        """The lease was renewed (or made): pass it on to the warden, and set the timer
        for when the tasks must start stopping unless it is renewed first."""
        self.tell_warden(lease, running)
        self.again(max(0.0, lease.stop_at - boottime()))

    def tell_warden(self, lease: Lease, running: Iterable[Key]) -> None:
        """The tasks `running` must be dead by the lease's deadline unless it is renewed."""
        if self.warden is not None:
            self.warden.lease(lease.deadline, running)

    def again(self, delay_s: float) -> None:
        """Run `on_due` in `delay_s` (instead of when it was due)."""
        self.cancel()
        loop = self.core.loop or asyncio.get_running_loop()
        self._timer = loop.call_later(delay_s, self._on_due)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def close(self, stopped: set[Key]) -> None:
        """The worker ends; `stopped` are the attempts it killed as it went (the warden
        finishes off whatever of them left their process groups)."""
        self.cancel()
        if self.warden is not None:
            with contextlib.suppress(OSError):
                self.warden.close(sweep=stopped or None)
