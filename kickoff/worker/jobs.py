"""Running claimed tasks and reporting them: start (or refuse) what an answer names, watch
each job to its end, and deliver its report; while claiming, the report claims the next
tasks in the same request, so a busy worker needs one round trip per task.

A slot is free again only once its report is acknowledged, so the server's count of busy
slots and the worker's agree when it claims. A report is sent until the server takes or
refuses it, however long the server is away (`_retry.call`, the one retry loop), unless its
registration was lost meanwhile: then nobody will take it.
"""

from __future__ import annotations

import logging
from typing import Any

from kickoff.errors import Conflict, InvalidInput, KickoffError, NotFound, TooLarge
from kickoff.worker import replies
from kickoff.worker._retry import GaveUp
from kickoff.worker.core import LOST, Core, Mode
from kickoff.worker.ledger import Key
from kickoff.worker.outbox import Report
from kickoff.worker.output import OutputSender
from kickoff.worker.process import Assignment, Job, Outcome, TaskEnv
from kickoff.worker.replies import Refused, Registration
from kickoff.worker.session import Session

logger = logging.getLogger(__name__)

REFUSED_EXIT = 126  # what a shell reports for a command it cannot execute
REFUSALS = (Conflict, NotFound, InvalidInput, TooLarge)  # a report the server will never take


def _retry_report(exc: KickoffError) -> bool:
    """A report is tried again on anything but a refusal (an outage, a 503, a 500)."""
    return not isinstance(exc, REFUSALS)


class Jobs:
    """The attempts on one worker, from start to acknowledged report: starts (or refuses,
    or gives back) what a claim answer names, waits for each job's end, and delivers its
    report, claiming the next tasks with it (whose start closes the loop)."""

    def __init__(self, core: Core, session: Session, output: OutputSender, env: TaskEnv) -> None:
        self.core = core
        self.session = session
        self.output = output
        self.env = env  # what every task's environment starts from

    def take(self, answer: Any, reg: Registration, *, limit: int, mark: int) -> int:
        """Start (or refuse) the tasks of a claim answer to the question `mark` (see
        ledger.py); returns how many it named."""
        core = self.core
        items, problems = replies.claimed(answer, limit=limit)
        for problem in problems:
            logger.warning("ignoring part of the claim answer: %s", problem)
        if items and reg is not core.registration:
            logger.warning("dropping %d task(s) claimed by a lost registration", len(items))
            return len(items)
        for item in items:
            if core.heard_of((item.task_id, item.attempt), mark):
                logger.warning("ignoring task=%d: it is already on this worker", item.task_id)
            elif isinstance(item, Refused):
                self.refuse(item, reg)
            else:
                self.start(item, reg)
        return len(items)

    def start(self, assignment: Assignment, reg: Registration) -> None:
        """Spawn the task's process right away (before anything else of the answer that
        named it is handled), then watch it in its own asyncio task; or refuse it when it
        asks for more than is free here, or for devices that are not (`replies.misfit`)."""
        core = self.core
        running = (
            job.assignment
            for job in core.jobs.values()
            if job.worker_id == reg.worker_id and not job.abandoned
        )
        misfit = replies.misfit(
            assignment, declared=core.config.resources, devices=core.config.gpu_ids, running=running
        )
        if misfit is not None:
            self.refuse(misfit, reg)
            return
        job = Job(
            assignment,
            worker_id=reg.worker_id,
            log_dir=core.log_dir,
            env=self.env,
            grace_s=core.config.grace_s,
            log_files=core.log_files,
            loop=core.loop,
            keep_output=True,
        )
        core.jobs[assignment.task_id] = job
        if core.mode is Mode.ABORTING:  # claimed as we stopped: report it back unrun
            job.stop(cancelled=True)
        job.start()
        core.spawn(self.run(job))

    def refuse(self, refused: Refused, reg: Registration) -> None:
        logger.error(
            "refusing task=%d attempt=%d: %s", refused.task_id, refused.attempt, refused.reason
        )
        outcome = Outcome(
            exit_code=REFUSED_EXIT,
            duration_s=0.0,
            output_tail=f"kickoff worker: refused to run this task: {refused.reason}\n",
        )
        self.put(
            Report(
                task_id=refused.task_id,
                attempt=refused.attempt,
                worker_id=reg.worker_id,
                outcome=outcome,
            )
        )

    def give_back(self, item: Assignment | Refused, reg: Registration) -> None:
        """A task the server says this worker runs, that it will not start: report it
        cancelled, unrun (the server requeues it)."""
        logger.warning(
            "giving back task=%d attempt=%d: its claim answer was lost", item.task_id, item.attempt
        )
        outcome = Outcome(
            exit_code=-1,
            duration_s=0.0,
            output_tail="kickoff worker: never started (the claim answer was lost)\n",
            cancelled=True,
        )
        self.put(
            Report(
                task_id=item.task_id, attempt=item.attempt, worker_id=reg.worker_id, outcome=outcome
            )
        )

    async def run(self, job: Job) -> None:
        """Wait for the job's end, then deliver its report (unless it was abandoned)."""
        core = self.core
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
            if core.jobs.get(job.task_id) is job:
                del core.jobs[job.task_id]
        try:
            rest = await self.output.finish(job)
        except Exception:
            logger.exception("task=%d attempt=%d: its last output was not sent", *job.key)
            rest = None
        self.session.check_lease()  # woken past the lease: the warden killed it, it did not fail
        if job.abandoned:
            core.ledger.ended(job.key)
            logger.info(
                "dropped the report of task=%d attempt=%d: the server requeued it",
                job.task_id,
                job.attempt,
            )
            core.changed()
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
        await self.deliver(
            Report(
                task_id=job.task_id,
                attempt=job.attempt,
                worker_id=job.worker_id,
                outcome=outcome,
                output=rest,
            )
        )

    def put(self, report: Report) -> None:
        """Deliver a report in the background."""
        self.core.outbox.add(report)  # its slot is busy from now on
        self.core.spawn(self.deliver(report))

    async def deliver(self, report: Report) -> None:
        """Send a report until the server takes or refuses it (or its registration is lost)."""
        core = self.core
        core.outbox.add(report)
        try:
            if report.worker_id in core.lost_ids:
                raise GaveUp(report.what)
            await self._send(report)
        except GaveUp:
            logger.info("dropped the %s: the server requeued it", report.what)
        except (Conflict, NotFound) as exc:
            logger.warning("the server refused the %s: %s", report.what, exc.message)
        except (InvalidInput, TooLarge) as exc:
            logger.error("the server refused the %s as invalid: %s", report.what, exc.message)
        except Exception:
            logger.exception("dropped the %s", report.what)
        finally:
            core.outbox.remove(report.key)
            self._settled(report.key)

    def _settled(self, key: Key) -> None:
        """A report left the outbox. While the report's own claim filled its slot again
        (a busy worker, task after task), no waiter has anything new to look at: the claim
        loop waits for a free slot, the end of a run for nothing left to do, and the
        burst mode for either."""
        core = self.core
        core.ledger.ended(key)
        if core.mode is not Mode.RUNNING or core.free_slots() > 0:
            core.changed()

    async def _send(self, report: Report) -> None:
        """One report, as one request tried again until it gets an answer. While claiming,
        the same request claims the tasks for the slots free once it is taken, without
        waiting (the claim loop does the long-poll).

        Raises:
            KickoffError: the server refused the report.
            GaveUp: its registration was lost meanwhile.
        """
        core = self.core
        reg = core.registration
        # + the slot of this report; less than one while reports of attempts the server
        # already ended are still out (their slots count as busy until acknowledged)
        limit = core.free_slots() + 1
        claiming = (
            limit > 0
            and core.mode is Mode.RUNNING
            and reg is not None
            and reg.worker_id == report.worker_id
        )
        body = report.body()
        if claiming:
            body["claim"] = {"max_tasks": limit, "wait_s": 0}
        answer_lost = False

        def maybe_sent() -> None:
            nonlocal answer_lost
            answer_lost = True
            if claiming:
                core.reconcile_soon()

        mark = core.ledger.ask()
        try:
            answer = await core.call(
                "POST",
                f"/v1/tasks/{report.task_id}/complete",
                what=report.what,
                json=body,
                retry=_retry_report,
                give_up=lambda: report.worker_id in core.lost_ids,
                on_maybe_sent=maybe_sent,
            )
        except Conflict as exc:
            if not answer_lost:
                raise
            # An earlier try reached the server and only its answer was lost: the report
            # counted then (or the attempt is over anyway). Delivered; nothing to retry.
            logger.info("the server already has the %s (%s)", report.what, exc.message)
        else:
            if claiming and reg is not None:
                self._after_claim_error(answer, reg, report.what)
                self.take(answer, reg, limit=limit, mark=mark)
        finally:
            core.ledger.answered(mark)

    def _after_claim_error(self, answer: Any, reg: Registration, what: str) -> None:
        """The report counted but its claim failed: a lost worker registers again; any other
        reason leaves the next claim to the claim loop."""
        error = replies.claim_error(answer)
        if error is None:
            return
        if isinstance(error, LOST):
            self.session.lost(reg, f"claim with the {what}", error.message)
        else:
            logger.warning("the claim with the %s failed: %s", what, error.message)
