"""Submitting for `kickoff new`: command words -> a shell string, `--from` files, batches.

Batches hold at most MAX_BATCH tasks and stay well under the body limit; a large input
shows a progress bar on stderr when it is a terminal.

No option parsing here (the commands' own), and no HTTP of its own (client.py).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator

from kickoff.cli._terminal import err, out, print_json, progress_bar
from kickoff.client import Client
from kickoff.errors import InvalidInput, KickoffError

TYPE_CHECKING = False  # typing is for the type checker: its import slows `kickoff new`
if TYPE_CHECKING:
    from typing import Any

    Task = dict[str, Any]

PROGRESS_AT = 2_000  # tasks: below this a submission is too quick for a progress bar


def command_string(words: list[str]) -> str:
    """One word is a shell command as written; several are quoted so each stays one word."""
    return words[0] if len(words) == 1 else shlex.join(words)


def read_lines(source: str) -> Iterator[tuple[int, str]]:
    """(line number, command) for each line that is not blank or a `#` comment.

    Raises:
        InvalidInput: the file cannot be read.
    """
    if source == "-" and sys.stdin.isatty():
        err.line("reading commands from stdin, one per line; end with Ctrl-D")
    try:
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {source}: {exc}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        command = line.strip()
        if command and not command.startswith("#"):
            yield number, command


def from_lines(source: str, base: Task, idempotency_key: str | None) -> list[Task]:
    """One task per command line; line N gets the idempotency key `KEY:N`.

    Raises:
        InvalidInput: unreadable, or no commands at all.
    """
    tasks = [
        {"command": line, **base}
        | ({} if idempotency_key is None else {"idempotency_key": f"{idempotency_key}:{n}"})
        for n, line in read_lines(source)
    ]
    if not tasks:
        raise InvalidInput(f"{source}: no commands (blank lines and # comments are skipped)")
    return tasks


def submit(
    api: Client, tasks: list[Task], *, group: dict[str, Any] | None = None
) -> tuple[list[int], str | None]:
    """Submit in batches (`Client.submit_batches`), a progress bar for many; the ids in
    order, and the name of the group they joined.

    Raises:
        KickoffError: a batch was refused; the ids of the batches before it are printed
            first, and the message says so.
    """
    with progress_bar("submitting", len(tasks), show=len(tasks) >= PROGRESS_AT) as update:
        try:
            return api.submit_batches(tasks, group=group, on_batch=lambda n: update(advance=n))
        except KickoffError as exc:
            ids: list[int] = getattr(exc, "submitted", [])
            if ids:
                print_ids(ids, as_json=False)
                exc.message += f" ({len(ids)} tasks submitted before this; their ids are above)"
            raise


def tell_group(label: str, count: int) -> None:
    """On a terminal's stderr: the name the server gave the submission's group."""
    if err.is_terminal:
        err.line(f"{count} tasks in group {label} (kickoff status --group {label})")


def print_ids(ids: list[int], *, as_json: bool) -> None:
    """The ids on stdout: one per line, or a JSON list."""
    if as_json:
        print_json(ids)
    else:
        out.write("".join(f"{i}\n" for i in ids))
        out.flush()
