"""Printing a task's output for `kickoff logs` and `kickoff new --follow`: the bytes as the
server keeps them, to stdout unchanged when it is a file or a pipe; on a terminal decoded,
control characters escaped as every kickoff view does (`_terminal.live_output`; `--raw`
writes them as they are); the last N lines; followed live until the task ends, then its
exit code. What past the server's cap was not kept is said on stderr. Imports only the
client: `new --follow` starts as fast as `new`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from kickoff.cli._terminal import err, live_output, out
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
    raw: bool = False,
) -> int:
    """Print the output; the exit code: 0, or with `follow` the task's own once it ended
    (`from_first`: every attempt's, from the first: `new --follow` of a fast task).

    Raises:
        NotFound: no such task or attempt.
    """
    write = _writer(escaped=out.is_terminal and not raw)
    offset = 0 if tail is None else tail_offset(api, task_id, attempt, tail)
    first: list[int] = []

    def began(number: int) -> None:
        if first and first[0] != number:  # a retry: say where the next attempt's output starts
            write(b"", True)
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
        write(chunk, follow)
        printed += len(chunk)
    write(b"", True)
    shown = attempt if attempt is not None or not first else first[0]
    info = api.output_info(task_id, shown)
    _say_dropped(info)
    task = api.get(task_id) if follow or not printed else None
    if task is not None and not printed and info["total"] == 0 and task.finished:
        _tail_instead(task, attempt)
    if not follow or task is None:
        return 0
    return task.exit_status if task.finished else 0


def _writer(*, escaped: bool) -> Callable[[bytes, bool], None]:
    """write(chunk, flush): the bytes as they are, or decoded (a character split between
    chunks stays whole) and escaped for a terminal."""
    if not escaped:
        binary = sys.stdout.buffer

        def write_bytes(chunk: bytes, flush: bool) -> None:
            binary.write(chunk)
            if flush:
                binary.flush()

        return write_bytes
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write_text(chunk: bytes, flush: bool) -> None:
        out.write(live_output(decoder.decode(chunk, final=flush and not chunk)))
        if flush:
            out.flush()

    return write_text


def _tail_instead(task: Task, attempt: int | None) -> None:
    """A finished task of which the server keeps no output (its worker sent none: an older
    kickoff, say): the last 4 KiB its report carried, said so on stderr."""
    if task.get("output_tail") and attempt in (None, task["attempt"]):
        err.line(f"kickoff: the server keeps no output of task {task['id']}; its last 4 KiB:")
        write = _writer(escaped=out.is_terminal)
        write(task["output_tail"].encode("utf-8", "replace"), True)


def _say_dropped(info: dict[str, int | bool]) -> None:
    """On stderr: the bytes the server did not keep, past its cap."""
    dropped = int(info["total"]) - int(info["size"])
    if dropped > 0:
        err.line(
            f"kickoff: the server keeps the first {info['cap']:,} bytes of an attempt's output "
            f"(kickoff server --output-cap): {dropped:,} more bytes of attempt "
            f"{info['attempt']} were not kept; the worker's log file has them all"
        )
