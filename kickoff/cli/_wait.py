"""Waiting for tasks to finish: poll with back-off, show progress on stderr (terminal only).

Few tasks are fetched one by one; many are read a page of 10,000 at a time over their id
range, so `kickoff wait` on a 10,000-task batch costs one request per poll.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from kickoff.cli._terminal import progress_bar
from kickoff.cli._words import FINAL, STATES
from kickoff.client import Client
from kickoff.client import Task as TaskObject
from kickoff.errors import KickoffError

FIRST_DELAY_S = 0.02
MAX_DELAY_S = 1.0

Task = dict[str, Any]


def fetch(client: Client, ids: Iterable[int]) -> dict[int, Task]:
    """The current state of each task (`Client.get_many`).

    Raises:
        NotFound: one of the ids is no task.
    """
    return dict(client.get_many(ids))


def _describe(tasks: Iterable[Task]) -> str:
    by_state = Counter(task["state"] for task in tasks)
    return " · ".join(f"{by_state[s]} {s}" for s in STATES if by_state[s])


def wait_for(client: Client, ids: list[int], *, timeout_s: float | None = None) -> dict[int, Task]:
    """Block until every task is finished (`Client.wait_all`), progress on stderr; the
    final tasks by id.

    Raises:
        NotFound: an id is no task.
        KickoffError: `timeout_s` passed first (exit code 1).
    """
    with progress_bar("waiting", len(set(ids)), show=True, spinner=True) as update:

        def polled(latest: list[TaskObject]) -> None:
            done = sum(1 for task in latest if task["state"] in FINAL)
            update(completed=done, description=_describe(latest))

        final = client.wait_all(ids, timeout_s=timeout_s, on_poll=polled)
    return {task["id"]: task for task in final}


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
    return TaskObject(task).exit_status
