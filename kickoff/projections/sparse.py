"""Start-up's check of what the checkpoint holds that no task's or worker's own events say:
the groups (GroupCreated names no task), which workers are still alive (their WorkerLost or
WorkerStopped, which no index covers), each pending task's passes (counted from other
tasks' claims that went `ahead_of` it), and which finished tasks failed or were cancelled
(what a new `--after` on them decides by) with the finished counts. One pass over the log
finds those rows (the recorder's `sparse_rows`); checkpoint.py's `disagreement` runs this
after its own checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kickoff.events import model as ev
from kickoff.projections.findings import Finding, blame, decoded
from kickoff.store.chain import Row
from kickoff.store.query import Connection, run
from kickoff.store.recorder import Recorder

GROUPS = "SELECT id, name, max_running FROM groups"
WORKER_STATES = "SELECT id, state FROM workers"
PASSED = "SELECT id, passes FROM tasks WHERE state = 'pending' AND passes > 0"
PASSES_OF = "SELECT state, passes FROM tasks WHERE id = ?"
ENDED_BADLY = "SELECT id, state FROM tasks WHERE state IN ('failed', 'cancelled')"
COUNTS = (
    "SELECT c.state, c.n, (SELECT count(*) FROM tasks t WHERE t.state = c.state) "
    "FROM task_counts c WHERE c.state IN ('succeeded', 'failed', 'cancelled')"
)


@dataclass(slots=True)
class _Sparse:
    """What the sparse rows say, each fact with the row it comes from."""

    groups: dict[int, tuple[Row, str | None, int | None]] = field(default_factory=dict)
    gone: dict[str, tuple[Row, str]] = field(default_factory=dict)  # worker -> lost/stopped
    ahead: dict[int, list[Row]] = field(default_factory=dict)  # task -> claims ahead of it
    ended: dict[int, tuple[Row, str]] = field(default_factory=dict)  # failed/cancelled task


def sparse_disagreement(conn: Connection, recorder: Recorder, seq: int) -> Finding | None:
    """The first disagreement of the groups, the workers' states or the passes with the log
    up to the checkpoint's `seq` (None: they agree)."""
    rows: list[Row] = run(conn, recorder.sparse_rows(until_seq=seq))
    found = _Sparse()
    for row, event in decoded(rows):
        match event:
            case None:
                return blame(recorder, rows, f"the log's seq {row.seq} is unreadable")
            case ev.GroupCreated():
                found.groups[event.group_id] = (row, event.name, event.max_running)
            case ev.WorkerLost():
                found.gone[event.worker_id] = (row, "lost")
            case ev.WorkerStopped():
                found.gone[event.worker_id] = (row, "stopped")
            case ev.TaskClaimed() if event.ahead_of is not None:
                found.ahead.setdefault(event.ahead_of, []).append(row)
            case ev.TaskCancelled():
                found.ended[event.task_id] = (row, "cancelled")
            case ev.TaskFailed():
                found.ended[event.task_id] = (row, "failed")
            case ev.TaskCompleted() if event.retry_in_s is None:
                if event.exit_code != 0 or event.timed_out:
                    found.ended[event.task_id] = (row, "failed")
    return (
        _groups(conn, recorder, found)
        or _workers(conn, recorder, found)
        or _passes(conn, recorder, found, seq)
        or _ended(conn, recorder, found)
    )


def _groups(conn: Connection, recorder: Recorder, found: _Sparse) -> Finding | None:
    """Each group's name and cap, as its GroupCreated made them."""
    have = {group_id: (name, cap) for group_id, name, cap in conn.execute(GROUPS)}
    for group_id in sorted(have.keys() | found.groups.keys()):
        if group_id not in found.groups:
            return Finding(f"group {group_id} is in `groups` but was never made", False)
        row, *made = found.groups[group_id]
        if group_id not in have:
            return blame(recorder, [row], f"group {group_id} is in the log but not in `groups`")
        for name, held, expected in zip(("name", "max_running"), have[group_id], made, strict=True):
            if held != expected:
                return blame(
                    recorder,
                    [row],
                    f"group {group_id}: {name} is {held!r} in the `groups` projection but "
                    f"{expected!r} in the log",
                )
    return None


def _workers(conn: Connection, recorder: Recorder, found: _Sparse) -> Finding | None:
    """A worker is alive until the log says it stopped or was lost (ids are never reused)."""
    for worker_id, state in conn.execute(WORKER_STATES):
        row, expected = found.gone.get(worker_id, (None, "alive"))
        if state != expected:
            return blame(
                recorder,
                [] if row is None else [row],
                f"worker {worker_id}: state is {state!r} in the `workers` projection but "
                f"{expected!r} in the log",
            )
    return None


def _passes(conn: Connection, recorder: Recorder, found: _Sparse, seq: int) -> Finding | None:
    """A pending task's passes: the claims that went ahead of it since its own last claim
    (the fold counts them from there; start-up takes them for the starvation rule)."""
    have = dict(conn.execute(PASSED))
    for task_id in sorted(have.keys() | found.ahead.keys()):
        row = conn.execute(PASSES_OF, (task_id,)).fetchone()
        if row is None or row[0] != "pending":
            continue  # the task checks say what is wrong with it, if anything
        own: list[Row] = run(
            conn,
            recorder.select(
                task_id=task_id, types=("TaskClaimed",), until_seq=seq, descending=True, limit=1
            ),
        )
        since = own[0].seq if own else 0
        counted = [r for r in found.ahead.get(task_id, ()) if r.seq > since]
        if row[1] != len(counted):
            return blame(
                recorder,
                own + counted,
                f"task {task_id}: passes is {row[1]!r} in the `tasks` projection but "
                f"{len(counted)} in the log",
            )
    return None


def _ended(conn: Connection, recorder: Recorder, found: _Sparse) -> Finding | None:
    """The tasks that failed or were cancelled, each by its last event, and the counts of
    the finished states against the rows."""
    have = dict(conn.execute(ENDED_BADLY))
    for task_id in sorted(have.keys() | found.ended.keys()):
        row, expected = found.ended.get(task_id, (None, None))
        if have.get(task_id) != expected:
            held = have.get(task_id)
            return blame(
                recorder,
                [] if row is None else [row],
                f"task {task_id}: state is {held or 'not failed or cancelled'!r} in the "
                f"`tasks` projection but {expected or 'not failed or cancelled'!r} in the log",
            )
    for state, counted, rows in conn.execute(COUNTS):
        if counted != rows:
            return Finding(f"task_counts says {counted} {state} but `tasks` holds {rows}", False)
    return None
