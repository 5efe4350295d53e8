"""`kickoff why ID`: why a task waits, or where it ran and how each attempt ended.

The server explains (GET /v1/tasks/{id}/why, from its state and its log: state/why.py);
this prints the answer, `--json` as it is.
"""

from __future__ import annotations

from typing import Annotated

import typer

from kickoff.cli import _view_why
from kickoff.cli._options import JsonOpt, ServerOpt, TokenOpt, client
from kickoff.cli._terminal import print_json


def why(
    task_id: Annotated[int, typer.Argument(metavar="ID", help="The task id.", show_default=False)],
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Explain why a task waits, or where it ran and how each attempt ended.

    For a pending task: the live workers that could run it, what each is busy with, the
    tasks each took since it was queued and the rule that ranked them first (priority,
    want score, age), and how many tasks rank ahead; or, when no live worker could run
    it, the tags none has and the nearest workers with what each lacks. For a waiting
    task: its dependencies or its delayed retry; for a capped group: the tasks holding
    the cap. For a finished task: each attempt, where it ran and why it ended.

    \b
      kickoff why 42
      kickoff why 42 --json | jq .summary
    """
    with client(server, token) as api:
        answer = api.get(f"/v1/tasks/{task_id}/why")
    if as_json:
        print_json(answer)
    else:
        _view_why.explanation(answer)


def register(app: typer.Typer) -> None:
    app.command("why")(why)
