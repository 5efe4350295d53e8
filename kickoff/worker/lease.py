"""The worker's side of its lease: until when the server cannot have counted it lost, and
when to stop its tasks so that they are gone by then. No I/O here; times are seconds on
`boottime()`, the clock that keeps counting while the machine sleeps.

The server counts a worker lost once it has not heard from it for `timeout_s`. It heard
from it no earlier than when the worker sent its last acknowledged heartbeat, so the
server cannot hand the worker's tasks to anyone before that moment plus `timeout_s`. A
refused connection renews the lease as well: no server runs at that address, and a server
that starts renews every worker's lease (`ServerStarted`); so does a 503, with which a
server says it cannot write, and it restarts every lease once it can again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kickoff import defaults


def boottime() -> float:
    """Seconds on CLOCK_BOOTTIME: monotonic, and counting while the machine is suspended."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def heartbeat_interval_s(timeout_s: float, suggested_s: float | None = None) -> float:
    """How often to heartbeat so that two beats in a row may fail within the timeout."""
    interval = suggested_s if suggested_s is not None else defaults.HEARTBEAT_INTERVAL_S
    return min(interval, defaults.HEARTBEAT_INTERVAL_S, timeout_s / 3)


@dataclass(slots=True)
class Lease:
    """One registration's lease, as the worker reckons it."""

    timeout_s: float
    renewed_at: float  # boottime() when the request that renewed it was sent
    grace_s: float = defaults.CANCEL_GRACE_S  # the worker's --grace; the stop gets less

    def renew(self, sent_at: float) -> None:
        self.renewed_at = max(self.renewed_at, sent_at)

    @property
    def margin_s(self) -> float:
        """Kept between the end of the lease and the server's earliest expiry."""
        return min(defaults.LEASE_MARGIN_S, self.timeout_s / 10)

    @property
    def stop_grace_s(self) -> float:
        """SIGTERM to SIGKILL when the lease runs out (the worker's grace, if it fits)."""
        return min(self.grace_s, self.timeout_s / 10)

    @property
    def deadline(self) -> float:
        """By then every task of the registration is dead (SIGKILL)."""
        return self.renewed_at + self.timeout_s - self.margin_s

    @property
    def stop_at(self) -> float:
        """When the worker starts stopping its tasks (SIGTERM) unless renewed first."""
        return self.deadline - self.stop_grace_s
