"""The worker's standing with its server: registering (again after a loss), the
registration's lease (renewed by heartbeats, made to hold by `lease_guard.py`'s timer and
warden), losing the registration, saying goodbye.

A registration is lost when the server says it no longer knows it, or when its lease ran
out (`lease.py` says when): then its tasks are killed, nobody takes their reports, and the
worker registers again as soon as it claims. Heartbeats themselves are `heartbeat.py`'s.
"""

from __future__ import annotations

import asyncio
import logging

from kickoff import defaults
from kickoff.errors import Conflict, NotFound
from kickoff.resources import show
from kickoff.worker import replies
from kickoff.worker.core import Core, Mode
from kickoff.worker.lease import Lease, boottime
from kickoff.worker.lease_guard import LeaseGuard
from kickoff.worker.ledger import Key
from kickoff.worker.replies import BadReply, Registration

logger = logging.getLogger(__name__)


class Session:
    """Keeps one worker registered with its server, and knows when it is not: registers,
    tracks the registration's lease, loses the registration (killing its tasks), says
    goodbye. `run_id` is what the worker's tasks carry, by which the warden finds them."""

    def __init__(self, core: Core, run_id: str) -> None:
        self.core = core
        self.guard = LeaseGuard(core, run_id, on_due=self.check_lease)
        self.lease: Lease | None = None  # the current registration's
        self.sent_tags: frozenset[str] = frozenset()
        self.new_registration = asyncio.Event()
        self._lock = asyncio.Lock()

    async def register(self) -> Registration:
        """Register with the server, retrying while it cannot be reached.

        Raises:
            KickoffError: the server refused (wrong token, invalid tags or name), or its
                answer is not a registration (BadReply).
        """
        core, config = self.core, self.core.config
        tags = core.tags()
        body = {
            "name": config.name,
            "tags": sorted(tags),
            "slots": config.slots,
            "host": config.host,
        }
        if config.resources:
            body["resources"] = dict(config.resources)
            body["gpu_ids"] = list(config.gpu_ids)
        sent = [boottime()]  # when the try that went through was sent: the lease's start
        answer = await core.call(
            "POST",
            "/v1/workers",
            what="register",
            json=body,
            on_send=lambda: sent.append(boottime()),
        )
        try:
            reg = replies.registration(answer)
        except BadReply as exc:
            raise BadReply(f"the server's answer to the registration is unusable: {exc}") from None
        self.sent_tags = tags
        self.lease = Lease(reg.heartbeat_timeout_s, sent[-1], grace_s=config.grace_s)
        logger.info(
            "registered worker=%s name=%s tags=%s slots=%d resources=%s heartbeat=%.2fs",
            reg.worker_id,
            config.name,
            ",".join(sorted(tags)) or "-",
            config.slots,
            show(config.resources) or "-",
            reg.heartbeat_interval_s,
        )
        return reg

    async def registered(self) -> Registration | None:
        """The current registration; registers again after a loss (never once stopping)."""
        core = self.core
        async with self._lock:
            if core.registration is None and core.mode is Mode.RUNNING:
                core.registration = reg = await self.register()
                self._use_log_dir(reg)
                self._leased(reg)
                self.new_registration.set()
                core.changed()
            return core.registration

    def lost(self, reg: Registration, what: str, why: str, *, grace_s: float | None = None) -> None:
        """The server no longer knows this registration, or its lease ran out: its tasks
        are (or will be) requeued elsewhere; kill them."""
        core = self.core
        if core.registration is not reg:
            return
        core.registration = None
        core.lost_ids.add(reg.worker_id)
        self.guard.cancel()
        doomed = [job for job in core.jobs.values() if job.worker_id == reg.worker_id]
        logger.warning(
            "%s: the server lost worker=%s (%s); killing its %d task(s)%s",
            what,
            reg.worker_id,
            why,
            len(doomed),
            " and registering again" if core.mode is Mode.RUNNING else "",
        )
        for job in doomed:
            job.abandoned = True
            job.stop(cancelled=True, grace_s=grace_s)
        core.interrupt_claim()
        core.changed()

    def _use_log_dir(self, reg: Registration) -> None:
        """Task ids are only unique per server: each server's files get a directory."""
        core = self.core
        log_dir = core.config.log_dir / reg.server_id
        try:
            core.log_files.use(log_dir)
        except OSError as exc:  # each task then reports that it cannot make its file
            logger.error("cannot make the log directory %s: %s", log_dir, exc.strerror)
        else:
            if log_dir != core.log_dir:
                logger.info("task output goes to %s", log_dir)
        core.log_dir = log_dir

    async def deregister(self) -> None:
        """Say goodbye (the server requeues nothing: no task is left), for a while at most."""
        core = self.core
        reg = core.registration
        if reg is None:
            return
        path = f"/v1/workers/{reg.worker_id}"
        try:
            async with asyncio.timeout(defaults.DEREGISTER_WAIT_S):
                done = await core.race(
                    core.call("DELETE", path, what="deregister"), core.deadline_passed
                )
        except TimeoutError:
            done = False
        except (NotFound, Conflict):
            logger.info("worker=%s was already gone", reg.worker_id)
            done = True
        else:
            if done:
                logger.info("deregistered worker=%s", reg.worker_id)
        if not done:
            logger.warning(
                "could not deregister worker=%s; the server will count it lost", reg.worker_id
            )
        core.registration = None

    def renew(self, reg: Registration, sent_at: float) -> None:
        """The server heard from `reg` no earlier than `sent_at` (boottime)."""
        if reg is self.core.registration and self.lease is not None:
            self.lease.renew(sent_at)
            self._leased(reg)

    def _leased(self, reg: Registration) -> None:
        """The lease of `reg` was renewed (or made): guard it (`LeaseGuard.guard`)."""
        lease = self.lease
        if lease is None or reg is not self.core.registration:
            return
        self.guard.guard(lease, self._keys(reg))

    def _keys(self, reg: Registration) -> list[Key]:
        return [job.key for job in self.core.jobs.values() if job.worker_id == reg.worker_id]

    def check_lease(self) -> bool:
        """Stop the tasks of a registration whose lease ran out (the worker could not
        reach the server, or was frozen): by its deadline, the server may count the worker
        lost and hand the tasks to another. True if it had run out."""
        reg, lease = self.core.registration, self.lease
        if reg is None or lease is None:
            return False
        left = lease.stop_at - boottime()
        if left > 0:
            self.guard.again(left)
            return False
        silent = boottime() - lease.renewed_at
        why = f"lease ran out: no word from the server for {silent:.1f}s"
        # by its deadline the warden finishes off what left their process groups
        self.guard.tell_warden(lease, self._keys(reg))
        self.lost(reg, "lease", why, grace_s=lease.stop_grace_s)
        return True
