"""Searching the `tasks` projection by command text and tag, at a bounded cost per request.

Neither a substring of a command nor a tag inside the JSON tag lists has an index (a
full-text index would tax every submit), so a search request walks a *window* of at most
`scan` task ids in paging order and returns the matches in it. The window walks the
`tasks_state (state, id)` index for one state, the primary key otherwise; either way a
request reads at most `scan` rows however many millions the table holds. The answer says
how far it searched (`searched_to`), and the next request goes on from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kickoff import defaults
from kickoff.projections.queries import TASK_COLUMNS, TASK_FROM, Query, task_json


@dataclass(frozen=True, slots=True, kw_only=True)
class Search:
    """What to look for, and where to start (keyset: after an id, or before one)."""

    text: str | None = None  # a substring of the command, ASCII letters in either case
    tag: str | None = None  # in require or want
    states: Sequence[str] = ()  # none: every state
    worker_id: str | None = None
    after_id: int = 0
    before_id: int | None = None
    descending: bool = False
    limit: int = defaults.DEFAULT_PAGE
    scan: int = defaults.SEARCH_SCAN_ROWS


def like_pattern(text: str) -> str:
    """`%text%` for LIKE ... ESCAPE '\\', with LIKE's own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _range(search: Search, column: str) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if search.after_id:
        where.append(f"{column} > ?")
        params.append(search.after_id)
    if search.before_id is not None:
        where.append(f"{column} < ?")
        params.append(search.before_id)
    return where, params


def window(search: Search) -> Query:
    """The far end of the window (None: nothing left) and how many ids it holds."""
    where, params = _range(search, "id")
    if len(search.states) == 1:  # walk that state's index
        where.insert(0, "state = ?")
        params.insert(0, search.states[0])
    order = "DESC" if search.descending else "ASC"
    far = "min(id)" if search.descending else "max(id)"
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return Query(
        f"SELECT {far}, count(*) FROM "
        f"(SELECT id FROM tasks {clause} ORDER BY id {order} LIMIT ?) AS w",
        (*params, search.scan),
        lambda rows: (rows[0][0], rows[0][1]),
    )


def matches(search: Search, far_id: int) -> Query:
    """The first `limit` matches (and one more, to tell whether the page is full) between
    the start and `far_id`, the window's far end, inclusive."""
    where, params = _range(search, "t.id")
    where.append("t.id >= ?" if search.descending else "t.id <= ?")
    params.append(far_id)
    if search.states:
        where.append(f"t.state IN ({', '.join('?' * len(search.states))})")
        params.extend(search.states)
    if search.worker_id is not None:
        where.append("t.worker_id = ?")
        params.append(search.worker_id)
    if search.text:
        where.append("t.command LIKE ? ESCAPE '\\'")
        params.append(like_pattern(search.text))
    if search.tag:
        quoted = f'"{search.tag}"'  # tags are stored as sorted JSON lists of strings
        where.append("(instr(t.require, ?) > 0 OR instr(t.want, ?) > 0)")
        params.extend((quoted, quoted))
    order = "DESC" if search.descending else "ASC"
    return Query(
        f"SELECT {TASK_COLUMNS} {TASK_FROM} WHERE {' AND '.join(where)} "
        f"ORDER BY t.id {order} LIMIT ?",
        (*params, search.limit + 1),
        lambda rows: [task_json(r) for r in rows],
    )


def page(search: Search, far_id: int | None, scanned: int, found: list[Any]) -> dict[str, Any]:
    """The answer: a page of matches, the cursor to go on from, and how far it searched.

    The cursor is the last match when the page is full, else the window's end while the
    window was full (more tasks lie beyond it), else None: the search reached the end.
    """
    tasks = found[: search.limit]
    if len(found) > search.limit:
        cursor, searched_to = tasks[-1]["id"], tasks[-1]["id"]
    elif far_id is not None and scanned >= search.scan:
        cursor, searched_to = far_id, far_id
    else:
        cursor, searched_to = None, None
    return {
        "tasks": tasks,
        "next_after": cursor if not search.descending else None,
        "next_before": cursor if search.descending else None,
        "searched_to": searched_to,
    }
