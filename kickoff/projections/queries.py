"""Read queries over the projections, and the log's rows as the documented event JSON.

Each is a store.query.Query: it runs on a plain sqlite3 connection (offline commands,
tests) and on the server's async reader. Shapers return the `--json` contract documented
in the README. The log's own SQL is the recorder's (store/); `events` shapes its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from kickoff import defaults
from kickoff.events import codec
from kickoff.events import model as ev
from kickoff.store.chain import Row
from kickoff.store.query import Query, RowT, run
from kickoff.store.recorder import Recorder

JSONObj = dict[str, Any]
__all__ = ["JSONObj", "Query", "RowT", "run"]  # with the queries below


TASK_COLUMNS = (
    "t.id, t.state, t.command, t.require, t.want, t.priority, t.attempt, t.max_attempts, "
    "t.worker_id, w.name, t.exit_code, t.submitted_at, t.started_at, t.finished_at, "
    "t.timeout_s, t.timed_out, t.duration_s, t.output_tail, t.reason, t.idempotency_key, "
    "t.submitted_by, t.after, t.after_any, t.group_id, g.name, t.array_index, t.retries, "
    "t.retries_left, t.retry_delay_s, t.retry_on, t.retry_at, t.resources, t.gpu_ids"
)
TASK_FROM = (
    "FROM tasks t LEFT JOIN workers w ON w.id = t.worker_id LEFT JOIN groups g ON g.id = t.group_id"
)


def _list(text: str | None) -> list[Any]:
    return orjson.loads(text) if text else []


def amounts_json(text: str | None) -> dict[str, int]:
    """Stored [name, amount] pairs as the documented object of integers ({} for none)."""
    return dict(orjson.loads(text)) if text else {}


def group_label(group_id: int | None, name: str | None) -> str | None:
    """A group's name, `g<id>` for one the server named (state/workflows.py's rule)."""
    if group_id is None:
        return None
    return name if name is not None else f"g{group_id}"


def task_json(r: RowT) -> JSONObj:
    """A task row as the documented JSON object."""
    return {
        "id": r[0],
        "state": r[1],
        "command": r[2],
        "require": orjson.loads(r[3]),
        "want": orjson.loads(r[4]),
        "priority": r[5],
        "attempt": r[6],
        "max_attempts": r[7],
        "worker": r[8],
        "worker_name": r[9],
        "exit_code": r[10],
        "submitted_at": r[11],
        "started_at": r[12],
        "finished_at": r[13],
        "timeout_s": r[14],
        "timed_out": bool(r[15]),
        "duration_s": r[16],
        "output_tail": r[17],
        "reason": r[18],
        "idempotency_key": r[19],
        "submitted_by": r[20],
        "after": _list(r[21]),
        "after_any": _list(r[22]),
        "group": group_label(r[23], r[24]),
        "array_index": r[25],
        "retries": r[26],
        "retries_left": r[27],
        "retry_delay_s": r[28],
        "retry_on": None if r[29] is None else orjson.loads(r[29]),
        "retry_at": r[30],
        "resources": amounts_json(r[31]),
        "gpu_ids": _list(r[32]),
    }


def get_task(task_id: int) -> Query:
    return Query(
        f"SELECT {TASK_COLUMNS} {TASK_FROM} WHERE t.id = ?",
        (task_id,),
        lambda rows: task_json(rows[0]) if rows else None,
    )


def task_setting(recorder: Recorder, task_id: int) -> Query:
    """Where and with what a task runs (`cwd`, `env`), from its submission in the log:
    they are not projected (only one task's page shows them)."""
    rows = recorder.select(task_id=task_id, types=["TaskSubmitted"])

    def shape(found: list[RowT]) -> JSONObj:
        submitted = rows.shape(found)
        if len(submitted) != 1:
            return {"cwd": None, "env": {}}
        event = submitted[0].decode().event
        assert isinstance(event, ev.TaskSubmitted)
        return {"cwd": event.cwd, "env": dict(event.env)}

    return Query(rows.sql, rows.params, shape)


def list_tasks(
    *,
    states: Sequence[str] = (),
    worker_id: str | None = None,
    group_id: int | None = None,
    after_id: int = 0,
    limit: int = defaults.DEFAULT_PAGE,
    descending: bool = False,
    before_id: int | None = None,
) -> Query:
    """A page of tasks in id order, filtered by state, worker and group; keyset pagination.

    Several states become one index walk per state, each stopping after `limit` rows, then
    merged: `state IN (...) ORDER BY id` would sort every live task first (a million of
    them on a busy server) to return fifty.
    """
    where: list[str] = []
    params: list[Any] = []
    if worker_id is not None:
        where.append("t.worker_id = ?")
        params.append(worker_id)
    if group_id is not None:
        where.append("t.group_id = ?")
        params.append(group_id)
    if after_id:
        where.append("t.id > ?")
        params.append(after_id)
    if before_id is not None:
        where.append("t.id < ?")
        params.append(before_id)
    order = "DESC" if descending else "ASC"
    shape = lambda rows: [task_json(r) for r in rows]  # noqa: E731
    if len(states) <= 1:
        clause = " AND ".join(["t.state = ?", *where] if states else where)
        return Query(
            f"SELECT {TASK_COLUMNS} {TASK_FROM} {'WHERE ' + clause if clause else ''} "
            f"ORDER BY t.id {order} LIMIT ?",
            (*states, *params, limit),
            shape,
        )
    page = " AND ".join(["t.state = ?", *where])
    parts = " UNION ALL ".join(
        f"SELECT * FROM (SELECT {TASK_COLUMNS} {TASK_FROM} WHERE {page} "
        f"ORDER BY t.id {order} LIMIT ?) AS s{i}"  # (aliases: PostgreSQL wants them)
        for i, _ in enumerate(states)
    )
    per_state = [value for state in states for value in (state, *params, limit)]
    return Query(
        f"SELECT * FROM ({parts}) AS page ORDER BY 1 {order} LIMIT ?", (*per_state, limit), shape
    )


def counts(*, group_id: int | None = None) -> Query:
    """Tasks per state, of every task or of one group's."""
    if group_id is not None:
        return Query(
            "SELECT state, count(*) FROM tasks WHERE group_id = ? GROUP BY state ORDER BY state",
            (group_id,),
            lambda rows: {r[0]: r[1] for r in rows},
        )
    return Query(
        "SELECT state, n FROM task_counts ORDER BY state",
        (),
        lambda rows: {r[0]: r[1] for r in rows},
    )


def group_json(r: RowT) -> JSONObj:
    return {"id": r[0], "name": group_label(r[0], r[1]), "max_running": r[2], "created_at": r[3]}


def get_group(group_id: int) -> Query:
    return Query(
        "SELECT id, name, max_running, created_at FROM groups WHERE id = ?",
        (group_id,),
        lambda rows: group_json(rows[0]) if rows else None,
    )


WORKER_COLUMNS = (
    "w.id, w.name, w.host, w.tags, w.slots, w.state, w.registered_at, w.last_seen, w.left_at, "
    "(SELECT count(*) FROM tasks t WHERE t.worker_id = w.id AND t.state IN "
    "('running', 'cancelling')) AS running, w.resources, w.gpu_ids"
)


def worker_json(r: RowT) -> JSONObj:
    return {
        "id": r[0],
        "name": r[1],
        "host": r[2],
        "tags": orjson.loads(r[3]),
        "slots": r[4],
        "state": r[5],
        "registered_at": r[6],
        "last_seen": r[7],
        "left_at": r[8],
        "running": r[9],
        "resources": amounts_json(r[10]),
        "gpu_ids": _list(r[11]),
    }


def list_workers(*, include_gone: bool = False) -> Query:
    clause = "" if include_gone else "WHERE w.state = 'alive'"
    return Query(
        f"SELECT {WORKER_COLUMNS} FROM workers w {clause} ORDER BY w.registered_at, w.id",
        (),
        lambda rows: [worker_json(r) for r in rows],
    )


def get_worker(key: str) -> Query:
    """A worker by id, or by name (the live one with that name first, then the newest)."""
    return Query(
        f"SELECT {WORKER_COLUMNS} FROM workers w WHERE w.id = ? OR w.name = ? "
        "ORDER BY (w.id = ?) DESC, (w.state = 'alive') DESC, w.registered_at DESC LIMIT 1",
        (key, key, key),
        lambda rows: worker_json(rows[0]) if rows else None,
    )


def event_json(r: Row) -> JSONObj:
    """A log row as the documented event JSON (payload upcast to the current version)."""
    event = codec.decode(r.type, r.version, r.payload)
    return {
        "seq": r.seq,
        "ts": r.at,
        "type": r.type,
        "task_id": r.task_id,
        "worker_id": r.worker_id,
        "data": codec.to_payload(event),
    }


def list_events(
    recorder: Recorder,
    *,
    after_seq: int = 0,
    until_seq: int | None = None,
    since: str | None = None,
    until: str | None = None,
    types: Sequence[str] = (),
    task_id: int | None = None,
    worker_id: str | None = None,
    limit: int = defaults.DEFAULT_EVENTS_PAGE,
) -> Query:
    """Log rows in seq order, filtered (`since`/`until` are ISO times), as event JSON."""
    rows = recorder.select(
        after_seq=after_seq,
        until_seq=until_seq,
        since=since,
        until=until,
        types=types,
        task_id=task_id,
        worker_id=worker_id,
        limit=limit,
    )
    return Query(rows.sql, rows.params, lambda found: [event_json(r) for r in rows.shape(found)])
