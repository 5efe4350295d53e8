"""How the log commands look: a task's story, event lines, a replayed state, verify's report.

On a terminal (`_terminal`, `_tables`): coloured, aligned, relative times. Piped: plain
tab-separated lines and ISO times, so `cut`, `awk` and `grep` work. `--json` never comes
through here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kickoff.audit import history as hist
from kickoff.cli import _words as words
from kickoff.cli._tables import fields, table
from kickoff.cli._terminal import (
    Cell,
    Styled,
    assemble,
    heading,
    join,
    lines,
    one_line,
    out,
    styled,
)
from kickoff.cli._view_tasks import task_fields

if TYPE_CHECKING:  # the offline commands' (replay, verify): imported by them alone
    from kickoff.audit import replay as replaying
    from kickoff.audit import verify as verifying

EventJSON = dict[str, Any]

TYPE_STYLES = {
    "ServerStarted": "bold",
    "TaskSubmitted": "yellow",
    "GroupCreated": "yellow",
    "TaskReleased": "yellow",
    "TaskClaimed": "cyan",
    "WorkerHeartbeat": "dim",
    "TaskCompleted": "green",
    "TaskCancelRequested": "magenta",
    "TaskCancelled": "magenta",
    "TaskLeaseExpired": "red",
    "TaskRequeued": "yellow",
    "TaskFailed": "bold red",
    "WorkerRegistered": "blue",
    "WorkerTagsChanged": "blue",
    "WorkerStopped": "dim",
    "WorkerLost": "red",
}
OUTCOME_STYLES = {
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "magenta",
    "warning": "yellow",
}
KIND_STYLES = {
    "heartbeats": "dim",
    "claimed": "cyan",
    "submitted": "yellow",
    "released": "yellow",
}


def _step_time(at: datetime, first: datetime | None, *, same_day: bool) -> str:
    if not out.is_terminal:
        return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fmt = "%H:%M:%S.%f" if same_day else "%m-%d %H:%M:%S.%f"
    return at.astimezone(UTC).strftime(fmt)[:-3]


def _elapsed(at: datetime, first: datetime | None) -> str:
    if first is None:
        return "-"
    seconds = (at - first).total_seconds()
    if not out.is_terminal:
        return f"{seconds:.3f}"
    return "+" + hist.duration(max(seconds, 0.0))


def _step_cell(step: hist.Step) -> Styled:
    style = OUTCOME_STYLES.get(step.outcome or "") or KIND_STYLES.get(step.kind, "")
    return styled(step.text, style)


def _story_header(story: hist.Story, task_id: int, now: datetime, *, replayed: bool) -> None:
    parts: list[Cell] = [styled(f"task {task_id}", "bold"), words.state(story.state)]
    if story.command is not None:
        parts.append(one_line(story.command, 200))
    heading(join(" · ", parts))
    facts = []
    if story.submitted_at is not None:
        at = story.submitted_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        iso = story.submitted_at.isoformat()
        when = before(iso, now) if replayed else words.ago(iso, now)
        facts.append(f"submitted {at}" + (f" ({when})" if out.is_terminal else ""))
    if story.waited_s is not None:
        facts.append(f"waited {hist.duration(story.waited_s)}")
    if story.took_s is not None:
        facts.append(f"took {hist.duration(story.took_s)} in all")
    if story.attempts:
        of = f" of {story.max_attempts}" if story.max_attempts else ""
        facts.append(f"{story.attempts} attempt{'s' if story.attempts != 1 else ''}{of}")
    if facts:
        heading(styled(" · ".join(facts), "dim"))
    heading("")


def print_story(story: hist.Story, task_id: int, *, now: datetime, replayed: bool = False) -> None:
    """A task's story: header, one aligned line per step, the last output tail."""
    _story_header(story, task_id, now, replayed=replayed)
    first = story.submitted_at or (story.steps[0].at if story.steps else None)
    days = {s.at.astimezone(UTC).date() for s in story.steps}
    rows: Iterator[list[Cell]] = (
        [
            _step_time(s.at, first, same_day=len(days) <= 1),
            _elapsed(s.at, first),
            f"{s.seq}..{s.last_seq}" if s.last_seq and s.last_seq != s.seq else str(s.seq),
            _step_cell(s),
        ]
        for s in story.steps
    )
    table(["TIME (UTC)", "ELAPSED", "SEQ", "WHAT HAPPENED"], rows, right=("ELAPSED", "SEQ"))
    tails = [s for s in story.steps if s.output_tail]
    if tails:
        attempt = f"attempt {tails[-1].attempt}, " if tails[-1].attempt else ""
        heading("")
        heading(f"output ({attempt}last 4 KiB):")
        lines(tails[-1].output_tail)


def _event_time(ts: str) -> str:
    if not out.is_terminal:
        return ts
    return hist.parse_ts(ts).strftime("%m-%d %H:%M:%S.%f")[:-3]


def _details(event: EventJSON) -> str:
    data = event.get("data") or {}
    return words.summary(data, skip=("task_id", "worker_id", "output_tail"), limit=120)


def print_event_line(event: EventJSON) -> None:
    """One event, one line: aligned, coloured and cut at the screen's edge on a terminal;
    tab-separated when piped."""
    task = event.get("task_id")
    worker = str(event.get("worker_id") or "-")
    if not out.is_terminal:
        cells = [str(event["seq"]), event["ts"], event["type"], "-" if task is None else str(task)]
        out.write("\t".join(one_line(c) for c in [*cells, worker, _details(event)]) + "\n")
        out.flush()
        return
    style = TYPE_STYLES.get(event["type"], "")
    data = event.get("data") or {}
    if event["type"] == "TaskCompleted" and (data.get("exit_code") or data.get("timed_out")):
        style = "red"
    line = assemble(
        (f"{event['seq']:>8}", "bold"),
        "  ",
        (_event_time(event["ts"]), "dim"),
        "  ",
        (f"{one_line(str(event['type'])):<19}", style),
        "  ",
        f"{'' if task is None else task:>7}",
        "  ",
        f"{one_line(worker):<6}",
        "  ",
        _details(event),
    )
    out.line(line, cut_at_edge=True)
    out.flush()


def print_header() -> None:
    if out.is_terminal:
        out.line(
            styled(
                f"{'SEQ':>8}  {'TIME (UTC)':<18}  {'TYPE':<19}  {'TASK':>7}  {'WORKER':<6}  "
                "DETAILS",
                "bold",
            )
        )


def before(text: str | None, point_at: datetime) -> str:
    """A time relative to the replayed point: `12s before`; ISO when piped."""
    if text is None:
        return "-"
    if not out.is_terminal:
        return text
    seconds = (point_at - hist.parse_ts(text)).total_seconds()
    return (
        "at that moment"
        if abs(seconds) < 1
        else (f"{words.span(seconds)} before" if seconds > 0 else f"{words.span(-seconds)} after")
    )


def print_view(view: replaying.View, *, limit: int, path: object) -> None:
    point, at = view.point, hist.parse_ts(view.point.at) if view.point.at else _now()
    later = view.point.last_seq - point.seq
    where = f"after seq {point.seq:,}" + (f" at {point.at}" if point.at else "")
    if not point.seq:
        where = "before the first event"
    tail = f"; {later:,} later events not applied" if later else " (the end of the log)"
    heading(assemble(("replay: ", "bold"), (f"the state {where}", "bold"), tail))
    heading(styled(f"read-only replay of {path}", "dim"))
    heading("")
    stats = view.stats()
    w = stats["workers"]
    fields(
        [
            ("tasks", words.counts_line(stats)),
            (
                "workers",
                f"{w['alive']} alive · {w['busy']} busy · "
                f"{w['slots_used']} of {w['slots']} slots in use",
            ),
        ]
    )
    tasks = view.live_tasks(limit=limit + 1)
    if tasks:
        heading("")
        rows = (
            [
                str(t["id"]),
                words.state(t["state"]),
                str(t["priority"]),
                f"{t['attempt']}/{t['max_attempts']}",
                t.get("worker") or "-",
                before(t["started_at"] or t["submitted_at"], at),
                one_line(t["command"], 80),
            ]
            for t in tasks[:limit]
        )
        table(
            ["ID", "STATE", "PRI", "ATTEMPT", "WORKER", "SINCE", "COMMAND"],
            rows,
            right=("ID", "PRI"),
        )
        if len(tasks) > limit:
            heading(styled("(more live tasks: --limit N shows more)", "dim"))
    workers = view.workers()
    if workers:
        heading("")
        table(
            ["WORKER", "NAME", "TAGS", "SLOTS", "RUNNING", "LAST SEEN"],
            (
                [
                    wk["id"],
                    wk["name"],
                    words.tags(wk["tags"]),
                    str(wk["slots"]),
                    str(wk["running"]),
                    before(wk["last_seen"], at),
                ]
                for wk in workers
            ),
            right=("SLOTS", "RUNNING"),
        )


def print_task_then(view: replaying.View, task: EventJSON, events: list[EventJSON]) -> None:
    at = hist.parse_ts(view.point.at) if view.point.at else _now()
    heading(f"replay: task {task['id']} as it was after seq {view.point.seq:,} ({view.point.at})")
    heading("")
    rows = task_fields(task, lambda text: before(text, at))
    if task.get("reason"):
        rows.append(("reason", str(task["reason"])))
    fields(rows)
    heading("")
    print_story(hist.story(events), int(task["id"]), now=at, replayed=True)


def print_report(report: verifying.Report) -> None:
    from kickoff.audit import verify as verifying

    heading(styled(f"verify {report.path} (read-only)", "bold"))
    by_check: dict[str, list[verifying.Problem]] = {}
    for problem in sorted(report.problems, key=lambda p: (p.seq is None, p.seq or 0)):
        by_check.setdefault(problem.check, []).append(problem)
    checks = dict(verifying.CHECKS)
    for extra in ("open", "read"):
        if extra in by_check:
            checks = {extra: "the database opens and reads", **checks}
    for name, what in checks.items():
        status = report.status(name) if name in verifying.CHECKS else "failed"
        if name == "archive" and status == "skipped":
            continue
        mark = {
            "ok": ("  ok    ", "green"),
            "failed": ("  FAILED", "bold red"),
            "skipped": ("  -     ", "dim"),
        }[status]
        heading(assemble(mark, "  ", (f"{name:<12}", "bold"), what))
        for problem in by_check.get(name, []):
            heading(styled(f"            {one_line(problem.message)}", "red"))
        if report.suppressed.get(name):
            heading(styled(f"            ... and {report.suppressed[name]} more", "red"))
    for note in report.notes:
        heading(styled(f"note: {one_line(note)}", "yellow"))
    archived = (
        f"; {report.archived:,} archived heartbeats ({report.archive_checked:,} read "
        "back from the archive)"
        if report.archived
        else ""
    )
    heading(f"{report.events:,} events, last seq {report.last_seq:,}{archived}")
    if report.ok:
        heading(styled("all good", "bold green"))
    else:
        first = report.first_bad_seq
        heading(styled("verify failed" + (f": first bad seq {first}" if first else ""), "bold red"))


def _now() -> datetime:
    return datetime.now(UTC)
