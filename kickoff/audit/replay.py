"""What the server knew at a point in the log, rebuilt offline from a read-only database.

The State forgets finished tasks and holds no commands, so the view comes from fresh
projections built up to the point in a temporary database and read with the queries of
`status`, `stats` and `info`; the folded State cross-checks them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from kickoff.audit.fresh import Builder
from kickoff.clock import from_text, to_text
from kickoff.errors import DatabaseRefused, NotFound
from kickoff.events import codec
from kickoff.projections import queries
from kickoff.state.fold import State, apply
from kickoff.state.task_state import LIVE_STATES, TaskState
from kickoff.store.chain import Recorded, Row
from kickoff.store.sqlite import SqliteRecorder

JSONObj = dict[str, Any]
CHUNK = 20_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """A place in the log: everything up to and including `seq` has happened."""

    seq: int  # 0: before the first event
    at: str | None  # the time of the event at `seq`
    last_seq: int  # the log's last seq now


def resolve(
    recorder: SqliteRecorder, *, until_seq: int | None = None, at: datetime | None = None
) -> Point:
    """The point named by a seq (the last event at or before it) or a time (the last
    event recorded at or before it); the end of the log when neither is given."""
    conn = recorder.conn
    try:
        last: list[Row] = queries.run(conn, recorder.select(descending=True, limit=1))
        if until_seq is not None:
            found = queries.run(
                conn, recorder.select(until_seq=until_seq, descending=True, limit=1)
            )
        elif at is not None:
            found = queries.run(conn, recorder.select(until=to_text(at), descending=True, limit=1))
        else:
            found = last
    except sqlite3.DatabaseError as exc:
        raise DatabaseRefused(f"cannot read the log: {exc}") from exc
    row = found[0] if found else None
    return Point(
        seq=row.seq if row else 0,
        at=row.at if row else None,
        last_seq=last[0].seq if last else 0,
    )


@dataclass(slots=True)
class View:
    """Projections and State as of one point."""

    point: Point
    projections: sqlite3.Connection
    state: State
    events: int
    disagreements: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = queries.run(self.projections, queries.counts())
        return {str(s): found.get(str(s), 0) for s in TaskState}

    def stats(self) -> JSONObj:
        """As `kickoff stats --json` would have shown it (without throughput)."""
        workers = self.state.workers.values()
        return {
            **self.counts(),
            "workers": {
                "alive": len(workers),
                "busy": sum(1 for w in workers if w.running),
                "slots": sum(w.slots for w in workers),
                "slots_used": sum(len(w.running) for w in workers),
            },
            "last_seq": self.point.seq,
        }

    def live_tasks(self, *, limit: int) -> list[JSONObj]:
        """Pending, running and cancelling tasks, oldest first (what `status` lists)."""
        states = [str(s) for s in LIVE_STATES]
        found: list[JSONObj] = queries.run(
            self.projections, queries.list_tasks(states=states, limit=limit)
        )
        return found

    def workers(self, *, include_gone: bool = False) -> list[JSONObj]:
        found: list[JSONObj] = queries.run(
            self.projections, queries.list_workers(include_gone=include_gone)
        )
        return found

    def task(self, task_id: int) -> JSONObj | None:
        found: JSONObj | None = queries.run(self.projections, queries.get_task(task_id))
        return found

    def close(self) -> None:
        self.projections.close()


def _needed(recorder: SqliteRecorder, until_seq: int) -> Iterator[tuple[Row, bool]]:
    """Log rows up to a seq, each checked against the hash chain, with whether it matters
    for the end result.

    A heartbeat only moves its worker's last_seen, so one followed (in the same chunk) by
    a later heartbeat of the same worker changes neither the final State nor any final
    projection row: it is read and verified but not decoded, folded or projected.

    Raises:
        DatabaseRefused: a row that does not verify (nothing after it is trusted).
    """
    chunk: list[Row] = []
    for row in recorder.verified_rows(until_seq=until_seq):
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield from _marked(chunk)
            chunk = []
    yield from _marked(chunk)


def _marked(chunk: list[Row]) -> Iterator[tuple[Row, bool]]:
    later: set[str | None] = set()
    keep = [True] * len(chunk)
    for i in range(len(chunk) - 1, -1, -1):
        if chunk[i].type == "WorkerHeartbeat":
            keep[i] = chunk[i].worker_id not in later
            later.add(chunk[i].worker_id)
    yield from zip(chunk, keep, strict=True)


def build(recorder: SqliteRecorder, point: Point) -> View:
    """Fold the log up to the point into a State and fresh projections.

    Raises:
        DatabaseRefused: an event that does not decode, fold or project (run `verify`),
            or an unreadable database.
    """
    state, builder, count = State(), Builder(), 0
    try:
        with recorder.snapshot():
            for row, needed in _needed(recorder, point.seq):
                count += 1
                if needed:
                    rec = Recorded(
                        row.seq, _time(row.at), codec.decode(row.type, row.version, row.payload)
                    )
                    _fold(state, rec)
                    builder.add(rec)
            builder.flush()
    except sqlite3.DatabaseError as exc:
        builder.conn.close()
        raise DatabaseRefused(f"cannot read the log: {exc}") from exc
    except (DatabaseRefused, TypeError, KeyError) as exc:  # does not decode, fold or project
        builder.conn.close()
        if isinstance(exc, DatabaseRefused):
            raise
        raise DatabaseRefused(f"the log does not project: {exc!r}; run `kickoff verify`") from exc
    view = View(point=point, projections=builder.conn, state=state, events=count)
    view.disagreements = _disagreements(view)
    return view


def _fold(state: State, rec: Recorded) -> None:
    try:
        apply(state, rec.event, seq=rec.seq, at=rec.at)
    except (KeyError, ValueError) as exc:
        raise DatabaseRefused(
            f"event seq {rec.seq} ({type(rec.event).__name__}) does not fold: {exc!r}; "
            "run `kickoff verify`"
        ) from exc


@lru_cache(maxsize=1024)  # the events of one request share their time
def _time(text: str) -> datetime:
    return from_text(text)


def _disagreements(view: View) -> list[str]:
    """Where the folded State and the fresh projections tell different stories."""
    found: list[str] = []
    counts = view.counts()
    for name in LIVE_STATES:
        if view.state.counts[name] != counts[name]:
            found.append(f"{name}: {view.state.counts[name]} in the fold, {counts[name]} in SQL")
    alive_sql = {w["id"] for w in view.workers()}
    if set(view.state.workers) != alive_sql:
        fold = sorted(view.state.workers)
        found.append(f"live workers: {fold} in the fold, {sorted(alive_sql)} in SQL")
    if view.state.last_seq != view.point.seq:
        found.append(f"the fold reached seq {view.state.last_seq}, not {view.point.seq}")
    return found


def task_events(recorder: SqliteRecorder, task_id: int, *, until_seq: int) -> list[JSONObj]:
    """The task's events up to a seq, with its workers' heartbeats while they ran it (as
    `GET /v1/tasks/{id}/events` gives them).

    Raises:
        NotFound: the task had not been submitted by then.
    """
    conn = recorder.conn
    own: list[JSONObj] = queries.run(
        conn, queries.list_events(recorder, task_id=task_id, until_seq=until_seq, limit=1 << 30)
    )
    if not own:
        submitted: list[Row] = queries.run(
            conn, recorder.select(task_id=task_id, types=["TaskSubmitted"])
        )
        if not submitted:
            raise NotFound(f"no task {task_id}")
        raise NotFound(
            f"task {task_id} did not exist yet at seq {until_seq}: it was submitted at "
            f"seq {submitted[0].seq} ({submitted[0].at})"
        )
    extra: list[JSONObj] = []
    for i, event in enumerate(own):
        if event["type"] != "TaskClaimed":
            continue
        end = next((e["seq"] - 1 for e in own[i + 1 :]), until_seq)
        beats: list[JSONObj] = queries.run(
            conn,
            queries.list_events(
                recorder,
                after_seq=event["seq"],
                until_seq=end,
                types=["WorkerHeartbeat"],
                worker_id=event["worker_id"],
                limit=1 << 30,
            ),
        )
        extra.extend(b for b in beats if any(p[0] == task_id for p in b["data"]["running"]))
    return sorted(own + extra, key=lambda e: int(e["seq"]))
