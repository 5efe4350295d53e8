"""The worker: register, claim by long-poll, run, heartbeat, report; ride out server restarts.

One event loop and one HTTP client. Each activity is a small loop doing one step at a
time: `claim_step` fills free slots, `heartbeat_step` reports every running task in one
request and stops the ones the server names, `tags_step` follows the tags file. Each
claimed task runs in its own asyncio task that waits for its process and then delivers its
report through the outbox. A slot is free again only once its report is acknowledged, so
the server's count of busy slots and ours agree when we claim; while claiming, a report
also claims the next task, so a busy worker needs one round trip per task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from kickoff import defaults
from kickoff.errors import (
    Conflict,
    IllegalTransition,
    InvalidInput,
    KickoffError,
    NotFound,
    ServerUnreachable,
    Unavailable,
)
from kickoff.tags import check_tags
from kickoff.worker import _retry, logfiles, replies
from kickoff.worker._retry import Backoff, Requester
from kickoff.worker.lease import Lease, boottime
from kickoff.worker.ledger import Key, Ledger
from kickoff.worker.outbox import Outbox, Report
from kickoff.worker.process import Assignment, Job, Outcome, TaskEnv, seal_inherited_fds
from kickoff.worker.replies import BadReply, Refused, Registration
from kickoff.worker.tagsfile import TagsFile
from kickoff.worker.warden import Warden

logger = logging.getLogger(__name__)

T = TypeVar("T")

LOST = (NotFound, IllegalTransition)  # what a claim/heartbeat gets once the worker was lost
CLAIM_WAIT_S = 25.0  # long-poll length; the HTTP timeout adds CLAIM_SLACK_S on top
CLAIM_SLACK_S = 15.0
TAGS_POLL_S = 1.0
PRUNE_EVERY_S = 10.0
ABORT_DEADLINE_S = 10.0  # after a second Ctrl-C: time left to report and deregister
# Every report delivered, the server still unreachable: how long to keep trying to say
# goodbye. Not forever (a `systemctl stop` would hang): the server counts it lost anyway.
DEREGISTER_WAIT_S = 5.0
REFUSED_EXIT = 126  # what a shell reports for a command it cannot execute
INTERRUPTED_EXIT = 130


class Mode(StrEnum):
    RUNNING = "running"  # claiming
    DRAINING = "draining"  # no more claims; running tasks finish and are reported
    ABORTING = "aborting"  # running tasks are killed and reported cancelled


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """Everything `kickoff worker` was told."""

    name: str
    log_dir: Path
    tags: frozenset[str] = frozenset()
    slots: int = defaults.SLOTS
    tags_file: Path | None = None
    burst: bool = False
    grace_s: float = defaults.CANCEL_GRACE_S
    claim_wait_s: float = CLAIM_WAIT_S
    host: str | None = None
    keep_logs: int = logfiles.KEEP_LOGS  # task log files kept in log_dir; 0 keeps them all
    warden: bool = True  # a warden process stops the tasks if this worker dies or freezes
    exit_with_fd: int | None = None  # end of file on it: who started the worker is gone


class Worker:
    """A kickoff worker bound to one server through one client."""

    def __init__(self, client: Requester, config: WorkerConfig) -> None:
        self.client = client
        self.config = config
        self.mode = Mode.RUNNING
        self.registration: Registration | None = None
        self.jobs: dict[int, Job] = {}
        self.file_tags: frozenset[str] = frozenset()
        self._lost_ids: set[str] = set()
        self.ledger = Ledger()
        self.outbox = Outbox(
            self.report_step, gone=self._lost_ids.__contains__, settled=self._settled
        )
        self._tags_file = TagsFile(config.tags_file) if config.tags_file else None
        self._sent_tags: frozenset[str] = frozenset()
        self._run_id = secrets.token_hex(16)
        self._env = TaskEnv(os.environ, run=self._run_id)
        self.warden = Warden(self._run_id, grace_s=config.grace_s) if config.warden else None
        self.lease: Lease | None = None  # the current registration's
        self._lease_timer: asyncio.TimerHandle | None = None
        self._new_registration = asyncio.Event()
        self._reconciling: asyncio.Task[None] | None = None
        self._unreachable_since: float | None = None  # heartbeats failing since (boottime)
        self._stopped: set[Key] = set()  # attempts killed because this worker is stopping
        self._log_files = logfiles.LogFiles(config.log_dir)
        self.log_dir = config.log_dir  # this server's directory in it, once registered
        self._change = asyncio.Event()
        self._register_lock = asyncio.Lock()
        self._claim_request: asyncio.Task[int] | None = None
        self._reconcile_at: float | None = None
        self._abort_deadline: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # set by run()

    # -- state ------------------------------------------------------------------

    def tags(self, file_tags: frozenset[str] | None = None) -> frozenset[str]:
        """The tags to register with: --have plus the tags file's.

        Raises:
            InvalidInput: more tags than a worker may have.
        """
        extra = self.file_tags if file_tags is None else file_tags
        return check_tags(self.config.tags | extra, field="tags", limit=defaults.MAX_WORKER_TAGS)

    def free_slots(self) -> int:
        return self.config.slots - len(self.jobs) - len(self.outbox)

    def busy(self) -> bool:
        return bool(self.jobs or self.outbox)

    def _changed(self) -> None:
        """Wake everything waiting for a slot, a report, or a mode change."""
        self._change.set()
        self._change = asyncio.Event()

    def _heard_of(self, key: Key, mark: int) -> bool:
        """Whether this worker holds the attempt, or let go of it since it asked the
        question `mark`: then an answer naming it is old news, never a task to start."""
        return key[0] in self.jobs or key in self.outbox or self.ledger.ended_since(key, mark)

    def _settled(self, key: Key) -> None:
        """A report left the outbox. While the report's own claim filled its slot again
        (a busy worker, task after task), no waiter has anything new to look at: the claim
        loop waits for a free slot, the end of a run for nothing left to do, and the
        burst mode for either."""
        self.ledger.ended(key)
        if self.mode is not Mode.RUNNING or self.free_slots() > 0:
            self._changed()

    async def _wait_change(self, timeout_s: float | None = None) -> None:
        change = self._change
        if timeout_s is None:
            await change.wait()
            return
        # asyncio.timeout, not wait_for: 3.11's wait_for loses a cancel that arrives as
        # the awaited thing finishes, and a stopping worker then waits for that task forever
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await change.wait()

    def _time_left(self) -> float | None:
        if self._abort_deadline is None:
            return None
        return max(0.0, self._abort_deadline - time.monotonic())

    def _deadline_passed(self) -> bool:
        return self._abort_deadline is not None and time.monotonic() >= self._abort_deadline

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = (self._loop or asyncio.get_running_loop()).create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        on_maybe_sent: Callable[[], None] | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> Any:
        """One request, retried while the server is away (see `_retry.call`).

        `on_maybe_sent()` runs when a try failed after it may have reached the server. For
        a claim that is `_reconcile_soon`: the server may have handed us tasks whose answer
        was lost; the heartbeat loop looks.

        Raises:
            KickoffError: any other error answer (the caller decides what it means).
        """
        reg = self.registration
        return await _retry.call(
            self.client,
            method,
            path,
            what=what,
            max_delay_s=reg.heartbeat_interval_s if reg else _retry.BACKOFF_MAX_S,
            json=json,
            params=params,
            timeout_s=timeout_s,
            on_maybe_sent=on_maybe_sent,
            on_send=on_send,
        )

    def _reconcile_soon(self) -> None:
        self._reconcile_at = time.monotonic()

    # -- registration -----------------------------------------------------------

    async def register(self) -> Registration:
        """Register with the server, retrying while it cannot be reached.

        Raises:
            KickoffError: the server refused (wrong token, invalid tags or name), or its
                answer is not a registration (BadReply).
        """
        tags = self.tags()
        body = {
            "name": self.config.name,
            "tags": sorted(tags),
            "slots": self.config.slots,
            "host": self.config.host,
        }
        sent = [boottime()]
        answer = await self._call(
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
        self._sent_tags = tags
        self.lease = Lease(reg.heartbeat_timeout_s, sent[-1], grace_s=self.config.grace_s)
        logger.info(
            "registered worker=%s name=%s tags=%s slots=%d heartbeat=%.2fs",
            reg.worker_id,
            self.config.name,
            ",".join(sorted(tags)) or "-",
            self.config.slots,
            reg.heartbeat_interval_s,
        )
        return reg

    async def _registered(self) -> Registration | None:
        """The current registration; registers again after a loss (never once stopping)."""
        async with self._register_lock:
            if self.registration is None and self.mode is Mode.RUNNING:
                self.registration = reg = await self.register()
                self._use_log_dir(reg)
                self._leased(reg)
                self._new_registration.set()
                self._changed()
            return self.registration

    def _lost(
        self, reg: Registration, what: str, why: str, *, grace_s: float | None = None
    ) -> None:
        """The server no longer knows this registration, or its lease ran out: its tasks
        are (or will be) requeued elsewhere."""
        if self.registration is not reg:
            return
        self.registration = None
        self._lost_ids.add(reg.worker_id)
        if self._lease_timer is not None:
            self._lease_timer.cancel()
        doomed = [job for job in self.jobs.values() if job.worker_id == reg.worker_id]
        logger.warning(
            "%s: the server lost worker=%s (%s); killing its %d task(s)%s",
            what,
            reg.worker_id,
            why,
            len(doomed),
            " and registering again" if self.mode is Mode.RUNNING else "",
        )
        for job in doomed:
            job.abandoned = True
            job.stop(cancelled=True, grace_s=grace_s)
        self._interrupt_claim()
        self._changed()

    def _use_log_dir(self, reg: Registration) -> None:
        """Task ids are only unique per server: each server's files get a directory."""
        log_dir = self.config.log_dir / reg.server_id
        try:
            self._log_files.use(log_dir)
        except OSError as exc:  # each task then reports that it cannot make its file
            logger.error("cannot make the log directory %s: %s", log_dir, exc.strerror)
        else:
            if log_dir != self.log_dir:
                logger.info("task output goes to %s", log_dir)
        self.log_dir = log_dir

    # -- the lease --------------------------------------------------------------

    def _leased(self, reg: Registration) -> None:
        """The lease of `reg` was renewed (or made): pass it on to the warden and set the
        timer that stops the tasks if it runs out first."""
        lease = self.lease
        if lease is None or reg is not self.registration:
            return
        if self.warden is not None:
            running = [job.key for job in self.jobs.values() if job.worker_id == reg.worker_id]
            self.warden.lease(lease.deadline, running)
        if self._lease_timer is not None:
            self._lease_timer.cancel()
        loop = self._loop or asyncio.get_running_loop()
        delay = max(0.0, lease.stop_at - boottime())
        self._lease_timer = loop.call_later(delay, self._check_lease)

    def _check_lease(self) -> bool:
        """Stop the tasks of a registration whose lease ran out (the worker could not
        reach the server, or was frozen): by its deadline, the server may count the worker
        lost and hand the tasks to another. True if it had run out."""
        reg, lease = self.registration, self.lease
        if reg is None or lease is None:
            return False
        left = lease.stop_at - boottime()
        if left > 0:
            loop = self._loop or asyncio.get_running_loop()
            self._lease_timer = loop.call_later(left, self._check_lease)
            return False
        silent = boottime() - lease.renewed_at
        why = f"lease ran out: no word from the server for {silent:.1f}s"
        if self.warden is not None:  # by its deadline it finishes off what left their groups
            doomed = [job.key for job in self.jobs.values() if job.worker_id == reg.worker_id]
            self.warden.lease(lease.deadline, doomed)
        self._lost(reg, "lease", why, grace_s=lease.stop_grace_s)
        return True

    def _renew(self, reg: Registration, sent_at: float) -> None:
        if reg is self.registration and self.lease is not None:
            self.lease.renew(sent_at)
            self._leased(reg)

    async def _deregister(self) -> None:
        reg = self.registration
        if reg is None:
            return
        path = f"/v1/workers/{reg.worker_id}"
        try:
            async with asyncio.timeout(DEREGISTER_WAIT_S):
                done = await self._race(
                    self._call("DELETE", path, what="deregister"), self._deadline_passed
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
        self.registration = None

    # -- claiming ---------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = Backoff()
        while self.mode is Mode.RUNNING:
            try:
                await self.claim_step()
                backoff.reset()
            except KickoffError as exc:  # say, a registration refused or answered oddly
                logger.error("claim failed: %s", exc.message)
                await asyncio.sleep(backoff.delay())
            except Exception:
                logger.exception("claim failed")
                await asyncio.sleep(backoff.delay())

    async def claim_step(self) -> None:
        """Wait for a free slot; then claim up to that many tasks (long-poll) and start them."""
        free = self.free_slots()
        if free <= 0:
            await self._wait_change()
            return
        reg = await self._registered()
        if reg is None or self.mode is not Mode.RUNNING:
            return
        wait_s = 0.0 if self.config.burst else self.config.claim_wait_s
        mark = self.ledger.ask()

        async def claim_and_start() -> int:
            answer = await self._call(
                "POST",
                f"/v1/workers/{reg.worker_id}/claim",
                what="claim",
                json={"max_tasks": free, "wait_s": wait_s},
                timeout_s=wait_s + CLAIM_SLACK_S,
                on_maybe_sent=self._reconcile_soon,
            )
            return self._take(answer, reg, limit=free, mark=mark)  # once the answer is in

        self._claim_request = asyncio.get_running_loop().create_task(claim_and_start())
        try:
            started = await self._claim_request
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return  # interrupted: stopping, or the registration was lost
        except LOST as exc:
            self._lost(reg, "claim", exc.message)
            return
        finally:
            self._claim_request = None
            self.ledger.answered(mark)
        if self.config.burst and not started:
            if self.busy():
                await self._wait_change()
            else:
                logger.info("burst: nothing left that this worker can run")
                self._set_mode(Mode.DRAINING)

    def _take(self, answer: Any, reg: Registration, *, limit: int, mark: int) -> int:
        """Start (or refuse) the tasks of a claim answer to the question `mark`; returns
        how many it named."""
        items, problems = replies.claimed(answer, limit=limit)
        for problem in problems:
            logger.warning("ignoring part of the claim answer: %s", problem)
        if items and reg is not self.registration:
            logger.warning("dropping %d task(s) claimed by a lost registration", len(items))
            return len(items)
        for item in items:
            if self._heard_of((item.task_id, item.attempt), mark):
                logger.warning("ignoring task=%d: it is already on this worker", item.task_id)
            elif isinstance(item, Refused):
                self._refuse(item, reg)
            else:
                self._start(item, reg)
        return len(items)

    def _interrupt_claim(self) -> bool:
        request = self._claim_request
        if request is None or request.done():
            return False
        request.cancel()
        return True

    # -- running and reporting --------------------------------------------------

    def _start(self, assignment: Assignment, reg: Registration) -> None:
        """Spawn the task's process right away (before anything else of the answer that
        named it is handled), then watch it in its own asyncio task."""
        job = Job(
            assignment,
            worker_id=reg.worker_id,
            log_dir=self.log_dir,
            env=self._env,
            grace_s=self.config.grace_s,
            log_files=self._log_files,
            loop=self._loop,
        )
        self.jobs[assignment.task_id] = job
        if self.mode is Mode.ABORTING:  # claimed as we stopped: report it back unrun
            job.stop(cancelled=True)
        job.start()
        self._spawn(self._run_job(job))

    def _refuse(self, refused: Refused, reg: Registration) -> None:
        logger.error(
            "refusing task=%d attempt=%d: %s", refused.task_id, refused.attempt, refused.reason
        )
        outcome = Outcome(
            exit_code=REFUSED_EXIT,
            duration_s=0.0,
            output_tail=f"kickoff worker: refused to run this task: {refused.reason}\n",
        )
        report = Report(
            task_id=refused.task_id,
            attempt=refused.attempt,
            worker_id=reg.worker_id,
            outcome=outcome,
        )
        self.outbox.put(report)

    async def _run_job(self, job: Job) -> None:
        try:
            outcome = await job.run()
        except Exception:
            logger.exception("task=%d attempt=%d: the worker failed", job.task_id, job.attempt)
            outcome = Outcome(
                exit_code=1,
                duration_s=0.0,
                output_tail="kickoff worker: internal error while running the task\n",
                cancelled=job.cancelled,
            )
        finally:
            if self.jobs.get(job.task_id) is job:
                del self.jobs[job.task_id]
        self._check_lease()  # woken past the lease: the warden killed it, it did not fail
        if job.abandoned:
            self.ledger.ended(job.key)
            logger.info(
                "dropped the report of task=%d attempt=%d: the server requeued it",
                job.task_id,
                job.attempt,
            )
            self._changed()
            return
        # One line per task at INFO would cost a busy worker more than its HTTP requests:
        # a clean success is DEBUG, anything else INFO.
        clean = outcome.exit_code == 0 and not outcome.timed_out and not outcome.cancelled
        logger.log(
            logging.DEBUG if clean else logging.INFO,
            "finished task=%d attempt=%d exit=%d in %.2fs%s",
            job.task_id,
            job.attempt,
            outcome.exit_code,
            outcome.duration_s,
            " (timed out)" if outcome.timed_out else " (cancelled)" if outcome.cancelled else "",
        )
        report = Report(
            task_id=job.task_id, attempt=job.attempt, worker_id=job.worker_id, outcome=outcome
        )
        await self.outbox.deliver(report)

    async def report_step(self, report: Report) -> None:
        """Send one report. While claiming, the same request claims the tasks for the slots
        free once it is taken, without waiting (the claim loop does the long-poll).

        Raises:
            KickoffError: the server refused the report, or answered with an error.
        """
        reg = self.registration
        # + the slot of this report; less than one while reports of attempts the server
        # already ended are still out (their slots count as busy until acknowledged)
        limit = self.free_slots() + 1
        claiming = (
            limit > 0
            and self.mode is Mode.RUNNING
            and reg is not None
            and reg.worker_id == report.worker_id
        )
        body = report.body()
        if claiming:
            body["claim"] = {"max_tasks": limit, "wait_s": 0}
        path = f"/v1/tasks/{report.task_id}/complete"
        what = report.what
        answer_lost = False

        def maybe_sent() -> None:
            nonlocal answer_lost
            answer_lost = True
            if claiming:
                self._reconcile_soon()

        mark = self.ledger.ask()
        try:
            answer = await self._call("POST", path, what=what, json=body, on_maybe_sent=maybe_sent)
        except Conflict as exc:
            if not answer_lost:
                raise
            # An earlier try reached the server and only its answer was lost: the report
            # counted then (or the attempt is over anyway). Delivered; nothing to retry.
            logger.info("the server already has the %s (%s)", what, exc.message)
        else:
            if claiming and reg is not None:
                self._after_claim_error(answer, reg, what)
                self._take(answer, reg, limit=limit, mark=mark)
        finally:
            self.ledger.answered(mark)

    def _after_claim_error(self, answer: Any, reg: Registration, what: str) -> None:
        """The report counted but its claim failed: a lost worker registers again; any other
        reason leaves the next claim to the claim loop."""
        error = replies.claim_error(answer)
        if error is None:
            return
        if isinstance(error, LOST):
            self._lost(reg, f"claim with the {what}", error.message)
        else:
            logger.warning("the claim with the %s failed: %s", what, error.message)

    # -- heartbeats and reconciliation ------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            reg = await self._registered()
            lease = self.lease
            if reg is None or lease is None:  # stopping while lost: nothing to renew
                await self._wait_change()
                continue
            self._new_registration.clear()
            delay = lease.renewed_at + reg.heartbeat_interval_s - boottime()
            if delay > 0:
                with contextlib.suppress(TimeoutError):  # a new registration beats anew
                    async with asyncio.timeout(delay):
                        await self._new_registration.wait()
                if reg is not self.registration:
                    continue
            try:
                await self.heartbeat_step()
            except Exception:
                logger.exception("heartbeat failed")

    async def heartbeat_step(self) -> None:
        """Report every running task in one request, once (the next beat is the retry);
        renew the lease; stop the tasks the answer names."""
        reg = await self._registered()
        if reg is None or self._check_lease():
            return
        running = [
            [job.task_id, job.attempt]
            for job in self.jobs.values()
            if job.worker_id == reg.worker_id and not job.abandoned
        ]
        path = f"/v1/workers/{reg.worker_id}/heartbeat"
        sent = boottime()
        try:
            answer = await self.client.request(
                "POST", path, json={"running": running}, timeout=reg.heartbeat_interval_s
            )
        except LOST as exc:
            self._lost(reg, "heartbeat", exc.message)
            return
        except (ServerUnreachable, Unavailable) as exc:
            self._unreachable(reg, exc, sent)
            return
        except KickoffError as exc:
            logger.error("heartbeat refused: %s", exc.message)
            return
        self._reachable(reg)
        self._renew(reg, sent)
        for task_id in replies.cancel_ids(answer):
            job = self.jobs.get(task_id)
            if job is None or job.worker_id != reg.worker_id:
                continue
            if not job.cancelled:
                logger.info("cancelling task=%d attempt=%d", job.task_id, job.attempt)
            job.stop(cancelled=True)
        if self._reconcile_at is not None and time.monotonic() >= self._reconcile_at:
            self._reconcile_at = None
            if self._reconciling is None or self._reconciling.done():
                # beside the heartbeats: its retries must not hold up the next renewal
                self._reconciling = self._spawn(self._reconcile_quietly(reg))

    def _unreachable(self, reg: Registration, exc: KickoffError, sent: float) -> None:
        """A heartbeat failed. Refused (no server runs there) or 503 (it cannot write):
        nobody can count this worker lost meanwhile, so the lease is renewed."""
        if isinstance(exc, Unavailable) or _retry.refused(exc):
            self._renew(reg, sent)
        now = boottime()
        if self._unreachable_since is None:
            self._unreachable_since = now
        elif now - self._unreachable_since < _retry.WARN_EVERY_S:
            return
        else:
            self._unreachable_since = now
        logger.warning("heartbeat failed: %s", _retry.short(exc.message))

    def _reachable(self, reg: Registration) -> None:
        if self._unreachable_since is not None:
            self._unreachable_since = None
            logger.info("heartbeat of worker=%s went through", reg.worker_id)

    async def _reconcile_quietly(self, reg: Registration) -> None:
        try:
            await self.reconcile(reg)
        except KickoffError as exc:
            logger.error("reconcile failed: %s", exc.message)
        except Exception:
            logger.exception("reconcile failed")

    async def reconcile(self, reg: Registration) -> None:
        """Find tasks the server says this worker runs but it never heard of (a claim's
        answer lost on the way): run them while claiming, else give them back."""
        params = {
            "worker": reg.worker_id,
            "state": "running,cancelling",
            "limit": defaults.MAX_SLOTS,
        }
        mark = self.ledger.ask()
        try:
            answer = await self._call("GET", "/v1/tasks", what="reconcile", params=params)
            self._reconcile(answer, reg, mark)
        finally:
            self.ledger.answered(mark)

    def _reconcile(self, answer: Any, reg: Registration, mark: int) -> None:
        for raw in replies.task_list(answer):
            try:
                item = replies.assignment(raw, id_key="id")
            except BadReply:
                continue
            if raw.get("worker") != reg.worker_id or reg is not self.registration:
                continue
            if self._heard_of((item.task_id, item.attempt), mark):
                continue
            if isinstance(item, Refused):
                self._refuse(item, reg)
            elif self.mode is Mode.RUNNING and raw.get("state") == "running":
                logger.warning(
                    "adopting task=%d attempt=%d: its claim answer was lost",
                    item.task_id,
                    item.attempt,
                )
                self._start(item, reg)
            else:
                logger.warning(
                    "giving back task=%d attempt=%d: its claim answer was lost",
                    item.task_id,
                    item.attempt,
                )
                outcome = Outcome(
                    exit_code=-1,
                    duration_s=0.0,
                    output_tail="kickoff worker: never started (the claim answer was lost)\n",
                    cancelled=True,
                )
                self.outbox.put(
                    Report(
                        task_id=item.task_id,
                        attempt=item.attempt,
                        worker_id=reg.worker_id,
                        outcome=outcome,
                    )
                )

    # -- tags file --------------------------------------------------------------

    async def _tags_loop(self) -> None:
        while True:
            try:
                await self.tags_step()
            except Exception:
                logger.exception("tags update failed")
            await asyncio.sleep(TAGS_POLL_S)

    async def tags_step(self) -> None:
        """Re-read the tags file if it changed; send the new tag set to the server."""
        assert self._tags_file is not None
        try:
            changed = self._tags_file.poll()
            if changed is not None:
                self.tags(changed)  # refuse a file that makes too many tags
                self.file_tags = changed
        except (InvalidInput, OSError) as exc:
            logger.error("ignoring the tags file %s: %s", self._tags_file.path, exc)
            return
        reg = self.registration
        tags = self.tags()
        if reg is None or tags == self._sent_tags:
            return
        path = f"/v1/workers/{reg.worker_id}/tags"
        try:
            await self._call("POST", path, what="tags update", json={"set": sorted(tags)})
        except LOST as exc:
            self._lost(reg, "tags update", exc.message)
            return
        except KickoffError as exc:  # not retried until the file changes again
            logger.error("the server refused the tags %s: %s", ",".join(sorted(tags)), exc.message)
        else:
            logger.info("tags of worker=%s now %s", reg.worker_id, ",".join(sorted(tags)) or "-")
        if reg is self.registration:
            self._sent_tags = tags

    # -- log files --------------------------------------------------------------

    async def _prune_loop(self) -> None:
        while True:
            try:
                await self.prune_step()
            except Exception:
                logger.exception("pruning the log directory failed")
            await asyncio.sleep(PRUNE_EVERY_S)

    async def prune_step(self) -> None:
        """Delete the oldest task log files beyond `keep_logs` (in a thread: it lists the
        directory)."""
        running = {(job.task_id, job.attempt) for job in self.jobs.values()}
        deleted = await asyncio.to_thread(
            logfiles.prune, self.log_dir, keep=self.config.keep_logs, protect=running
        )
        if deleted:
            logger.debug("deleted %d old task log file(s)", deleted)

    # -- stopping ---------------------------------------------------------------

    def _set_mode(self, mode: Mode) -> None:
        self.mode = mode
        self._changed()

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM. First: stop claiming, let tasks finish. Second: kill them.
        Third: stop waiting for the server."""
        if self.mode is Mode.RUNNING:
            logger.info(
                "stopping: no new tasks; waiting for %d running task(s) (Ctrl-C again kills them)",
                len(self.jobs),
            )
            if self._interrupt_claim():  # the server may still hand it a task: look later
                self._reconcile_at = time.monotonic() + self.config.claim_wait_s + 1
            self._set_mode(Mode.DRAINING)
        elif self.mode is Mode.DRAINING:
            self.abort()
        else:
            logger.warning("exiting without waiting for the server")
            self._abort_deadline = time.monotonic()
            self._changed()

    def abort(self) -> None:
        """Kill every running task, report it cancelled (the server requeues it), exit."""
        logger.warning("killing %d running task(s)", len(self.jobs))
        self._abort_deadline = time.monotonic() + self.config.grace_s + ABORT_DEADLINE_S
        for job in self.jobs.values():
            self._stopped.add(job.key)
            job.stop(cancelled=True)
        self._set_mode(Mode.ABORTING)

    async def _race(self, aw: Awaitable[T], stop: Callable[[], bool]) -> bool:
        """Await aw unless stop() turns true first (then aw is cancelled); True if it ended."""
        task = asyncio.ensure_future(aw)
        try:
            while not task.done():
                if stop():
                    return False
                change = asyncio.ensure_future(self._wait_change(self._time_left()))
                await asyncio.wait({task, change}, return_when=asyncio.FIRST_COMPLETED)
                change.cancel()
            task.result()
            return True
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _until_idle(self) -> None:
        """Return once the worker stopped claiming and has nothing left to run or report
        (or, after a second Ctrl-C, once the deadline passed)."""
        while self.mode is Mode.RUNNING or self.busy():
            if self._deadline_passed():
                logger.warning("giving up on %d undelivered report(s)", len(self.outbox))
                return
            await self._wait_change(self._time_left())

    async def _shutdown(self, loops: list[asyncio.Task[None]]) -> None:
        """Stop everything (tasks are left only after a deadline: they are killed)."""
        self._stopped.update(job.key for job in self.jobs.values())
        if self._lease_timer is not None:
            self._lease_timer.cancel()
        for task in [*loops, *self._tasks]:
            task.cancel()
        for job in self.jobs.values():
            if job.process is not None:
                job.process.signal_group(signal.SIGKILL)
        await asyncio.gather(*loops, *self._tasks, return_exceptions=True)
        await self.outbox.aclose()
        self._log_files.close()

    def _start_warden(self) -> None:
        if self.warden is None:
            return
        try:
            self.warden.start()
        except OSError as exc:
            logger.error("cannot start the warden (tasks may outlive this worker): %s", exc)

    def _watch_parent(self, fd: int) -> None:
        """`kickoff up` holds the other end of this pipe: its end means `up` is gone."""
        os.set_blocking(fd, False)
        (self._loop or asyncio.get_running_loop()).add_reader(fd, self._parent_gone, fd)

    def _parent_gone(self, fd: int) -> None:
        try:
            if os.read(fd, 64):
                return  # nothing is ever written; only its end counts
        except BlockingIOError:
            return
        except OSError:
            pass
        (self._loop or asyncio.get_running_loop()).remove_reader(fd)
        os.close(fd)
        logger.warning("the process that started this worker is gone; stopping at once")
        if self.mode is not Mode.ABORTING:
            self.abort()
        self._abort_deadline = time.monotonic()
        self._changed()

    async def run(self) -> int:
        """Register and work until stopped; returns the exit code (0 after a clean stop).

        Raises:
            KickoffError: the server refused the registration (wrong token, bad tags).
            InvalidInput: the log directory or the tags file cannot be used.
        """
        try:
            self.config.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self._tags_file is not None:
                self.file_tags = self._tags_file.poll() or frozenset()
        except OSError as exc:
            raise InvalidInput(f"{exc.filename}: {exc.strerror}") from exc
        self.tags()
        self._loop = asyncio.get_running_loop()
        seal_inherited_fds()
        if self.config.exit_with_fd is not None:
            self._watch_parent(self.config.exit_with_fd)
        self._start_warden()
        try:
            if not await self._race(self._registered(), lambda: self.mode is not Mode.RUNNING):
                return 0
            self._log_files.top_up()
            loop = asyncio.get_running_loop()
            loops = [
                loop.create_task(self._claim_loop()),
                loop.create_task(self._heartbeat_loop()),
            ]
            if self._tags_file is not None:
                loops.append(loop.create_task(self._tags_loop()))
            if self.config.keep_logs > 0:
                loops.append(loop.create_task(self._prune_loop()))
            try:
                await self._until_idle()
                await self._deregister()
            finally:
                await self._shutdown(loops)
        finally:
            if self.warden is not None:  # it finishes off what left the groups we killed
                self.warden.close(sweep=self._stopped or None)
        return INTERRUPTED_EXIT if self.mode is Mode.ABORTING else 0
