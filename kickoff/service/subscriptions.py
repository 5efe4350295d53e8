"""Live rows for event-stream readers, bounded per reader.

Each reader's subscription holds the rows committed since it last looked, up to
`limit`. A reader that falls further behind (a stalled client) is not dropped, and its
rows are not kept either: the subscription forgets them and says `behind`, and the reader
catches up from the log by seq, which is durable and in order, as an SSE client that
reconnects with Last-Event-ID would. So memory per reader stays bounded, and a slow reader
still sees every event once. Reading the log is the route's job (api/routes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from kickoff import defaults
from kickoff.store.chain import Row


class Subscription:
    """The rows committed since the reader last took them (see the module docstring)."""

    def __init__(self, limit: int = defaults.SUBSCRIBER_ROWS) -> None:
        self.limit = limit
        self.behind = False
        self.ended = False
        self._rows: list[Row] = []
        self._ready = asyncio.Event()

    def put(self, rows: list[Row]) -> None:
        if self.behind or self.ended:
            return
        if len(self._rows) + len(rows) > self.limit:
            self._rows = []
            self.behind = True
        else:
            self._rows.extend(rows)
        self._ready.set()

    def end(self) -> None:
        """No more rows: the server is stopping."""
        self.ended = True
        self._ready.set()

    def take(self) -> list[Row]:
        """The rows queued so far (none while behind)."""
        rows, self._rows = self._rows, []
        self._ready.clear()
        return rows

    def resume(self) -> None:
        """Queue rows again from now on; call before reading the log up to date, so that
        nothing committed meanwhile is missed (rows already read have seq <= the last)."""
        self.behind = False
        self._rows = []

    async def wait(self, timeout_s: float) -> bool:
        """Wait until there is something to take (or the end); False on a time-out.

        Never swallows a cancellation (asyncio.wait_for(queue.get()) in 3.11 could, when
        the get had just completed: a reader that left then drained its whole backlog).
        """
        if self._ready.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
                return True
        return False


class Subscribers:
    """Every live subscription of one server."""

    def __init__(self) -> None:
        self._all: set[Subscription] = set()

    def __len__(self) -> int:
        return len(self._all)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        subscription = Subscription()
        self._all.add(subscription)
        try:
            yield subscription
        finally:
            self._all.discard(subscription)

    def publish(self, rows: list[Row]) -> None:
        for subscription in self._all:
            subscription.put(rows)

    def end(self) -> None:
        for subscription in self._all:
            subscription.end()
