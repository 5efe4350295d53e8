"""The `workers` projection: one row per worker that ever registered.

Reading it is queries.py's.
"""

from __future__ import annotations

from kickoff.events import model as ev
from kickoff.projections.tasks import Op, list_json, resources_json, tags_json

INSERT_WORKER = (
    "INSERT INTO workers (id, name, host, tags, slots, state, registered_at, last_seen, "
    "updated_seq, resources, gpu_ids) VALUES (?, ?, ?, ?, ?, 'alive', ?, ?, ?, ?, ?)"
)
TAGS = "UPDATE workers SET tags = ?, updated_seq = ? WHERE id = ?"
SEEN = "UPDATE workers SET last_seen = ?, updated_seq = ? WHERE id = ? AND state = 'alive'"
ALL_SEEN = "UPDATE workers SET last_seen = ?, updated_seq = ? WHERE state = 'alive'"
LEFT = "UPDATE workers SET state = ?, left_at = ?, updated_seq = ? WHERE id = ?"


_WORKER_EVENTS = frozenset(
    {
        ev.WorkerRegistered,
        ev.WorkerTagsChanged,
        ev.WorkerHeartbeat,
        ev.TaskClaimed,
        ev.TaskCompleted,
        ev.WorkerStopped,
        ev.WorkerLost,
        ev.ServerStarted,
    }
)


def ops(e: ev.Event, seq: int, at: str) -> list[Op]:
    """SQL for the workers table that one event (recorded at `seq`, at time `at`) implies."""
    if type(e) not in _WORKER_EVENTS:
        return []
    match e:
        case ev.WorkerRegistered():
            return [
                (
                    INSERT_WORKER,
                    (
                        e.worker_id,
                        e.name,
                        e.host,
                        tags_json(e.tags),
                        e.slots,
                        at,
                        at,
                        seq,
                        resources_json(e.resources),
                        list_json(e.gpu_ids),
                    ),
                )
            ]
        case ev.WorkerTagsChanged():
            return [(TAGS, (tags_json(e.tags), seq, e.worker_id))]
        case ev.WorkerHeartbeat() | ev.TaskClaimed() | ev.TaskCompleted():
            return [(SEEN, (at, seq, e.worker_id))]
        case ev.WorkerStopped():
            return [(LEFT, ("stopped", at, seq, e.worker_id))]
        case ev.WorkerLost():
            return [(LEFT, ("lost", at, seq, e.worker_id))]
        case ev.ServerStarted():
            return [(ALL_SEEN, (at, seq))]
    return []
