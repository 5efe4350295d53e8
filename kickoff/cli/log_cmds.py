"""The log as a tool: history, events (and --follow), replay, verify, compact, projections.

`history` and `events` ask the server (docs/api.md). `replay`, `verify`, `compact` and
`projections rebuild` open the database file directly: the first two read-only, so they
are safe on a live server's database. The store and the offline audit modules are
imported by those commands alone, so `history` and `events` never load them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import orjson
import typer

from kickoff import defaults
from kickoff.audit import history as hist
from kickoff.audit import timespec
from kickoff.cli import _view_log as views
from kickoff.cli import _words as words
from kickoff.cli._options import (
    JsonOpt,
    ServerOpt,
    TokenOpt,
    client,
    db_location,
    db_option,
    db_path,
)
from kickoff.cli._tables import fields
from kickoff.cli._terminal import assemble, err, heading, print_json, print_json_line, styled
from kickoff.client import Client
from kickoff.dblocation import Location
from kickoff.errors import DatabaseRefused, InvalidInput, NotFound, ServerUnreachable

if TYPE_CHECKING:
    from kickoff.audit import replay as replaying

EventJSON = dict[str, Any]
PAGE = defaults.MAX_PAGE  # as much as the server gives in one answer
RECONNECT_S = 1.0

DbOpt = Annotated[
    str | None, db_option("Database file (default: $KICKOFF_DB, else the XDG data dir).")
]


def _now() -> datetime:
    return datetime.now(UTC)


def _db(text: str | None) -> Location:
    return db_path(text)


# ----------------------------------------------------------------------------- history


def history(
    task_id: Annotated[int, typer.Argument(metavar="ID", help="The task id.", show_default=False)],
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show a task's full story, event by event.

    Submission, each claim (worker, attempt), heartbeats summarised per worker, lease
    expiries, requeues, cancel requests and the completion (exit code, duration, output).
    --json prints the events themselves (seq, ts, type, task_id, worker_id, data).

    \b
      kickoff history 42
      kickoff history 42 --json | jq -r '.[].type'
    """
    with client(server, token) as api:
        events: list[EventJSON] = api.get(f"/v1/tasks/{task_id}/events")["events"]
    if as_json:
        print_json(events)
        return
    views.print_story(hist.story(events), task_id, now=_now())


# ------------------------------------------------------------------------------ events


# Outcome names: the events that end a task so. A command that exits non-zero (or times
# out) is a TaskCompleted with its exit code; TaskFailed is a task that ran out of attempts.
OUTCOMES = {"failed": ("TaskCompleted", "TaskFailed"), "succeeded": ("TaskCompleted",)}


def outcome(event: EventJSON) -> str | None:
    """`succeeded` or `failed` for an event that ends a task so; None for any other."""
    if event["type"] == "TaskFailed":
        return "failed"
    if event["type"] != "TaskCompleted":
        return None
    data = event.get("data") or {}
    return "succeeded" if data.get("exit_code") == 0 and not data.get("timed_out") else "failed"


@dataclass(frozen=True)
class Selection:
    """What `--type` asks for: event types the server filters on, and outcomes kept here."""

    types: frozenset[str] = frozenset()
    outcomes: frozenset[str] = frozenset()

    def server_types(self) -> list[str]:
        wanted = set(self.types).union(*(OUTCOMES[name] for name in self.outcomes))
        return sorted(wanted)

    def keep(self, event: EventJSON) -> bool:
        return not self.outcomes or event["type"] in self.types or outcome(event) in self.outcomes


def _event_type(name: str) -> str:
    """An event type by its exact name, or case-insensitively, or without `Task`/`Worker`.

    Raises:
        InvalidInput: no such type (the message lists them, and the outcome names).
    """
    from kickoff.events.model import EVENT_TYPES  # the names; `history` never needs them

    if name in EVENT_TYPES:
        return name
    folded = {t.lower(): t for t in EVENT_TYPES}
    for key in (name.lower(), f"task{name.lower()}", f"worker{name.lower()}"):
        if key in folded:
            return folded[key]
    raise InvalidInput(
        f"unknown event type {name!r}; one of: {', '.join(EVENT_TYPES)} (or without "
        "Task/Worker: submitted, lost, ...), or an outcome: failed (a task that failed: "
        "non-zero exit, timeout, attempts used up), succeeded"
    )


def _selection(values: Sequence[str] | None) -> Selection:
    names = [
        v.strip() for value in values or () for v in value.replace(";", ",").split(",") if v.strip()
    ]
    outcomes = {name.lower() for name in names if name.lower() in OUTCOMES}
    types = {_event_type(name) for name in names if name.lower() not in OUTCOMES}
    return Selection(frozenset(types), frozenset(outcomes))


def _with_header(emit: Callable[[EventJSON], None]) -> Callable[[EventJSON], None]:
    """`emit`, printing the column header (on a terminal) before the first event."""
    shown = False

    def first_with_header(event: EventJSON) -> None:
        nonlocal shown
        if not shown:
            views.print_header()
            shown = True
        emit(event)

    return first_with_header


def _filters(
    api: Client,
    *,
    since: str | None,
    until: str | None,
    selection: Selection,
    task: int | None,
    worker: str | None,
) -> dict[str, Any]:
    """Query parameters for /v1/events(/stream) from the command's options."""
    now = _now()
    params: dict[str, Any] = {"type": selection.server_types() or None, "task": task}
    if since is not None:
        point = timespec.parse_point(since, now=now)
        if isinstance(point, int):
            params["after"] = max(point - 1, 0)
        else:
            params["since"] = point.isoformat()
    if until is not None:
        point = timespec.parse_point(until, now=now)
        params["until" if isinstance(point, int) else "until_time"] = (
            point if isinstance(point, int) else point.isoformat()
        )
    if worker is not None:
        params["worker"] = _worker_id(api, worker)
    return params


def _worker_id(api: Client, key: str) -> str:
    """A worker id from an id or a name (names are resolved by the server)."""
    if key[:1] == "w" and key[1:].isdigit():
        return key
    try:
        found: EventJSON = api.get(f"/v1/workers/{quote(key, safe='')}")
    except NotFound:
        return key
    return str(found["id"])


def _pages(
    api: Client, params: dict[str, Any], limit: int | None, keep: Callable[[EventJSON], bool]
) -> Iterator[EventJSON]:
    """Events matching the filters (and `keep`), a page at a time, up to `limit`."""
    after, left = int(params.get("after", 0)), limit
    while True:
        size = PAGE if left is None else min(left, PAGE)
        page: list[EventJSON] = api.get("/v1/events", **{**params, "after": after, "limit": size})[
            "events"
        ]
        for event in filter(keep, page):
            yield event
            if left is not None:
                left -= 1
                if left == 0:
                    return
        if len(page) < size:
            return
        after = page[-1]["seq"]


def _sse_events(lines: Iterator[str]) -> Iterator[EventJSON]:
    """Events from server-sent-event lines (`id:`, `event:`, `data:`, blank line)."""
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line.strip():
            if data:
                yield orjson.loads("\n".join(data))
            data = []


def _past(event: EventJSON, params: dict[str, Any]) -> bool:
    """Whether a followed event is beyond --until."""
    if "until" in params:
        return int(event["seq"]) > int(params["until"])
    if "until_time" in params:
        return hist.parse_ts(event["ts"]) > hist.parse_ts(params["until_time"])
    return False


def _last_seq(api: Client) -> int:
    return int(api.get("/v1/events", after=1 << 62, limit=1)["last_seq"])


def _follow(
    api: Client,
    params: dict[str, Any],
    *,
    emit: Callable[[EventJSON], None],
    limit: int | None,
    keep: Callable[[EventJSON], bool],
) -> None:
    """Print events as they are recorded until Ctrl-C (or --until / --limit).

    Raises:
        ServerUnreachable: at the start only; later outages are waited out (and the
            stream resumes after the last event shown, so nothing is missed or repeated).
    """
    stream = {k: v for k, v in params.items() if k not in ("until", "until_time")}
    last = _last_seq(api)  # also: fail now, not silently retry, if there is no server
    if "after" not in stream:
        stream["after"] = 0 if "since" in stream else last
    shown, away = 0, False
    while True:
        try:
            for event in _sse_events(api.stream_lines("/v1/events/stream", **stream)):
                away = False
                if _past(event, params):
                    return
                stream["after"] = event["seq"]
                if not keep(event):
                    continue
                emit(event)
                shown += 1
                if limit is not None and shown >= limit:
                    return
            note = "the server closed the stream"
        except ServerUnreachable:
            note = "the server is unreachable"
        if not away:
            err.line(styled(f"({note}; reconnecting…)", "dim"))
            away = True
        time.sleep(RECONNECT_S)


def events(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events (Ctrl-C stops).")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="SEQ|TIME",
            help="From this seq (inclusive) or time (ISO 8601, 10:01:02, or 10m / 2h / 1d ago).",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="SEQ|TIME",
            help="Up to this seq (inclusive) or time.",
            show_default=False,
        ),
    ] = None,
    event_type: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            metavar="TYPE",
            help=(
                "Only this event type (repeatable, or a comma list; TaskCompleted or "
                "completed), or outcome: failed (non-zero exit, timeout, attempts used up), "
                "succeeded."
            ),
            show_default=False,
        ),
    ] = None,
    task: Annotated[
        int | None,
        typer.Option(
            "--task", metavar="ID", help="Only events about this task.", show_default=False
        ),
    ] = None,
    worker: Annotated[
        str | None,
        typer.Option(
            "--worker",
            metavar="WORKER",
            help="Only events about this worker (id or name).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", metavar="N", min=1, help="At most N events.", show_default=False),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON event per line (jq-friendly).")
    ] = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Query the event log, or follow it live.

    Without --since, --follow shows only new events; with it, the backlog first.

    \b
      kickoff events --since 10m --type completed
      kickoff events --task 42
      kickoff events --follow --type failed --json | jq --unbuffered .task_id
    """
    emit = print_json_line if as_json else _with_header(views.print_event_line)
    selection = _selection(event_type)  # refuses an unknown name before any request
    with client(server, token) as api:
        params = _filters(
            api, since=since, until=until, selection=selection, task=task, worker=worker
        )
        if not follow:
            for event in _pages(api, params, limit, selection.keep):
                emit(event)
            return
        with contextlib.suppress(KeyboardInterrupt):
            _follow(api, params, emit=emit, limit=limit, keep=selection.keep)


# ------------------------------------------------------------------------------ replay


def replay(
    db: DbOpt = None,
    until: Annotated[
        int | None,
        typer.Option(
            "--until",
            metavar="SEQ",
            min=0,
            help="Replay up to and including this seq.",
            show_default=False,
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="TIME",
            help="Replay up to this time (ISO 8601, 10:01:02, or 10m / 2h ago).",
            show_default=False,
        ),
    ] = None,
    task: Annotated[
        int | None,
        typer.Option(
            "--task",
            metavar="ID",
            help="Show this task as it was then, with its story so far.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", min=1, help="Live tasks to list.")
    ] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Show the state as it was at a point in the log (offline, read-only).

    Rebuilds, from the log file up to a seq or a time, what status, stats and info would
    have shown then. Read-only: safe on a live server's database. Without --until/--at:
    the end of the log.

    \b
      kickoff replay --until 1200
      kickoff replay --at 2026-01-01T10:00:00Z --task 42
      kickoff replay --at 1h --json | jq .stats
    """
    if until is not None and at is not None:
        raise InvalidInput("give --until SEQ or --at TIME, not both")
    from kickoff.audit import replay as replaying
    from kickoff.database import open_connection, recorder_of

    when = timespec.parse_time(at, now=_now()) if at is not None else None
    path = _db(db)
    conn = open_connection(path, readonly=True)
    try:
        recorder = recorder_of(conn)
        point = replaying.resolve(recorder, until_seq=until, at=when)
        events = replaying.task_events(recorder, task, until_seq=point.seq) if task else []
        view = replaying.build(recorder, point)
    finally:
        conn.close()
    try:
        _show_replay(view, path, task=task, events=events, limit=limit, as_json=as_json)
    finally:
        view.close()


def _show_replay(
    view: replaying.View,
    path: Location,
    *,
    task: int | None,
    events: list[EventJSON],
    limit: int,
    as_json: bool,
) -> None:
    for problem in view.disagreements:
        err.line(
            styled(
                f"warning: fold and projections disagree: {problem}; run `kickoff verify`", "yellow"
            )
        )
    head = {
        "seq": view.point.seq,
        "at": view.point.at,
        "last_seq": view.point.last_seq,
        "disagreements": view.disagreements,
    }
    if task is not None:
        found = view.task(task)
        if found is None:  # task_events already refused a task not yet submitted
            raise NotFound(f"no task {task} at seq {view.point.seq}")
        if as_json:
            print_json({**head, "task": found, "events": events})
        else:
            views.print_task_then(view, found, events)
        return
    if as_json:
        print_json(
            {
                **head,
                "stats": view.stats(),
                "tasks": view.live_tasks(limit=limit),
                "workers": view.workers(),
            }
        )
    else:
        views.print_view(view, limit=limit, path=path)


# ------------------------------------------------------------------------------ verify


def verify(
    db: DbOpt = None,
    archive: Annotated[
        list[Path] | None,
        typer.Option(
            "--archive",
            metavar="FILE",
            help="Where compacted heartbeats are, if not where compact wrote them (repeatable).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the log's integrity and the projections (offline, read-only).

    Seq continuity, the hash chain, every payload, the fold over every event, SQLite's
    integrity check, and that the projections equal a fresh rebuild. Exits 1 with a
    report naming the first bad seq on any problem. Safe on a live server's database.

    \b
      kickoff verify
      kickoff verify --db backup.db --json | jq .first_bad_seq
    """
    from kickoff.audit import verify as verifying

    report = verifying.verify(_db(db), archives=archive or ())
    if as_json:
        print_json(report.to_json())
    else:
        views.print_report(report)
    if not report.ok:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- compact


def compact(
    before: Annotated[
        str,
        typer.Option(
            "--before",
            metavar="SEQ|TIME",
            help="Archive heartbeats older than this seq or time (ISO 8601, or 7d / 12h ago).",
            show_default=False,
        ),
    ],
    db: DbOpt = None,
    archive: Annotated[
        Path | None,
        typer.Option(
            "--archive",
            metavar="FILE",
            help="Archive file (default: beside the database, NAME.archive.db; for PostgreSQL "
            "in the data dir).",
            show_default=False,
        ),
    ] = None,
    vacuum: Annotated[
        bool,
        typer.Option(
            "--vacuum",
            help="Then shrink the file with VACUUM (rewrites it; best with the server stopped).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Archive old heartbeats out of the log (retention); verify stays green.

    Only heartbeats a later heartbeat of the same worker makes redundant are moved (each
    worker's latest before the cut stays), so status, stats, projections and replayed
    state are unchanged. Rows keep their hashes in the archive; `kickoff verify` checks
    the chain through them. Safe while a server runs (short transactions).

    \b
      kickoff compact --before 7d
      kickoff compact --before 1000000 --archive /backup/kickoff-2026-01.db
    """
    path = _db(db)
    if isinstance(path, Path) and not path.exists():
        raise DatabaseRefused(f"no database at {path}")
    from kickoff.audit import compact as compaction
    from kickoff.dblocation import beside

    point = timespec.parse_point(before, now=_now())
    if isinstance(path, Path):
        target = archive or path.with_name(f"{path.stem}.archive{path.suffix or '.db'}")
    else:  # PostgreSQL's: an SQLite file in this machine's data directory
        target = archive or beside(path, ".archive.db")
    result = compaction.compact(path, before=point, archive=target, now=_now())
    if vacuum:
        compaction.vacuum(path)
    if as_json:
        print_json(
            {
                "before_seq": result.before_seq,
                "archived": result.archived,
                "kept": result.kept,
                "first_seq": result.first_seq,
                "last_seq": result.last_seq,
                "archive": str(result.archive),
            }
        )
        return
    if not result.archived:
        heading(f"nothing to compact before seq {result.before_seq:,}")
        return
    heading(
        assemble(
            ("archived ", "bold"),
            (f"{result.archived:,}", "bold"),
            " heartbeats ",
            f"(seqs {result.first_seq:,}..{result.last_seq:,}, before seq {result.before_seq:,}) "
            f"to {result.archive}; kept each worker's latest ({result.kept:,})",
        )
    )
    heading(styled(f"check with: kickoff verify --db {path}", "dim"))


# ------------------------------------------------------------------------- projections

projections_app = typer.Typer(
    name="projections",
    help=(
        "Rebuild the SQL projections (tasks, workers, task_counts, groups) from the log.\n\n"
        "\b\n"
        "  kickoff projections rebuild --db kickoff.db"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)


@projections_app.command("rebuild")
def rebuild(
    db: DbOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Run even while a server uses the database.")
    ] = False,
) -> None:
    """Drop and rebuild the projections from the log, in one transaction.

    Meant for a stopped server: it refuses while a server holds the database (and keeps
    one from starting meanwhile). With --force it runs anyway; it is still one
    transaction, but the server's writes wait for it.

    \b
      kickoff projections rebuild --db kickoff.db
    """
    from kickoff.database import open_connection, recorder_of
    from kickoff.projections.rebuild import rebuild as rebuild_projections

    path = _db(db)
    if isinstance(path, Path) and not path.exists():
        raise DatabaseRefused(f"no database at {path}")
    release = None if force else _lock(path)
    began = time.perf_counter()
    try:
        conn = open_connection(path)
        try:
            count = rebuild_projections(conn, recorder_of(conn))
            counts = dict(conn.execute("SELECT state, n FROM task_counts").fetchall())
        finally:
            conn.close()
    finally:
        if release is not None:
            release()
    took = time.perf_counter() - began
    heading(f"rebuilt tasks, workers, task_counts and groups from {count:,} events in {took:.2f}s")
    fields([("tasks", words.counts_line(counts))])


# ----------------------------------------------------------------------------- migrate


def migrate(
    src: Annotated[
        str,
        typer.Argument(
            metavar="SRC",
            parser=db_location,
            help="The log to copy: a file or a postgresql:// URL.",
        ),
    ],
    dst: Annotated[
        str,
        typer.Argument(
            metavar="DST",
            parser=db_location,
            help="Where to: a new file, or an empty PostgreSQL database.",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Copy a log to another database: SQLite to PostgreSQL, or back.

    Rows go as stored (their hashes kept), each checked against the hash chain as it is
    read; the projections are built beside them, in one transaction: a failed copy writes
    nothing. DST must hold no events. SRC is read in one snapshot, so a live server may
    keep writing to it (what it writes after is not copied: stop it to move for good).
    Task output and the token stay where they are. Then run `kickoff verify --db DST`.

    \b
      kickoff migrate kickoff.db postgresql://kickoff@db.example/kickoff
      kickoff migrate postgresql://kickoff@db.example/kickoff backup.db
    """
    from kickoff.audit import migrate as migrating

    source, target = db_path(src), db_path(dst)
    release = _lock(target)  # no server starts on it meanwhile
    try:
        result = migrating.migrate(source, target)
    finally:
        release()
    if as_json:
        print_json(
            {
                "events": result.events,
                "last_seq": result.last_seq,
                "compactions": result.compactions,
                "seconds": round(result.seconds, 3),
            }
        )
        return
    heading(
        f"copied {result.events:,} events (seq 1..{result.last_seq:,}) from {source} to "
        f"{target} in {result.seconds:.2f}s; the chain verified"
    )
    heading(styled(f"check with: kickoff verify --db {target}", "dim"))


def _lock(path: Location) -> Callable[[], None]:
    """Hold the database as a server does (a second server is refused meanwhile); returns
    what lets it go.

    Raises:
        DatabaseRefused: a server holds it.
    """
    if isinstance(path, Path):
        from kickoff.store.connection import lock_exclusive

        fd = lock_exclusive(path)
        return lambda: os.close(fd)
    from kickoff.store.lease import hold_offline

    return hold_offline(path, "kickoff (offline)")


def register(app: typer.Typer) -> None:
    """Add the log commands to the app."""
    app.command("history")(history)
    app.command("events")(events)
    app.command("replay")(replay)
    app.command("verify")(verify)
    app.command("compact")(compact)
    app.command("migrate")(migrate)
    app.add_typer(projections_app, name="projections")
