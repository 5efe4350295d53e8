"""The options every client command shares (--server, --token, --json), and its client.

No command here: the commands are in the `*_cmd(s).py` modules.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kickoff import dblocation
from kickoff.client import Client
from kickoff.errors import InvalidInput

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="KICKOFF_SERVER",
        metavar="HOST[:PORT]",
        help="Server address HOST[:PORT] (default 127.0.0.1:3355).",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="KICKOFF_TOKEN",
        metavar="TOKEN",
        help="Access token (found automatically for a local server).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (stable, documented).")]


def db_location(text: str) -> str:
    """`--db` / `$KICKOFF_DB`, checked as a database location: a usage error (exit 2) for
    a URL this build does not support, before anything is created. (The text itself is
    passed on: typer takes no union of types; `db_path` makes it a location.)"""
    try:
        dblocation.parse(text)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message.removeprefix("--db ")) from None
    return text


def db_path(text: str | None) -> dblocation.Location:
    """The database a command's `--db` names: the default one without it."""
    if text is None:
        from kickoff.store.connection import default_db_path

        return default_db_path()
    return dblocation.parse(text)


def db_option(help_text: str) -> Any:
    """The `--db` option of the commands that open a database (or sit beside one)."""
    return typer.Option(
        "--db",
        metavar="PATH|URL",
        envvar="KICKOFF_DB",
        parser=db_location,
        show_default=False,
        help=help_text,
    )


def client(server: str | None, token: str | None) -> Client:
    """A client for the chosen server."""
    return Client(server, token=token)
