"""Leading a PostgreSQL database several servers share (SPEC §14): a standby waits for the
lease (store/lease.py) behind a gate, the leader renews it, and gives it up when it stops.

A standby answers /healthz (`"role": "standby"` and the leader's address) and refuses every
other request with 503 `not_leader`, naming the leader (also in `X-Kickoff-Leader`):
clients given several addresses (`--server a:3355,b:3355`) move on to the next one. It
takes the lease once the leader's lapses (its timeout, `--lease-timeout`), then loads the
state (checkpoint plus tail: the leader kept the projections current) and serves.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

import orjson

from kickoff.store.lease import Lease

logger = logging.getLogger(__name__)

ASGIApp = Callable[..., Any]


class Gate:
    """The server's app once it leads; until then, a standby's answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.leading = False
        self.leader = ""  # the address of the server that leads, as the lease names it

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.leading or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/healthz":
            status, body = 200, {"ok": True, "role": "standby", "leader": self.leader}
        else:
            message = (
                f"this server is a standby; the leader is at {self.leader or '(none yet)'}"
                " (give clients every address: --server a:3355,b:3355)"
            )
            status, body = 503, {"error": {"code": "not_leader", "message": message}}
        headers = [
            (b"content-type", b"application/json"),
            (b"x-kickoff-leader", self.leader.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": orjson.dumps(body)})


async def wait_to_lead(
    lease: Lease, gate: Gate, announce: Callable[[str], None], stopping: Callable[[], bool]
) -> bool:
    """Take the lease as soon as it lapses (polling a fifth of its timeout); False if the
    server stops first."""
    said = None
    while not stopping():
        try:
            if await asyncio.to_thread(lease.take):
                return True
            address, epoch, _ = await asyncio.to_thread(lease.leader)
        except sqlite3.Error as exc:
            logger.warning("cannot reach %s to take its lease: %s", lease.where, exc)
        else:
            gate.leader = address
            if address != said:
                announce(
                    f"standby: {address} leads {lease.where} (epoch {epoch}); this server "
                    f"takes over once its lease lapses ({lease.timeout_s:g}s)"
                )
                said = address
        await asyncio.sleep(lease.timeout_s / 5)
    return False


async def keep_leading(lease: Lease, lost: Callable[[], None]) -> None:
    """Renew the lease every third of its timeout; `lost()` once it is another's or lapsed.
    (While the database cannot be reached the renewals fail, and so do the commits: every
    commit checks the lease itself.)"""
    while True:
        await asyncio.sleep(lease.timeout_s / 3)
        try:
            held = await asyncio.to_thread(lease.renew)
        except sqlite3.Error as exc:
            logger.warning("cannot renew the lease of %s: %s", lease.where, exc)
            continue
        if not held:
            logger.error(
                "lost the lease of %s (epoch %s): another server may lead now; stopping",
                lease.where,
                lease.epoch,
            )
            lost()
            return
