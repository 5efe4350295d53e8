"""The human form of the task commands' answers: status, info, cancel, wait's failures,
stats and groups (`--json` prints the answer itself). Workers are `_view_workers`'s.

Built of `_words`'s words, laid out by `_tables`, shown by `_terminal`: aligned and colored
on a terminal, plain and tab-separated when piped.

No HTTP and no parsing here: a view gets the answer the command received.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator

from kickoff import defaults
from kickoff.cli import _words as words
from kickoff.cli._tables import fields, table
from kickoff.cli._terminal import Cell, assemble, err, error, heading, lines, one_line, out, styled
from kickoff.resources import show

TYPE_CHECKING = False  # typing is for the type checker: its import slows `kickoff new`
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    Task = dict[str, Any]

RECENT_EVENTS = 10
SHOWN_FAILURES = 10
EVENT_NOISE = ("task_id", "worker_id", "command", "output_tail")


def _now() -> datetime:
    from datetime import UTC, datetime  # 1 ms: only where a time is shown

    return datetime.now(UTC)


def _when(text: str | None, now: datetime) -> str:
    return words.when(text, now, relative=out.is_terminal)


def why(task: Task) -> str:
    """`task 7 failed (exit code 3); see kickoff info 7`; `task 8 timed out after 2s`."""
    ended = task["state"]
    detail = ""
    if task.get("timed_out"):
        limit = task.get("timeout_s")
        ended = "timed out" + ("" if limit is None else f" after {limit:g}s")
        detail = " (killed)"
    elif task.get("exit_code") is not None and task["state"] == "failed":
        detail = f" (exit code {task['exit_code']})"
    elif task.get("reason"):
        detail = f" ({task['reason']})"
    return one_line(f"task {task['id']} {ended}{detail}; see `kickoff info {task['id']}`")


def unfinished(tasks: list[Task], *, summary: bool) -> None:
    """On stderr: why each task that did not succeed ended (the first few), and a count."""
    bad = [task for task in tasks if task["state"] != "succeeded"]
    for task in bad[:SHOWN_FAILURES]:
        error(why(task))
    if len(bad) > SHOWN_FAILURES:
        error(f"... and {len(bad) - SHOWN_FAILURES} more tasks did not succeed")
    if summary and len(tasks) > 1:
        counts = Counter(task["state"] for task in tasks)
        err.line(assemble(f"{len(tasks)} tasks: ", words.counts_line(counts)))


# ------------------------------------------------------------------------------- status


def waits_for(task: Task, now: datetime | None = None) -> str | None:
    """What a waiting task waits for, in a few words: `after 12 13`, `retry at 10:01:02`
    (UTC; with the day, `retry at 01-02 10:01:02`, when it is not today's). Without `now`
    (for `info`), the retry's full time."""
    if task["state"] != "waiting":
        return None
    if task.get("waiting_for"):
        return "after " + " ".join(str(i) for i in task["waiting_for"])
    if task.get("retry_at"):
        return f"retry at {task['retry_at'] if now is None else _clock(task['retry_at'], now)}"
    return "its dependencies"


def _clock(text: str, now: datetime) -> str:
    from datetime import UTC  # 1 ms: only where a time is shown

    at = words.parse_time(text)
    assert at is not None
    at = at.astimezone(UTC)
    return at.strftime("%H:%M:%S" if at.date() == now.astimezone(UTC).date() else "%m-%d %H:%M:%S")


def _task_rows(
    tasks: list[Task], now: datetime, *, with_exit: bool, with_resources: bool = False
) -> Iterator[list[Cell]]:
    for task in tasks:
        row: list[Cell] = [
            str(task["id"]),
            words.state(task["state"]),
            str(task["priority"]),
            _when(task["submitted_at"], now),
            waits_for(task, now) or str(task.get("worker_name") or task.get("worker") or "-"),
            ",".join(task["require"]) or "-",
            ",".join(task["want"]) or "-",
        ]
        if with_resources:
            row.append(show(task.get("resources") or {}) or "-")
        if with_exit:
            row.append("-" if task.get("exit_code") is None else str(task["exit_code"]))
        yield [*row, task["command"]]


def status(page: dict[str, Any], states: list[str]) -> None:
    """The counts, the table, the next-page hint. Piped: the rows alone on stdout, the
    counts before them and the hint after them on stderr (stdout flushed first, so a
    reader of both sees them in that order)."""
    tasks: list[Task] = page["tasks"]
    notes = out if out.is_terminal else err
    if not any(page["counts"].values()):
        notes.line(styled("no tasks", "dim"))
        return
    notes.line(words.counts_line(page["counts"]))
    if not tasks:
        which = "tasks" if states == ["all"] else "/".join(states) + " tasks"
        notes.line(styled(f"no {which}", "dim"))
        return
    with_exit = states == ["all"] or any(task["state"] in words.FINAL for task in tasks)
    waiting = any(task["state"] == "waiting" for task in tasks)
    where = "WORKER / WAITS FOR" if waiting else "WORKER"
    headers = ["ID", "STATE", "PRI", "AGE" if out.is_terminal else "SUBMITTED", where]
    with_resources = any(task.get("resources") for task in tasks)
    headers += ["REQUIRE", "WANT", *(["RESOURCES"] if with_resources else [])]
    headers += [*(["EXIT"] if with_exit else []), "COMMAND"]
    if out.is_terminal:
        out.line()
    rows = _task_rows(tasks, _now(), with_exit=with_exit, with_resources=with_resources)
    table(headers, rows, right=("ID", "PRI", "EXIT"))
    if page.get("next_after") is not None:
        out.flush()
        notes.line(styled(f"more: add --after {page['next_after']}", "dim"))


# --------------------------------------------------------------------------------- info


def _at(text: str | None, now: datetime) -> str:
    if text is None:
        return "-"
    return f"{text}  ({words.ago(text, now)})" if out.is_terminal else text


def task_fields(task: Task, when: Callable[[str | None], str]) -> list[tuple[str, Cell]]:
    """The fields `info` shows first, with times told by `when` (now, or a replay point)."""
    worker = task.get("worker") or "-"
    name = task.get("worker_name")
    if name and name != worker:
        worker = f"{name} ({worker})"
    return [
        ("state", words.state(task["state"])),
        ("command", task["command"]),
        ("require", words.tags(task["require"])),
        ("want", words.tags(task["want"])),
        ("priority", str(task["priority"])),
        ("attempt", f"{task['attempt']} of {task['max_attempts'] + (task.get('retries') or 0)}"),
        ("worker", worker),
        ("exit code", "-" if task.get("exit_code") is None else str(task["exit_code"])),
        ("submitted", when(task["submitted_at"])),
        ("started", when(task["started_at"])),
        ("finished", when(task["finished_at"])),
    ]


def _info_fields(task: Task, now: datetime) -> list[tuple[str, Cell]]:
    rows = task_fields(task, lambda text: _at(text, now))
    rows.append(("duration", words.duration(task.get("duration_s"))))
    optional = (
        ("why", task.get("why")),
        ("waits for", waits_for(task)),
        ("after", " ".join(str(i) for i in task.get("after") or ()) or None),
        ("after any", " ".join(str(i) for i in task.get("after_any") or ()) or None),
        ("group", task.get("group")),
        ("array index", task.get("array_index")),
        ("resources", show(task.get("resources") or {})),
        ("GPUs", ",".join(str(g) for g in task.get("gpu_ids") or ()) or None),
        ("retries", _retries(task)),
        ("reason", task.get("reason")),
        ("timeout", None if task.get("timeout_s") is None else f"{task['timeout_s']:g}s"),
        ("timed out", "yes" if task.get("timed_out") else None),
        ("idempotency key", task.get("idempotency_key")),
        ("submitted by", task.get("submitted_by")),
    )
    rows.extend((key, str(value)) for key, value in optional if value)
    return rows


def _retries(task: Task) -> str | None:
    """`1 of 2 left, after 10s (doubling), on 3 timeout`."""
    if not task.get("retries"):
        return None
    text = f"{task['retries_left']} of {task['retries']} left"
    if task.get("retry_delay_s"):
        text += f", after {task['retry_delay_s']:g}s (doubling)"
    if task.get("retry_on") is not None:
        text += ", on " + (" ".join(str(c) for c in task["retry_on"]) or "nothing")
    return text


def info(task: Task, events: list[dict[str, Any]]) -> None:
    """The task's fields, its output tail verbatim, and its last few events."""
    now = _now()
    heading(f"task {task['id']}")
    fields(_info_fields(task, now))
    if task.get("output_tail"):
        heading("")
        heading(f"output (last {defaults.OUTPUT_TAIL_BYTES // 1024} KiB):")
        lines(task["output_tail"])
    if not events:
        return
    shown = events[-RECENT_EVENTS:]
    earlier = len(events) - len(shown)
    heading("")
    heading(
        "recent events"
        + (f" ({earlier} earlier: kickoff history {task['id']})" if earlier else "")
        + ":"
    )
    rows = (
        [
            str(e["seq"]),
            _when(e["ts"], now),
            e["type"],
            e.get("worker_id") or "-",
            words.summary(e.get("data") or {}, skip=EVENT_NOISE),
        ]
        for e in shown
    )
    table(["SEQ", "TIME", "TYPE", "WORKER", "DETAILS"], rows, right=("SEQ",))


# ------------------------------------------------------------------- cancel, stats, ...


def cancelled(results: list[dict[str, Any]], finished: dict[int, str]) -> None:
    """`42 cancelled` per task on stdout; `error: task 43 has already finished (succeeded)`
    on stderr, naming each task once (`finished`: the state of those that had)."""
    for result in results:
        if "error" in result:
            task_id, message = result["id"], result["error"]["message"]
            if task_id in finished:
                message = f"task {task_id} has already finished ({finished[task_id]})"
            elif not re.search(rf"\btask {task_id}\b", message):
                message = f"task {task_id}: {message}"
            error(message)
            continue
        note = " (its worker is stopping it)" if result["state"] == "cancelling" else ""
        out.line(assemble(str(result["id"]), " ", words.state(result["state"]), note))


def stats(data: dict[str, Any]) -> None:
    counts = {state: int(data.get(state, 0)) for state in words.STATES}
    workers = data.get("workers") or {}
    throughput = data.get("throughput") or {}
    total = sum(counts.values())
    rows: list[tuple[str, Cell]] = [
        ("tasks", assemble(words.counts_line(counts), f"  ({total:,} in all)" if total else "")),
        (
            "workers",
            f"{workers.get('alive', 0)} alive, {workers.get('busy', 0)} busy, "
            f"{workers.get('slots_used', 0)} of {workers.get('slots', 0)} slots in use",
        ),
    ]
    if "finished_last_minute" in throughput:
        window = float(throughput.get("window_s", 60))
        over = "the last minute" if window >= 60 else f"the last {window:.0f}s, since the log began"
        rate = f"{throughput['finished_last_minute']:,} finished in {over}"
        rows.append(("throughput", f"{rate} ({throughput.get('per_second', 0):g}/s)"))
    if "last_seq" in data:
        rows.append(("log", f"{data['last_seq']:,} events"))
    group = data.get("group")
    if group:
        cap = "no cap" if group["max_running"] is None else f"at most {group['max_running']}"
        rows.insert(0, ("group", f"{group['name']}: {group['running']} running ({cap})"))
    fields(rows)


def group_summary(summary: dict[str, Any]) -> None:
    """`group shot12: 240 tasks: 238 succeeded · 2 failed` on stderr."""
    counts = {state: n for state, n in summary["counts"].items() if n}
    err.line(
        assemble(f"group {summary['name']}: {summary['total']} tasks: ", words.counts_line(counts))
    )


def group_cancelled(answer: dict[str, Any]) -> None:
    out.line(f"group {answer['group']}: {answer['cancelled']} tasks cancelled or cancelling")
