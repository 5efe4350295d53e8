"""`why`'s reads: the parts of the log state/why.py's `explain` needs, fetched on the
service's reader, then explained against the state (GET /v1/tasks/{id}/why).

Bounded: the task's own events, per worker that could run it at most TOOK_SHOWN claims
(all counted), their submissions, and the workers' registrations and tag changes.

The explaining is state/why.py's (pure); this only reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kickoff.events import model as ev
from kickoff.state import decide
from kickoff.state import why as rules
from kickoff.store.chain import Recorded, Row

if TYPE_CHECKING:
    from kickoff.service import Service

WORKER_CHANGES = ["WorkerRegistered", "WorkerTagsChanged"]


def _decoded(rows: list[Row]) -> list[Recorded]:
    return [row.decode() for row in rows]


async def explain(service: Service, task_id: int) -> rules.Explanation:
    """Why the task is where it is, from the state and the log.

    Raises:
        NotFound: no task ever had this id.
    """
    decide.find_task(service.state, task_id)
    recorder = service.recorder
    own = _decoded(await service.query(recorder.select(task_id=task_id)))
    needs = rules.needs(service.state, task_id, own)
    claims: dict[str, list[Recorded]] = {}
    counts: dict[str, int] = {}
    submissions: dict[int, ev.TaskSubmitted] = {}
    if needs.after_seq is not None:
        for worker_id in needs.candidates:
            select = recorder.select(
                types=["TaskClaimed"],
                worker_id=worker_id,
                after_seq=needs.after_seq,
                limit=rules.TOOK_SHOWN,
                descending=True,
            )
            claims[worker_id] = _decoded(await service.query(select))
            count = recorder.count(
                types=["TaskClaimed"], worker_id=worker_id, after_seq=needs.after_seq
            )
            counts[worker_id] = await service.query(count)
        taken = {
            r.event.task_id
            for found in claims.values()
            for r in found
            if isinstance(r.event, ev.TaskClaimed)
        }
        for other in sorted(taken):
            found = _decoded(
                await service.query(recorder.select(task_id=other, types=["TaskSubmitted"]))
            )
            for record in found:
                assert isinstance(record.event, ev.TaskSubmitted)
                submissions[other] = record.event
    workers: list[Recorded] = []
    for worker_id in needs.workers:
        select = recorder.select(types=WORKER_CHANGES, worker_id=worker_id)
        workers.extend(_decoded(await service.query(select)))
    workers.sort(key=lambda r: r.seq)
    log = rules.LogSlice(
        own=own, claims=claims, claim_counts=counts, submissions=submissions, workers=workers
    )
    return rules.explain(service.state, task_id, log, service.clock())
