"""Waiting for tasks to finish: poll with back-off, show progress on stderr (terminal only).

Few tasks are fetched one by one; many are read a page of 10,000 at a time over their id
range, so `kickoff wait` on a 10,000-task batch costs one request per poll.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from kickoff import defaults
from kickoff.cli._format import FINAL, STATES
from kickoff.cli._screen import progress_bar
from kickoff.client import Client
from kickoff.errors import KickoffError, NotFound

FIRST_DELAY_S = 0.02
MAX_DELAY_S = 1.0

Task = dict[str, Any]


def fetch(client: Client, ids: Iterable[int]) -> dict[int, Task]:
    """The current state of each task.

    Raises:
        NotFound: one of the ids is no task.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    low, high = wanted[0], wanted[-1]
    pages = (high - low) // defaults.MAX_PAGE + 1
    if pages >= len(wanted):
        return {task_id: client.get(f"/v1/tasks/{task_id}") for task_id in wanted}
    found: dict[int, Task] = {}
    after: int | None = low - 1
    while after is not None and after < high:
        page = client.get("/v1/tasks", state="all", after=after, limit=defaults.MAX_PAGE)
        found.update((task["id"], task) for task in page["tasks"] if task["id"] <= high)
        after = page["next_after"]
    missing = [task_id for task_id in wanted if task_id not in found]
    if missing:
        raise NotFound(
            f"no task {missing[0]}" + (f" (and {len(missing) - 1} more)" if missing[1:] else "")
        )
    return {task_id: found[task_id] for task_id in wanted}


def _describe(tasks: Iterable[Task]) -> str:
    by_state = Counter(task["state"] for task in tasks)
    return " · ".join(f"{by_state[s]} {s}" for s in STATES if by_state[s])


def wait_for(client: Client, ids: list[int], *, timeout_s: float | None = None) -> dict[int, Task]:
    """Block until every task is finished; the final tasks by id.

    Raises:
        NotFound: an id is no task.
        KickoffError: `timeout_s` passed first (exit code 1).
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    done: dict[int, Task] = {}
    latest: dict[int, Task] = {}
    delay = FIRST_DELAY_S
    with progress_bar("waiting", len(set(ids)), show=True, spinner=True) as update:
        while True:
            latest.update(fetch(client, set(ids) - set(done)))
            done.update((i, t) for i, t in latest.items() if t["state"] in FINAL)
            update(completed=len(done), description=_describe(latest.values()))
            if len(done) == len(latest):
                return done
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                left = sorted(set(latest) - set(done))
                # the base class, not a new one: every error code is one the API can send
                raise KickoffError(
                    f"timed out after {timeout_s:g}s: {len(left)} of {len(latest)} tasks "
                    "not finished "
                    f"({_describe(latest[i] for i in left)}; first: {left[0]})"
                )
            time.sleep(delay if deadline is None else min(delay, deadline - now))
            delay = min(delay * 1.5, MAX_DELAY_S)


def wait_for_group(client: Client, name: str, *, timeout_s: float | None = None) -> dict[str, Any]:
    """Block until no task of the group is live; its last summary (GET /v1/groups/NAME).

    Raises:
        NotFound: no such group.
        KickoffError: `timeout_s` passed first (exit code 1).
    """
    from urllib.parse import quote

    path = f"/v1/groups/{quote(name, safe='')}"
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    delay = FIRST_DELAY_S
    summary: dict[str, Any] = client.get(path)
    with progress_bar(f"group {summary['name']}", summary["total"], show=True) as update:
        while True:
            counts = summary["counts"]
            done = summary["total"] - summary["live"]
            update(total=summary["total"], completed=done, description=_group_line(counts))
            if summary["live"] == 0:
                return summary
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise KickoffError(
                    f"timed out after {timeout_s:g}s: {summary['live']} of "
                    f"{summary['total']} tasks of group {summary['name']} not finished "
                    f"({_group_line(counts)})"
                )
            time.sleep(delay if deadline is None else min(delay, deadline - now))
            delay = min(delay * 1.5, MAX_DELAY_S)
            summary = client.get(path)


def _group_line(counts: dict[str, int]) -> str:
    return " · ".join(f"{counts[s]} {s}" for s in STATES if counts.get(s))


def exit_code(task: Task) -> int:
    """The exit code `new --wait` ends with: the task's own, 1 when it has none."""
    if task["state"] == "succeeded":
        return 0
    code = task.get("exit_code")
    if task["state"] != "failed" or not isinstance(code, int) or code == 0:
        return 1
    if code < 0:  # killed by a signal, as a shell reports it
        return min(128 - code, 255)
    return code if code <= 255 else 1
