"""`kickoff logs ID`: a task's output as the server keeps it (SPEC §9), from any machine."""

from __future__ import annotations

from typing import Annotated

import typer

from kickoff import defaults
from kickoff.cli import _follow
from kickoff.cli._options import ServerOpt, TokenOpt, client


def logs(
    task_id: Annotated[int, typer.Argument(metavar="ID", help="The task id.", show_default=False)],
    attempt: Annotated[
        int | None,
        typer.Option(
            "--attempt",
            metavar="N",
            min=1,
            max=defaults.MAX_ATTEMPTS_LIMIT,
            help="This attempt's output (default: the latest).",
            show_default=False,
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Print new output as it comes; exit with the task's exit code."
        ),
    ] = False,
    tail: Annotated[
        int | None,
        typer.Option(
            "--tail",
            "-n",
            metavar="N",
            min=0,
            help="Only the last N lines (then new ones, with --follow).",
            show_default=False,
        ),
    ] = None,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw", help="On a terminal too, the bytes as written (escape sequences act)."
        ),
    ] = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Print a task's output from any machine; --follow it live.

    The output is stdout and stderr, as the task wrote them; the worker sends it while
    the task runs; the server keeps the first 64 MiB of each
    attempt (kickoff server --output-cap). --follow prints new output within a second,
    through retries, and exits when the task ends, with its exit code; otherwise the exit
    code is 0 (4: no such task). Piped or redirected, the bytes are written as they are;
    on a terminal, control characters show as escapes (\x1b), as everywhere in kickoff,
    but newlines, tabs and carriage returns: --raw writes them as they are.

    \b
      kickoff logs 42
      kickoff logs 42 --follow
      kickoff logs 42 --attempt 1 --tail 20
    """
    with client(server, token) as api:
        code = _follow.show(api, task_id, attempt=attempt, follow=follow, tail=tail, raw=raw)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
