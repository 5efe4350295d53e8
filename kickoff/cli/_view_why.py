"""The human form of `kickoff why`: the summary, then the details the server gave.

The explaining is the server's (state/why.py); no HTTP here.
"""

from __future__ import annotations

from kickoff.cli import _words as words
from kickoff.cli._tables import fields, table
from kickoff.cli._terminal import Cell, Styled, heading, one_line, out, styled
from kickoff.resources import show, show_amount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    Answer = dict[str, Any]


def _now() -> datetime:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _who(name: str, worker_id: str) -> str:
    return worker_id if name in ("", worker_id) else f"{name} ({worker_id})"


def _ids(ids: list[int]) -> str:
    return " ".join(map(str, ids)) or "-"


def _amounts(found: dict[str, int]) -> str:
    return show(found) or "-"


def explanation(answer: Answer) -> None:
    """The summary line, the fields, and a table for each kind of detail there is."""
    now = _now()
    heading(one_line(f"task {answer['task_id']} {answer['summary']}"))
    rows = _fields(answer, now)
    if rows:
        out.line()
        fields(rows)
    _workers(answer, now)
    _nearest(answer)
    _dependencies(answer)
    _attempts(answer, now)


def _fields(answer: Answer, now: datetime) -> list[tuple[str, Cell]]:
    rows: list[tuple[str, Cell]] = [("state", words.state(answer["state"]))]
    if answer.get("queued"):
        when = words.when(answer["queued_at"], now, relative=out.is_terminal)
        rows.append(("queued", f"{answer['queued']} {when} (seq {answer['queued_seq']})"))
    if answer.get("asks"):
        rows.append(("asks for", _amounts(answer["asks"])))
    if answer.get("passes"):
        times = "time" if answer["passes"] == 1 else "times"
        rows.append(("passed over", f"{answer['passes']} {times}, for what was not free"))
    if answer.get("ahead") is not None:
        rows.append(("ahead", f"{answer['ahead']} pending tasks rank ahead of it"))
    missing = [*(answer.get("missing") or ())]
    asks = answer.get("asks") or {}
    missing += [f"{n}={show_amount(asks[n])}" for n in answer.get("missing_resources") or {}]
    if missing:
        rows.append(("no live worker has", " ".join(missing)))
    cap = answer.get("cap")
    if cap:
        rows.append(
            (
                "group cap",
                f"{cap['group']}: at most {cap['max_running']} running, now {_ids(cap['running'])}",
            )
        )
    if answer.get("retry_at"):
        rows.append(("retry due", words.when(answer["retry_at"], now, relative=False)))
    if answer.get("reason"):
        rows.append(("ended", answer["reason"]))
    return rows if len(rows) > 1 else []


def _workers(answer: Answer, now: datetime) -> None:
    workers = answer.get("workers") or []
    if not workers:
        return
    out.line()
    total = answer.get("workers_total") or len(workers)
    some = f" ({len(workers)} of {total:,}, the least busy)" if total > len(workers) else ""
    heading(f"live workers that could run it{some}:")
    counted = bool(answer.get("asks"))  # the task asks for resources: show them
    heads = ["WORKER", "HOLD", "RUNNING", "SLOTS", "AHEAD", "TOOK"]
    heads += ["FREE", "TAGS"] if counted else ["TAGS"]
    table(
        heads,
        (
            [
                _who(w["name"], w["id"]),
                w["hold"],
                _ids(w["running"]),
                str(w["slots"]),
                str(w["ahead"]),
                str(w["took_total"]),
                *([_amounts(w.get("resources_free") or {})] if counted else []),
                words.tags(w["tags"]),
            ]
            for w in workers
        ),
        right=("SLOTS", "AHEAD", "TOOK"),
    )
    took = [(w, t) for w in workers for t in w["took"]]
    if not took:
        return
    out.line()
    heading("taken instead, since it was queued (newest first):")
    table(
        ["WORKER", "TASK", "SEQ", "TIME", "RULE", "WHY FIRST"],
        (
            [
                _who(w["name"], w["id"]),
                str(t["task_id"]),
                str(t["seq"]),
                words.when(t["at"], now, relative=out.is_terminal),
                t["rule"],
                t["detail"],
            ]
            for w, t in took
        ),
        right=("TASK", "SEQ"),
    )
    for w in workers:
        if w["took_total"] > len(w["took"]):
            heading(f"({_who(w['name'], w['id'])} took {w['took_total']} in all)")


def _nearest(answer: Answer) -> None:
    nearest = answer.get("nearest") or []
    if not nearest:
        return
    out.line()
    heading("nearest live workers:")
    asks = answer.get("asks") or {}

    def lacks(near: Answer) -> str:
        has = near.get("has") or {}
        few = [f"{k}={show_amount(asks[k])} (has {show_amount(v)})" for k, v in has.items()]
        return " ".join([*near["lacks"], *few]) or "-"

    table(["WORKER", "LACKS"], ([_who(n["name"], n["id"]), lacks(n)] for n in nearest))


def _dependencies(answer: Answer) -> None:
    deps = answer.get("waiting_for") or []
    if not deps:
        return
    out.line()
    heading("dependencies:")
    table(
        ["TASK", "KIND", "STATE"],
        ([str(d["task_id"]), d["kind"], words.state(d["state"])] for d in deps),
        right=("TASK",),
    )


def _attempts(answer: Answer, now: datetime) -> None:
    attempts = answer.get("attempts") or []
    if not attempts:
        return
    out.line()
    heading("attempts:")
    table(
        ["ATTEMPT", "WORKER", "STARTED", "ENDED", "OUTCOME", "WHY IT ENDED"],
        (
            [
                str(a["attempt"]),
                _who(a["worker_name"], a["worker_id"]),
                words.when(a["started_at"], now, relative=out.is_terminal),
                words.when(a["ended_at"], now, relative=out.is_terminal),
                _outcome(a["outcome"]),
                a["detail"] or "-",
            ]
            for a in attempts
        ),
        right=("ATTEMPT",),
    )


_LIKE = {"timed_out": "failed", "lost": "failed", "stopped": "cancelled"}


def _outcome(name: str) -> Styled:
    """An attempt's outcome, colored as the state it is most like."""
    return styled(name, words.STATE_STYLES.get(_LIKE.get(name, name), ""))
