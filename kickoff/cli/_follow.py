"""Printing a task's output for `kickoff logs` and `kickoff new --follow`: the bytes as the
server keeps them, to stdout unchanged; the last N lines; followed live until the task
ends, then its exit code. What past the server's cap was not kept is said on stderr.
Imports only the client: `new --follow` starts as fast as `new`.
"""

from __future__ import annotations

import sys

from kickoff.cli._terminal import err
from kickoff.client import Client, Task

TAIL_WINDOW = 64 * 1024  # bytes read back at first to find the last N lines (doubled as needed)


def tail_offset(api: Client, task_id: int, attempt: int | None, lines: int) -> int:
    """The byte offset where the attempt's last `lines` lines begin (0: all of it)."""
    path = f"/v1/tasks/{task_id}/output"
    window = TAIL_WINDOW
    while True:
        data, headers = api.get_bytes(path, attempt=attempt, offset=-window, limit=window)
        start = int(headers["x-kickoff-offset"])
        body = data[:-1] if data.endswith(b"\n") else data  # a last line's own newline
        if lines <= 0:
            return start + len(data)
        cut = len(body)
        for _ in range(lines):
            cut = body.rfind(b"\n", 0, cut)
            if cut < 0:
                break
        if cut >= 0:
            return start + cut + 1
        if start == 0:
            return 0
        window *= 4


def show(
    api: Client,
    task_id: int,
    *,
    attempt: int | None = None,
    follow: bool = False,
    tail: int | None = None,
    from_first: bool = False,
) -> int:
    """Print the output; the exit code: 0, or with `follow` the task's own once it ended
    (`from_first`: every attempt's, from the first: `new --follow` of a fast task).

    Raises:
        NotFound: no such task or attempt.
    """
    out = sys.stdout.buffer
    offset = 0 if tail is None else tail_offset(api, task_id, attempt, tail)
    first: list[int] = []

    def began(number: int) -> None:
        if first and first[0] != number:  # a retry: say where the next attempt's output starts
            out.flush()
            err.line(f"kickoff: attempt {number} of task {task_id}")
        first[:] = [number]

    printed = 0
    chunks = api.logs(
        task_id,
        attempt=attempt,
        follow=follow,
        offset=offset,
        on_attempt=began,
        from_first=from_first,
    )
    for chunk in chunks:
        out.write(chunk)
        printed += len(chunk)
        if follow:
            out.flush()
    out.flush()
    shown = attempt if attempt is not None or not first else first[0]
    info = api.output_info(task_id, shown)
    _say_dropped(info)
    task = api.get(task_id) if follow or not printed else None
    if task is not None and not printed and info["total"] == 0 and task.finished:
        _tail_instead(task, attempt)
    if not follow or task is None:
        return 0
    return task.exit_status if task.finished else 0


def _tail_instead(task: Task, attempt: int | None) -> None:
    """A finished task of which the server keeps no output (its worker sent none: an older
    kickoff, say): the last 4 KiB its report carried, said so on stderr."""
    if task.get("output_tail") and attempt in (None, task["attempt"]):
        err.line(f"kickoff: the server keeps no output of task {task['id']}; its last 4 KiB:")
        sys.stdout.write(task["output_tail"])
        sys.stdout.flush()


def _say_dropped(info: dict[str, int | bool]) -> None:
    """On stderr: the bytes the server did not keep, past its cap."""
    dropped = int(info["total"]) - int(info["size"])
    if dropped > 0:
        err.line(
            f"kickoff: the server keeps the first {info['cap']:,} bytes of an attempt's output "
            f"(kickoff server --output-cap): {dropped:,} more bytes of attempt "
            f"{info['attempt']} were not kept; the worker's log file has them all"
        )
