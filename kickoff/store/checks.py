"""Start-up checks of a database before a server uses it: SQLite's quick_check, and the
checkpoint (the projections start-up loads) against the log it was derived from.

What start-up takes from the projections: each live task's tags, priority, attempts,
state and worker, each live worker's name, tags and slots, the idempotency keys, the id
counters. Each is compared with the events it came from, in SQL (one pass, in C, while
the server loads the rows); a row SQL flags is then looked at again in Python, with the
real decoder, and blamed on the log (its hash does not verify) or on the projection.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import orjson

from kickoff.clock import from_text, to_text
from kickoff.errors import DatabaseRefused
from kickoff.events import model as ev
from kickoff.state.task_state import LIVE_STATES
from kickoff.store.log import Row, hash_at

logger = logging.getLogger(__name__)

LIVE = f"({', '.join(repr(str(s)) for s in LIVE_STATES)})"

# What a submission's payload holds beside the task's row: the fields start-up uses and
# those hashed with an idempotency key (the workflow ones are left out at their default).
SUBMISSION_IS_ROW = """
    s.payload ->> '$.command' IS t.command
    AND s.payload -> '$.require' IS t.require AND s.payload -> '$.want' IS t.want
    AND s.payload ->> '$.priority' IS t.priority
    AND s.payload ->> '$.max_attempts' IS t.max_attempts
    AND s.payload ->> '$.timeout_s' IS t.timeout_s
    AND s.payload -> '$.after' IS t.after AND s.payload -> '$.after_any' IS t.after_any
    AND s.payload ->> '$.array_index' IS t.array_index
    AND coalesce(s.payload ->> '$.retries', 0) IS t.retries
    AND s.payload ->> '$.retry_delay_s' IS t.retry_delay_s
    AND s.payload -> '$.retry_on' IS t.retry_on"""
# Each live task against its events up to the checkpoint: its submission (the fields
# start-up and the workers use) and its latest event, which decides its state, attempt
# and worker (a cancelling task's attempt and worker are its latest claim's), and the
# retries it has used. `{upto}` limits the events to the checkpoint when the log has a
# tail after it.
TASKS_AGAINST_LOG = f"""
SELECT t.id FROM tasks t
LEFT JOIN events s ON s.task_id = t.id AND s.type = 'TaskSubmitted'
LEFT JOIN events l ON l.seq = (SELECT max(seq) FROM events WHERE task_id = t.id{{upto}})
WHERE t.state IN {LIVE} AND NOT coalesce(
    s.seq <= :seq AND {SUBMISSION_IS_ROW}
    AND s.payload ->> '$.idempotency_key' IS t.idempotency_key
    AND s.payload ->> '$.group_id' IS t.group_id
    AND (t.retries = 0 OR t.retries_left = t.retries - (
        SELECT count(*) FROM events r WHERE r.task_id = t.id AND r.type = 'TaskCompleted'
        AND r.payload ->> '$.retry_in_s' IS NOT NULL{{upto}}))
    AND CASE t.state
        WHEN 'pending' THEN t.worker_id IS NULL AND t.retry_at IS NULL AND CASE l.type
            WHEN 'TaskSubmitted' THEN t.attempt = 0
            WHEN 'TaskReleased' THEN t.attempt = 0
            WHEN 'TaskRequeued' THEN l.payload ->> '$.next_attempt' - 1 IS t.attempt
        END
        WHEN 'waiting' THEN t.worker_id IS NULL AND CASE l.type
            WHEN 'TaskSubmitted' THEN t.attempt = 0 AND t.retry_at IS NULL
            WHEN 'TaskCompleted' THEN l.payload ->> '$.retry_in_s' IS NOT NULL
                AND l.payload ->> '$.attempt' IS t.attempt AND t.retry_at IS NOT NULL
        END
        WHEN 'running' THEN l.type = 'TaskClaimed'
            AND l.payload ->> '$.attempt' IS t.attempt
            AND l.payload ->> '$.worker_id' IS t.worker_id
        ELSE l.type = 'TaskCancelRequested' AND EXISTS (
            SELECT 1 FROM events c WHERE c.seq = (
                SELECT max(seq) FROM events WHERE task_id = t.id AND type = 'TaskClaimed')
            AND c.payload ->> '$.attempt' IS t.attempt
            AND c.payload ->> '$.worker_id' IS t.worker_id)
    END, 0)
"""
# A finished task's idempotency key and what start-up hashes with it (a retry of the same
# task gets its id; the same key with another task is refused).
KEYS_AGAINST_LOG = f"""
SELECT t.id FROM tasks t
LEFT JOIN events s ON s.task_id = t.id AND s.type = 'TaskSubmitted'
WHERE t.idempotency_key IS NOT NULL AND t.state NOT IN {LIVE} AND NOT coalesce(
    s.payload ->> '$.idempotency_key' IS t.idempotency_key AND {SUBMISSION_IS_ROW}, 0)
"""
WORKER_CHANGES = "type IN ('WorkerRegistered', 'WorkerTagsChanged')"  # see the partial index
WORKERS_AGAINST_LOG = f"""
SELECT w.id FROM workers w
LEFT JOIN events r ON r.seq = (
    SELECT min(seq) FROM events WHERE worker_id = w.id AND {WORKER_CHANGES} AND +seq <= :seq)
LEFT JOIN events g ON g.seq = (
    SELECT max(seq) FROM events WHERE worker_id = w.id AND {WORKER_CHANGES} AND +seq <= :seq)
WHERE w.state = 'alive' AND NOT coalesce(
    r.type = 'WorkerRegistered' AND r.payload ->> '$.name' IS w.name
    AND r.payload ->> '$.slots' IS w.slots AND r.payload ->> '$.host' IS w.host
    AND g.payload -> '$.tags' IS w.tags, 0)
"""
TASK_FIELDS = (
    "state",
    "command",
    "require",
    "want",
    "priority",
    "attempt",
    "max_attempts",
    "timeout_s",
    "worker_id",
    "idempotency_key",
    "submitted_by",
    "submitted_at",
    "after",
    "after_any",
    "group_id",
    "array_index",
    "retries",
    "retries_left",
    "retry_delay_s",
    "retry_on",
    "retry_at",
)
KEYED_FIELDS = frozenset(
    (
        "command",
        "require",
        "want",
        "priority",
        "max_attempts",
        "timeout_s",
        "idempotency_key",
        "after",
        "after_any",
        "array_index",
        "retries",
        "retry_delay_s",
        "retry_on",
    )
)
TASK_ROW = f"SELECT {', '.join(TASK_FIELDS)} FROM tasks WHERE id = ?"
WORKER_ROW = "SELECT name, host, tags, slots FROM workers WHERE id = ?"
TASK_EVENTS = (
    "SELECT seq, at, type, version, task_id, worker_id, payload, hash FROM events "
    "WHERE task_id = ? AND seq <= ? ORDER BY seq"
)
WORKER_EVENTS = (
    "SELECT seq, at, type, version, task_id, worker_id, payload, hash FROM events "
    f"WHERE worker_id = ? AND {WORKER_CHANGES} AND seq <= ? ORDER BY seq"
)
MAX_TASK_IN_LOG = "SELECT max(task_id) FROM events WHERE task_id IS NOT NULL"
LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM events"
WORKER_IDS_IN_LOG = f"SELECT worker_id FROM events WHERE {WORKER_CHANGES} AND +seq <= ?"


def read_only(path: Path) -> sqlite3.Connection:
    """A second, read-only connection to a database the caller has open."""
    conn = sqlite3.connect(
        f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def quick_check(conn: sqlite3.Connection) -> str | None:
    """SQLite's quick_check (every page, b-tree and record format; O(file size)): None
    when the file is whole, else what is wrong."""
    try:
        found = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if found == ["ok"] else "; ".join(" ".join(f.split()) for f in found)


@dataclass(frozen=True, slots=True)
class Finding:
    """A disagreement between the checkpoint and the log, and who is to blame."""

    message: str
    log_damaged: bool  # the log's own rows do not verify (else: the projection is wrong)


def against_log(conn: sqlite3.Connection, checkpoint_seq: int) -> Finding | None:
    """The first disagreement between what start-up loads and the log (None: they agree).

    Raises:
        sqlite3.DatabaseError: the database cannot be read (quick_check says why).
    """
    anchor = _anchor(conn, checkpoint_seq)
    if anchor is not None:
        return anchor
    tail = conn.execute(LAST_SEQ).fetchone()[0] > checkpoint_seq
    upto = " AND seq <= :seq" if tail else ""
    for sql, confirm in (
        (TASKS_AGAINST_LOG.format(upto=upto), _task),
        (KEYS_AGAINST_LOG, _task),
        (WORKERS_AGAINST_LOG, _worker),
    ):
        for (key,) in _candidates(conn, sql, checkpoint_seq):
            found = confirm(conn, key, checkpoint_seq)
            if found is not None:
                return found
            logger.debug("checkpoint row %s agrees with the log after all", key)
    return _counters(conn, checkpoint_seq, tail)


def _anchor(conn: sqlite3.Connection, seq: int) -> Finding | None:
    """The log's row at the checkpoint's seq is there and verifies."""
    if seq == 0:
        return None
    rows = _rows(conn, "SELECT * FROM events WHERE seq = ?", seq)
    if not rows:
        return Finding(f"the projections are at seq {seq}, which is not in the log", False)
    if not _verifies(conn, rows[0]):
        return Finding(
            f"the log's seq {seq} ({rows[0].type}), where the projections stand, does not "
            "verify: its hash does not match its contents",
            log_damaged=True,
        )
    return None


def _candidates(conn: sqlite3.Connection, sql: str, seq: int) -> Iterator[tuple[object]]:
    """The keys SQL flags, one at a time (the caller stops at the first real finding)."""
    try:
        yield from conn.execute(sql, {"seq": seq})
    except sqlite3.OperationalError as exc:
        if "JSON" not in str(exc):
            raise
        yield from _malformed(conn)  # a payload that is not JSON at all: find it the slow way


def _malformed(conn: sqlite3.Connection) -> list[tuple[object]]:
    """Tasks whose events include a payload that is not JSON."""
    rows = conn.execute(
        f"SELECT DISTINCT e.task_id FROM tasks t JOIN events e ON e.task_id = t.id "
        f"WHERE t.state IN {LIVE} AND NOT json_valid(e.payload)"
    ).fetchall()
    return [(r[0],) for r in rows]


def _rows(conn: sqlite3.Connection, sql: str, *params: object) -> list[Row]:
    return [
        Row(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bytes(r[7]))
        for r in conn.execute(sql, params)
    ]


def _verifies(conn: sqlite3.Connection, row: Row) -> bool:
    prev = hash_at(conn, row.seq - 1)
    return prev is not None and row.expected_hash(prev) == row.hash


def _blame(conn: sqlite3.Connection, rows: list[Row], what: str) -> Finding:
    """The log is at fault if one of the rows this row derives from does not verify."""
    bad = next((r for r in rows if not _verifies(conn, r)), None)
    if bad is not None:
        return Finding(
            f"{what}; the log's seq {bad.seq} ({bad.type}) does not verify: its hash does "
            "not match its contents",
            log_damaged=True,
        )
    return Finding(what, log_damaged=False)


def _decoded(rows: list[Row]) -> Iterator[tuple[Row, ev.Event | None]]:
    for row in rows:
        try:
            yield row, row.decode().event
        except DatabaseRefused:
            yield row, None


def _task(conn: sqlite3.Connection, task_id: object, seq: int) -> Finding | None:
    """Task `task_id`'s row against a fold of its own events, field by field."""
    row = conn.execute(TASK_ROW, (task_id,)).fetchone()
    rows = _rows(conn, TASK_EVENTS, task_id, seq)
    expected: dict[str, object] = {}
    for log_row, event in _decoded(rows):
        if event is None:
            return _blame(conn, rows, f"task {task_id}: the log's seq {log_row.seq} is unreadable")
        _expect(expected, log_row, event)
    if not expected:
        return _blame(conn, rows, f"task {task_id} is in `tasks` but was never submitted")
    finished = expected["state"] == "finished"
    for name, have in zip(TASK_FIELDS, row, strict=True):
        want = expected.get(name)
        if finished and name not in KEYED_FIELDS:
            continue  # only its key and what is hashed with it matter to start-up
        if have != want:
            return _blame(
                conn,
                rows,
                f"task {task_id}: {name} is {have!r} in the `tasks` projection but "
                f"{want!r} in the log",
            )
    return None


def _expect(expected: dict[str, object], row: Row, event: ev.Event) -> None:
    """What a task's row must hold after `event` (the projection's rules, in short)."""
    match event:
        case ev.TaskSubmitted():
            expected.update(
                state="waiting" if event.after or event.after_any else "pending",
                command=event.command,
                require=_tags(event.require),
                want=_tags(event.want),
                priority=event.priority,
                attempt=0,
                max_attempts=event.max_attempts,
                timeout_s=event.timeout_s,
                worker_id=None,
                idempotency_key=event.idempotency_key,
                submitted_by=event.submitted_by,
                submitted_at=row.at,
                after=_ids(event.after),
                after_any=_ids(event.after_any),
                group_id=event.group_id,
                array_index=event.array_index,
                retries=event.retries,
                retries_left=event.retries,
                retry_delay_s=event.retry_delay_s or None,
                retry_on=None if event.retry_on is None else orjson.dumps(event.retry_on).decode(),
                retry_at=None,
            )
        case ev.TaskClaimed():
            expected.update(state="running", attempt=event.attempt, worker_id=event.worker_id)
        case ev.TaskCancelRequested() if expected.get("state") == "running":
            expected["state"] = "cancelling"
        case ev.TaskReleased():
            expected["state"] = "pending"
        case ev.TaskRequeued():
            expected.update(state="pending", worker_id=None, retry_at=None)
        case ev.TaskCompleted() if event.retry_in_s is not None:
            due = from_text(row.at) + timedelta(seconds=event.retry_in_s)
            left = expected.get("retries_left")
            expected.update(
                state="waiting",
                worker_id=None,
                retry_at=to_text(due),
                retries_left=left - 1 if isinstance(left, int) else None,
            )
        case ev.TaskCompleted() | ev.TaskCancelled() | ev.TaskFailed():
            expected["state"] = "finished"


def _tags(tags: frozenset[str]) -> str:
    return orjson.dumps(sorted(tags)).decode()


def _ids(ids: tuple[int, ...]) -> str | None:
    return orjson.dumps(ids).decode() if ids else None


def _worker(conn: sqlite3.Connection, worker_id: object, seq: int) -> Finding | None:
    row = conn.execute(WORKER_ROW, (worker_id,)).fetchone()
    rows = _rows(conn, WORKER_EVENTS, worker_id, seq)
    expected: dict[str, object] = {}
    for log_row, event in _decoded(rows):
        if event is None:
            return _blame(
                conn, rows, f"worker {worker_id}: the log's seq {log_row.seq} is unreadable"
            )
        if isinstance(event, ev.WorkerRegistered):
            expected.update(name=event.name, host=event.host, slots=event.slots)
        if isinstance(event, ev.WorkerRegistered | ev.WorkerTagsChanged):
            expected["tags"] = _tags(event.tags)
    if "name" not in expected:
        return _blame(conn, rows, f"worker {worker_id} is alive in `workers` but never registered")
    for name, have in zip(("name", "host", "tags", "slots"), row, strict=True):
        if have != expected[name]:
            return _blame(
                conn,
                rows,
                f"worker {worker_id}: {name} is {have!r} in the `workers` projection but "
                f"{expected[name]!r} in the log",
            )
    return None


def _counters(conn: sqlite3.Connection, seq: int, tail: bool) -> Finding | None:
    """The next ids start-up derives from the projections."""
    in_log = conn.execute(MAX_TASK_IN_LOG).fetchone()[0] or 0
    in_tasks = conn.execute("SELECT coalesce(max(id), 0) FROM tasks").fetchone()[0]
    if in_tasks > in_log or (in_tasks < in_log and not tail):  # a tail submits more
        return Finding(f"the last task is {in_tasks} in `tasks` but {in_log} in the log", False)
    worker_ids = {w for (w,) in conn.execute(WORKER_IDS_IN_LOG, (seq,))}
    known = {w for (w,) in conn.execute("SELECT id FROM workers")}
    if worker_ids != known:
        odd = sorted(worker_ids ^ known)[0]
        where = "`workers`" if odd in known else "the log"
        return Finding(f"worker {odd} is only in {where}", False)
    return None
