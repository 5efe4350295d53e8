"""The start-up checkpoint: the projections, written in the same transaction as the events
they derive from, hold the live state as of their `last_seq`. `load` reads their rows and
hands them to state/'s `restore`; folding the log's tail after that seq gives the same
State as folding the whole log (tests/store/test_checkpoint.py holds it to that).

`disagreement` checks, before a server trusts them, every value `load` takes against the
events it came from: in SQL first (the recorder's `disagreeing`, one pass per Agreement
below), then each flagged row again in Python with the real decoder, which blames the log
(its rows do not verify) or the projection; what no task's or worker's own events say
(groups, workers' ends, passes) is sparse.py's.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson

from kickoff.clock import from_text, to_text
from kickoff.errors import DatabaseRefused
from kickoff.events import model as ev
from kickoff.projections.findings import Finding, blame, decoded
from kickoff.projections.sparse import sparse_disagreement
from kickoff.state.fold import Checkpoint, State, apply, request_hash, restore, workflow_fields
from kickoff.state.task_state import LIVE_STATES
from kickoff.store.chain import Row
from kickoff.store.query import Connection, run
from kickoff.store.recorder import Agreement, Recorder

LIVE = f"({', '.join(repr(str(s)) for s in LIVE_STATES)})"
LIVE_TASKS = (
    "SELECT id, require, want, priority, max_attempts, attempt, state, worker_id, group_id, "
    f"resources, gpu_ids, passes FROM tasks WHERE state IN {LIVE}"
)
WAITING_TASKS = (  # in id order: the order the fold indexed them under their dependencies
    "SELECT id, after, after_any, retry_at FROM tasks WHERE state = 'waiting' ORDER BY id"
)
RETRY_POLICIES = (
    "SELECT id, retries, coalesce(retry_delay_s, 0.0), retry_on, retries_left FROM tasks "
    f"WHERE retries > 0 AND state IN {LIVE}"
)
GROUPS = "SELECT id, name, max_running FROM groups"
ENDED = "SELECT id FROM tasks WHERE state = ?"
LIVE_WORKERS = (
    "SELECT id, name, tags, slots, last_seen, resources, gpu_ids FROM workers WHERE state = 'alive'"
)
ALL_WORKER_IDS = "SELECT id FROM workers"
KEYS = (
    "SELECT idempotency_key, id, command, require, want, priority, max_attempts, timeout_s, "
    "after, after_any, array_index, retries, coalesce(retry_delay_s, 0.0), retry_on, "
    "resources FROM tasks WHERE idempotency_key IS NOT NULL"
)
MAX_TASK = "SELECT coalesce(max(id), 0) FROM tasks"
COUNTS = "SELECT state, n FROM task_counts"
LAST_SEQ = "SELECT min(last_seq) FROM projection_state"


def checkpoint_seq(conn: Connection) -> int:
    """The seq the projections stand at."""
    return int(conn.execute(LAST_SEQ).fetchone()[0] or 0)


class _Tags:
    """Tag lists as stored, each text decoded once: a million tasks share a few shapes."""

    def __init__(self) -> None:
        self.known: dict[str, frozenset[str]] = {}

    def __call__(self, text: str) -> frozenset[str]:
        found = self.known.get(text)
        if found is None:
            found = self.known[text] = frozenset(orjson.loads(text))
        return found


class _Amounts:
    """Resource pairs as stored (NULL: none), each text decoded once, as _Tags."""

    def __init__(self) -> None:
        self.known: dict[str | None, tuple[tuple[str, int], ...]] = {None: ()}

    def __call__(self, text: str | None) -> tuple[tuple[str, int], ...]:
        found = self.known.get(text)
        if found is None:
            assert text is not None
            found = self.known[text] = tuple((name, n) for name, n in orjson.loads(text))
        return found


def load_projections(conn: Connection) -> State:
    """The State the projections hold, as of their last seq."""
    tags, amounts = _Tags(), _Amounts()
    return restore(
        Checkpoint(
            last_seq=checkpoint_seq(conn),
            workers=(
                (w, name, tags(t), slots, from_text(seen), amounts(r), _ids(gpus))
                for w, name, t, slots, seen, r, gpus in conn.execute(LIVE_WORKERS)
            ),
            worker_ids=(w for (w,) in conn.execute(ALL_WORKER_IDS)),
            last_task_id=conn.execute(MAX_TASK).fetchone()[0],
            idempotency=(
                (key, task_id, _request_hash(tags, amounts, command, require, want, options))
                for key, task_id, command, require, want, *options in conn.execute(KEYS)
            ),
            counts=conn.execute(COUNTS),
            groups=conn.execute(GROUPS),
            tasks=(
                (task_id, tags(require), tags(want), *rest, amounts(r), _ids(gpus), passes)
                for task_id, require, want, *rest, r, gpus, passes in conn.execute(LIVE_TASKS)
            ),
            waiting=(
                (task_id, _ids(after), _ids(after_any), None if at is None else from_text(at))
                for task_id, after, after_any, at in conn.execute(WAITING_TASKS)
            ),
            retry_policies=(
                (task_id, retries, delay_s, _codes(on), left)
                for task_id, retries, delay_s, on, left in conn.execute(RETRY_POLICIES)
            ),
            failed_ids=(task_id for (task_id,) in conn.execute(ENDED, ("failed",))),
            cancelled_ids=(task_id for (task_id,) in conn.execute(ENDED, ("cancelled",))),
        )
    )


def _request_hash(
    tags: _Tags, amounts: _Amounts, command: str, require: str, want: str, options: list[Any]
) -> int:
    priority, max_attempts, timeout_s, after, after_any, index, retries, delay_s, on, r = options
    workflow = workflow_fields(_ids(after), _ids(after_any), index, retries, delay_s, _codes(on))
    return request_hash(
        command,
        tags(require),
        tags(want),
        priority,
        max_attempts,
        timeout_s,
        *workflow,
        resources=amounts(r),
    )


def _ids(text: str | None) -> tuple[int, ...]:
    return tuple(orjson.loads(text)) if text else ()


def _codes(text: str | None) -> tuple[int | str, ...] | None:
    return None if text is None else tuple(orjson.loads(text))


def load(conn: Connection, recorder: Recorder) -> tuple[State, int]:
    """The live State: the projections plus the log's tail, each tail row checked against
    the hash chain as it is read; returns (state, tail events folded).

    Raises:
        DatabaseRefused: the projections or the tail cannot be read, verified or folded.
    """
    collecting = gc.isenabled()
    gc.disable()  # a million new long-lived records: the collector would rescan them all
    try:
        state = load_projections(conn)
        tail = 0
        for row in recorder.verified_rows(state.last_seq):
            rec = row.decode()
            apply(state, rec.event, seq=rec.seq, at=rec.at)
            tail += 1
    except (sqlite3.DatabaseError, KeyError, ValueError) as exc:
        raise DatabaseRefused(f"cannot load the state: {exc}; try `kickoff verify`") from exc
    finally:
        if collecting:
            gc.enable()
    return state, tail


# -- the checkpoint against the log -----------------------------------------------------

SUBMITTED = (  # a task's columns that come from its TaskSubmitted (defaults left out)
    ("p.command", "command"),
    ("p.require", "require"),
    ("p.want", "want"),
    ("p.priority", "priority"),
    ("p.max_attempts", "max_attempts"),
    ("p.timeout_s", "timeout_s"),
    ("p.after", "after"),
    ("p.after_any", "after_any"),
    ("p.array_index", "array_index"),
    ("p.retries", "retries|0"),
    ("p.retry_delay_s", "retry_delay_s"),
    ("p.retry_on", "retry_on"),
    ("p.idempotency_key", "idempotency_key"),
    ("p.resources", "resources"),
)


def _task_agreement(where: str, **kwargs: Any) -> Agreement:
    return Agreement(table="tasks", key="id", by="task_id", where=where, **kwargs)


TASK_AGREEMENTS = (
    # each live task's submission: what matching uses, and the command workers run
    _task_agreement(
        f"p.state IN {LIVE}",
        pick="first",
        types=("TaskSubmitted",),
        fields=(*SUBMITTED, ("p.group_id", "group_id")),
    ),
    # the retries it has used
    _task_agreement(
        f"p.state IN {LIVE} AND p.retries > 0",
        fields=(("p.retries - p.retries_left", "#TaskCompleted.retry_in_s"),),
    ),
    # its latest event decides its state, attempt and worker
    _task_agreement(
        "p.state = 'pending' AND p.attempt = 0",
        pick="last",
        one_of=("TaskSubmitted", "TaskReleased"),
        fields=(("p.worker_id IS NULL AND p.retry_at IS NULL", "@true"),),
    ),
    _task_agreement(
        "p.state = 'pending' AND p.attempt > 0",
        pick="last",
        one_of=("TaskRequeued",),
        fields=(
            ("p.attempt + 1", "next_attempt"),
            ("p.worker_id IS NULL AND p.retry_at IS NULL", "@true"),
        ),
    ),
    _task_agreement(
        "p.state = 'waiting' AND p.attempt = 0",
        pick="last",
        one_of=("TaskSubmitted",),
        fields=(("p.worker_id IS NULL AND p.retry_at IS NULL", "@true"),),
    ),
    _task_agreement(  # a retry, due later
        "p.state = 'waiting' AND p.attempt > 0",
        pick="last",
        one_of=("TaskCompleted",),
        fields=(
            ("1", "?retry_in_s"),
            ("p.attempt", "attempt"),
            ("p.worker_id IS NULL AND p.retry_at IS NOT NULL", "@true"),
            ("p.retry_at", "@at+retry_in_s"),  # when it is due (`_task` then to the microsecond)
        ),
    ),
    _task_agreement(
        "p.state = 'running'",
        pick="last",
        one_of=("TaskClaimed",),
        fields=(("p.attempt", "attempt"), ("p.worker_id", "worker_id"), ("p.gpu_ids", "gpu_ids")),
    ),
    _task_agreement("p.state = 'cancelling'", pick="last", one_of=("TaskCancelRequested",)),
    _task_agreement(
        "p.state = 'cancelling'",
        pick="last",
        types=("TaskClaimed",),
        fields=(("p.attempt", "attempt"), ("p.worker_id", "worker_id"), ("p.gpu_ids", "gpu_ids")),
    ),
    # a finished task's idempotency key, and what a retry with it is compared with
    _task_agreement(
        f"p.idempotency_key IS NOT NULL AND p.state NOT IN {LIVE}",
        pick="first",
        types=("TaskSubmitted",),
        fields=SUBMITTED,
    ),
)
WORKER_CHANGES = ("WorkerRegistered", "WorkerTagsChanged")
WORKER_AGREEMENTS = (
    Agreement(
        table="workers",
        key="id",
        by="worker_id",
        where="p.state = 'alive'",
        pick="first",
        types=WORKER_CHANGES,
        fields=(
            ("'WorkerRegistered'", "@type"),
            ("p.name", "name"),
            ("p.slots", "slots"),
            ("p.host", "host"),
            ("p.resources", "resources"),
            ("p.gpu_ids", "gpu_ids"),
        ),
    ),
    Agreement(
        table="workers",
        key="id",
        by="worker_id",
        where="p.state = 'alive'",
        pick="last",
        types=WORKER_CHANGES,
        fields=(("p.tags", "tags"),),
    ),
)


def disagreement(
    conn: Connection, recorder: Recorder, checkpoint_seq: int, *, sparse: bool = True
) -> Finding | None:
    """The first disagreement between what `load` takes and the log (None: they agree).
    `sparse=False` leaves out sparse.py's part, for a caller that runs it beside this.

    Raises:
        sqlite3.DatabaseError: the database cannot be read (quick_check says why).
    """
    anchor = _anchor(recorder, checkpoint_seq)
    if anchor is not None:
        return anchor
    checks: list[tuple[tuple[Agreement, ...], Callable[..., Finding | None]]] = [
        (TASK_AGREEMENTS, _task),
        (WORKER_AGREEMENTS, _worker),
    ]
    for agreements, confirm in checks:
        for agreement in agreements:
            for key in recorder.disagreeing(agreement, checkpoint_seq=checkpoint_seq):
                found = confirm(conn, recorder, key, checkpoint_seq)
                if found is not None:
                    return found
    found = _counters(conn, recorder, checkpoint_seq)
    if found is None and sparse:
        found = sparse_disagreement(conn, recorder, checkpoint_seq)
    return found


def _anchor(recorder: Recorder, seq: int) -> Finding | None:
    """The log's row at the checkpoint's seq is there and verifies."""
    if seq == 0:
        return None
    rows = list(recorder.rows(seq - 1, until_seq=seq))
    if not rows:
        return Finding(f"the projections are at seq {seq}, which is not in the log", False)
    if not recorder.row_verifies(rows[0]):
        return Finding(
            f"the log's seq {seq} ({rows[0].type}), where the projections stand, does not "
            "verify: its hash does not match its contents",
            log_damaged=True,
        )
    return None


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
    "resources",
    "gpu_ids",
)
KEYED_FIELDS = frozenset(  # what a finished task's idempotency key is compared with
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
        "resources",
    )
)
TASK_ROW = f"SELECT {', '.join(TASK_FIELDS)} FROM tasks WHERE id = ?"
WORKER_ROW = "SELECT name, host, tags, slots, resources, gpu_ids FROM workers WHERE id = ?"


def _task(conn: Connection, recorder: Recorder, task_id: int, seq: int) -> Finding | None:
    """Task `task_id`'s row against a fold of its own events, field by field."""
    row = conn.execute(TASK_ROW, (task_id,)).fetchone()
    rows: list[Row] = run(conn, recorder.select(task_id=task_id, until_seq=seq))
    expected: dict[str, object] = {}
    for log_row, event in decoded(rows):
        if event is None:
            return blame(
                recorder, rows, f"task {task_id}: the log's seq {log_row.seq} is unreadable"
            )
        _expect(expected, log_row, event)
    if not expected:
        return blame(recorder, rows, f"task {task_id} is in `tasks` but was never submitted")
    finished = expected["state"] == "finished"
    for name, have in zip(TASK_FIELDS, row, strict=True):
        if finished and name not in KEYED_FIELDS:
            continue  # only its key and what is hashed with it matter to start-up
        if have != expected.get(name):
            return blame(
                recorder,
                rows,
                f"task {task_id}: {name} is {have!r} in the `tasks` projection but "
                f"{expected.get(name)!r} in the log",
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
                after=_id_list(event.after),
                after_any=_id_list(event.after_any),
                group_id=event.group_id,
                array_index=event.array_index,
                retries=event.retries,
                retries_left=event.retries,
                retry_delay_s=event.retry_delay_s or None,
                retry_on=None if event.retry_on is None else orjson.dumps(event.retry_on).decode(),
                retry_at=None,
                resources=_pairs(event.resources),
                gpu_ids=None,
            )
        case ev.TaskClaimed():
            expected.update(
                state="running",
                attempt=event.attempt,
                worker_id=event.worker_id,
                gpu_ids=_id_list(event.gpu_ids),
            )
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


def _id_list(ids: tuple[int, ...]) -> str | None:
    return orjson.dumps(ids).decode() if ids else None


def _pairs(resources: tuple[tuple[str, int], ...]) -> str | None:
    return orjson.dumps(resources).decode() if resources else None


def _tags(tags: frozenset[str]) -> str:
    return orjson.dumps(sorted(tags)).decode()


def _worker(conn: Connection, recorder: Recorder, worker_id: str, seq: int) -> Finding | None:
    row = conn.execute(WORKER_ROW, (worker_id,)).fetchone()
    query = recorder.select(worker_id=worker_id, types=WORKER_CHANGES, until_seq=seq)
    rows: list[Row] = run(conn, query)
    expected: dict[str, object] = {}
    for log_row, event in decoded(rows):
        if event is None:
            return blame(
                recorder, rows, f"worker {worker_id}: the log's seq {log_row.seq} is unreadable"
            )
        if isinstance(event, ev.WorkerRegistered):
            expected.update(
                name=event.name,
                host=event.host,
                slots=event.slots,
                resources=_pairs(event.resources),
                gpu_ids=_id_list(event.gpu_ids),
            )
        if isinstance(event, ev.WorkerRegistered | ev.WorkerTagsChanged):
            expected["tags"] = _tags(event.tags)
    if "name" not in expected:
        return blame(
            recorder, rows, f"worker {worker_id} is alive in `workers` but never registered"
        )
    columns = ("name", "host", "tags", "slots", "resources", "gpu_ids")
    for name, have in zip(columns, row, strict=True):
        if have != expected[name]:
            return blame(
                recorder,
                rows,
                f"worker {worker_id}: {name} is {have!r} in the `workers` projection but "
                f"{expected[name]!r} in the log",
            )
    return None


def _counters(conn: Connection, recorder: Recorder, seq: int) -> Finding | None:
    """The next ids `load` derives from the projections."""
    in_log = run(conn, recorder.last_task_id())
    in_tasks = conn.execute(MAX_TASK).fetchone()[0]
    tail = run(conn, recorder.tail()) > seq  # tasks submitted since are not in `tasks`
    if in_tasks > in_log or (in_tasks < in_log and not tail):
        return Finding(f"the last task is {in_tasks} in `tasks` but {in_log} in the log", False)
    changes = run(conn, recorder.select(types=WORKER_CHANGES, until_seq=seq))
    in_log_ids = {r.worker_id for r in changes}
    known = {w for (w,) in conn.execute(ALL_WORKER_IDS)}
    if in_log_ids != known:
        odd = sorted(in_log_ids ^ known)[0]
        where = "`workers`" if odd in known else "the log"
        return Finding(f"worker {odd} is only in {where}", False)
    return None
