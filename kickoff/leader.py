"""Leading a PostgreSQL database several servers share (SPEC §14): a standby waits for the
lease (store/lease.py) behind a gate, the leader renews it, and gives it up when it stops.

A standby answers /healthz (`"role": "standby"` and the leader's address) and the reads
(api/routes.py marks them: tasks, workers, groups, stats, events, metrics) from its warm
state and the shared projections, saying so in `X-Kickoff-Standby: seq=N` (how far it has
read the log). It refuses every other request (writes, the worker protocol, task output,
the event stream) with 503 `not_leader`, naming the leader (also in `X-Kickoff-Leader`):
clients given several addresses (`--server a:3355,b:3355`) move on to the next one. It
takes the lease once the leader's lapses (its timeout, `--lease-timeout`) and serves.
Meanwhile it keeps the state warm (`Follower`): loaded from the checkpoint once, then each
commit's rows folded in as the leader's NOTIFY wakes it (the log read by seq is the
truth; without a wake-up it looks every second), so a takeover folds a short tail only.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import orjson

from kickoff.database import catch_up, open_connection, recorder_of
from kickoff.dblocation import ServerUrl
from kickoff.errors import DatabaseRefused
from kickoff.projections import checkpoint
from kickoff.state.fold import State
from kickoff.store.lease import NOTIFY_CHANNEL, Lease

logger = logging.getLogger(__name__)

ASGIApp = Callable[..., Any]


class Gate:
    """The server's app once it leads; until then, a standby's answers."""

    def __init__(
        self, app: ASGIApp, is_read: Callable[[dict[str, Any]], bool] = lambda scope: False
    ) -> None:
        self.app = app
        self.is_read = is_read  # a request a standby answers
        self.leading = False
        self.leader = ""  # the address of the server that leads, as the lease names it
        self.seq: Callable[[], int] | None = None  # how far a standby has read, once it reads

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.leading or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seq = self.seq
        if seq is not None and self.is_read(scope):
            await self.app(scope, receive, self._standby(send, seq))
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

    def _standby(self, send: Any, seq: Callable[[], int]) -> Any:
        """`send`, its response headed `X-Kickoff-Standby: seq=N` (and the leader's name)."""

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", ()),
                        (b"x-kickoff-standby", f"seq={seq()}".encode()),
                        (b"x-kickoff-leader", self.leader.encode()),
                    ],
                }
            await send(message)

        return sending


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


class Follower:
    """A standby's state, kept current with the log on a thread of its own."""

    def __init__(self, where: ServerUrl) -> None:
        self.conn = open_connection(where)  # (only reads; LISTEN needs a writable session)
        self.recorder = recorder_of(self.conn)
        with self.recorder.snapshot():  # the leader writes meanwhile: one state of it
            self.state, _ = checkpoint.load(self.conn, self.recorder)
        self.failure: DatabaseRefused | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kickoff-follow", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raw: Any = getattr(self.conn, "raw", None)
        try:
            raw.execute(f"LISTEN {NOTIFY_CHANNEL}")
            while not self._stop.is_set():
                for _ in raw.notifies(timeout=1.0, stop_after=1):
                    pass
                catch_up(self.recorder, self.state)
        except DatabaseRefused as exc:
            self.failure = exc
        except Exception as exc:  # the connection: the takeover loads afresh
            self.failure = DatabaseRefused(f"cannot follow the log: {exc}")
            logger.warning("standby: %s; the takeover loads the state afresh", self.failure)

    def take(self) -> State | None:
        """Stop following; the state (None when following failed: load it afresh)."""
        self._stop.set()
        self._thread.join()
        self.conn.close()
        return None if self.failure is not None else self.state
