"""The human form of each client command's answer (`--json` prints the answer itself).

Built on `_output`: rich on a terminal, plain and tab-separated when piped.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from rich.text import Text

from kickoff import defaults
from kickoff.cli import _output as out
from kickoff.cli._common import console, err_console, error
from kickoff.cli._wait import FINAL

Task = dict[str, Any]
RECENT_EVENTS = 10
SHOWN_FAILURES = 10
EVENT_NOISE = ("task_id", "worker_id", "command", "output_tail")


def _now() -> datetime:
    return datetime.now(UTC)


def why(task: Task) -> str:
    """`task 7 failed (exit code 3); see kickoff info 7`."""
    detail = ""
    if task.get("exit_code") is not None and task["state"] == "failed":
        detail = f" (exit code {task['exit_code']})"
    elif task.get("reason"):
        detail = f" ({task['reason']})"
    return out.one_line(
        f"task {task['id']} {task['state']}{detail}; see `kickoff info {task['id']}`"
    )


def unfinished(tasks: list[Task], *, summary: bool) -> None:
    """On stderr: why each task that did not succeed ended (the first few), and a count."""
    bad = [task for task in tasks if task["state"] != "succeeded"]
    for task in bad[:SHOWN_FAILURES]:
        error(why(task))
    if len(bad) > SHOWN_FAILURES:
        error(f"... and {len(bad) - SHOWN_FAILURES} more tasks did not succeed")
    if summary and (len(tasks) > 1 or bad):
        counts = Counter(task["state"] for task in tasks)
        err_console.print(Text.assemble(f"{len(tasks)} tasks: ", out.counts_line(counts)))


# ------------------------------------------------------------------------------- status


def _task_rows(tasks: list[Task], now: datetime, *, with_exit: bool) -> Iterator[list[out.Cell]]:
    for task in tasks:
        row: list[out.Cell] = [
            str(task["id"]),
            out.state(task["state"]),
            str(task["priority"]),
            out.when(task["submitted_at"], now),
            str(task.get("worker_name") or task.get("worker") or "-"),
            ",".join(task["require"]) or "-",
            ",".join(task["want"]) or "-",
        ]
        if with_exit:
            row.append("-" if task.get("exit_code") is None else str(task["exit_code"]))
        yield [*row, task["command"]]


def status(page: dict[str, Any], states: list[str]) -> None:
    """Counts, then the table, then the next-page hint. Piped: rows on stdout, rest stderr."""
    tasks: list[Task] = page["tasks"]
    counts = out.counts_line(page["counts"])
    terminal = out.is_terminal()
    notes = console if terminal else err_console
    if not any(page["counts"].values()):
        notes.print(Text("no tasks", style="dim"))
        return
    if terminal:
        console.print(counts)
    if not tasks:
        if not terminal:
            err_console.print(counts)
        which = "tasks" if states == ["all"] else "/".join(states) + " tasks"
        notes.print(Text(f"no {which}", style="dim"))
        return
    with_exit = states == ["all"] or any(task["state"] in FINAL for task in tasks)
    headers = ["ID", "STATE", "PRI", "AGE" if terminal else "SUBMITTED", "WORKER", "REQUIRE"]
    headers += ["WANT", *(["EXIT"] if with_exit else []), "COMMAND"]
    if terminal:
        console.print()
    rows = _task_rows(tasks, _now(), with_exit=with_exit)
    out.table(headers, rows, right=("ID", "PRI", "EXIT"))
    if not terminal:
        err_console.print(counts)
    if page.get("next_after") is not None:
        notes.print(Text(f"more: add --after {page['next_after']}", style="dim"))


# --------------------------------------------------------------------------------- info


def _at(text: str | None, now: datetime) -> str:
    if text is None:
        return "-"
    return f"{text}  ({out.ago(text, now)})" if out.is_terminal() else text


def task_fields(task: Task, when: Callable[[str | None], str]) -> list[tuple[str, out.Cell]]:
    """The fields `info` shows first, with times told by `when` (now, or a replay point)."""
    worker = task.get("worker") or "-"
    name = task.get("worker_name")
    if name and name != worker:
        worker = f"{name} ({worker})"
    return [
        ("state", out.state(task["state"])),
        ("command", task["command"]),
        ("require", out.tags(task["require"])),
        ("want", out.tags(task["want"])),
        ("priority", str(task["priority"])),
        ("attempt", f"{task['attempt']} of {task['max_attempts']}"),
        ("worker", worker),
        ("exit code", "-" if task.get("exit_code") is None else str(task["exit_code"])),
        ("submitted", when(task["submitted_at"])),
        ("started", when(task["started_at"])),
        ("finished", when(task["finished_at"])),
    ]


def _info_fields(task: Task, now: datetime) -> list[tuple[str, out.Cell]]:
    rows = task_fields(task, lambda text: _at(text, now))
    rows.append(("duration", out.duration(task.get("duration_s"))))
    optional = (
        ("reason", task.get("reason")),
        ("timeout", None if task.get("timeout_s") is None else f"{task['timeout_s']:g}s"),
        ("timed out", "yes" if task.get("timed_out") else None),
        ("idempotency key", task.get("idempotency_key")),
        ("submitted by", task.get("submitted_by")),
    )
    rows.extend((key, str(value)) for key, value in optional if value)
    return rows


def info(task: Task, events: list[dict[str, Any]]) -> None:
    """The task's fields, its output tail verbatim, and its last few events."""
    now = _now()
    out.heading(Text(f"task {task['id']}", style="bold"))
    out.fields(_info_fields(task, now))
    if task.get("output_tail"):
        out.heading("")
        out.heading(f"output (last {defaults.OUTPUT_TAIL_BYTES // 1024} KiB):")
        out.plain(task["output_tail"])
    if not events:
        return
    shown = events[-RECENT_EVENTS:]
    earlier = len(events) - len(shown)
    out.heading("")
    out.heading(
        "recent events"
        + (f" ({earlier} earlier: kickoff history {task['id']})" if earlier else "")
        + ":"
    )
    rows = (
        [
            str(e["seq"]),
            out.when(e["ts"], now),
            e["type"],
            e.get("worker_id") or "-",
            out.summary(e.get("data") or {}, skip=EVENT_NOISE),
        ]
        for e in shown
    )
    out.table(["SEQ", "TIME", "TYPE", "WORKER", "DETAILS"], rows, right=("SEQ",))


# ------------------------------------------------------------------- cancel, stats, ...


def cancelled(results: list[dict[str, Any]]) -> None:
    """`42 cancelled` per task on stdout; `error: task 43: ...` on stderr."""
    for result in results:
        if "error" in result:
            error(out.one_line(f"task {result['id']}: {result['error']['message']}"))
            continue
        note = " (its worker is stopping it)" if result["state"] == "cancelling" else ""
        console.print(Text.assemble(str(result["id"]), " ", out.state(result["state"]), note))


def stats(data: dict[str, Any]) -> None:
    counts = {state: int(data.get(state, 0)) for state in out.STATES}
    workers = data.get("workers") or {}
    throughput = data.get("throughput") or {}
    total = sum(counts.values())
    rows: list[tuple[str, out.Cell]] = [
        ("tasks", Text.assemble(out.counts_line(counts), f"  ({total:,} in all)" if total else "")),
        (
            "workers",
            f"{workers.get('alive', 0)} alive, {workers.get('busy', 0)} busy, "
            f"{workers.get('slots_used', 0)} of {workers.get('slots', 0)} slots in use",
        ),
    ]
    if "finished_last_minute" in throughput:
        rate = f"{throughput['finished_last_minute']:,} finished in the last minute"
        rows.append(("throughput", f"{rate} ({throughput.get('per_second', 0):g}/s)"))
    if "last_seq" in data:
        rows.append(("log", f"{data['last_seq']:,} events"))
    out.fields(rows)


def workers(found: list[dict[str, Any]], *, everything: bool) -> None:
    if not found:
        hint = "" if everything else " alive; start one with `kickoff worker`"
        (console if out.is_terminal() else err_console).print(
            Text("no workers" + hint, style="dim")
        )
        return
    now = _now()
    rows = (
        [
            w["name"],
            out.state(w["state"]),
            f"{w['running']}/{w['slots']}",
            ",".join(w["tags"]) or "-",
            out.when(w["last_seen"], now),
            w.get("host") or "-",
            w["id"],
        ]
        for w in found
    )
    headers = ["NAME", "STATE", "RUNNING", "TAGS", "LAST SEEN", "HOST", "ID"]
    out.table(headers, rows, right=("RUNNING",))


def tags(worker: str, result: dict[str, Any]) -> None:
    """`box1  cpu gpu` on a terminal; the tags alone, space-separated, when piped."""
    if out.is_terminal():
        shown = out.one_line(out.tags(result["tags"]))
        console.print(Text.assemble((out.one_line(worker), "bold"), "  ", shown))
    else:
        sys.stdout.write(out.one_line(" ".join(result["tags"])) + "\n")
