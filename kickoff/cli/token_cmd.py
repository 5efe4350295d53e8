"""`kickoff token`: show or rotate the server's access token, on the server's machine.

Works offline (it reads and writes `<db>.token` and the client config, not the server);
a running server picks a rotated token up within a second.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from kickoff import auth
from kickoff.cli._options import db_option
from kickoff.cli._options import db_path as location
from kickoff.cli._terminal import err
from kickoff.client import resolve_token
from kickoff.dblocation import ServerUrl
from kickoff.errors import NotFound


def token(
    db: Annotated[
        str | None,
        db_option("The server's database (default: XDG data dir); its token sits beside it."),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            metavar="HOST[:PORT]",
            help=(
                "Show the token a client here uses for HOST[:PORT] instead (default "
                "$KICKOFF_SERVER, when set and --db is not): $KICKOFF_TOKEN, else the one "
                "this account remembers."
            ),
            show_default=False,
        ),
    ] = None,
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate",
            help="Replace the token with a new one; the old one stops working within a second.",
        ),
    ] = False,
) -> None:
    """Print the server's access token (or make a new one with --rotate).

    Copy it to a worker on another machine: KICKOFF_TOKEN=... kickoff worker --server HOST

    Example: kickoff token --rotate
    """
    if server is not None and db is None and rotate:
        raise typer.BadParameter("--rotate works on a database (--db), not on --server")
    if server is None and db is None and not rotate:
        server = os.environ.get("KICKOFF_SERVER") or None  # as every client command does
    if server is not None and db is None:
        address = auth.normalize_server(server)
        found = resolve_token(address, None)
        if found is None:
            raise NotFound(
                f"no token remembered for {address} in {auth.config_path()} (and "
                "$KICKOFF_TOKEN is not set)"
            )
        sys.stdout.write(found + "\n")
        return
    db_path = location(db)
    if rotate:
        shared = None
        if isinstance(db_path, ServerUrl):  # every server on it shares the database's
            from kickoff.database import shared_token

            shared = shared_token(db_path, auth.new_token(), replace=True)
        sys.stdout.write(auth.rotate(db_path, shared) + "\n")
        err.line("new token written; workers and clients elsewhere need it (KICKOFF_TOKEN=...)")
        return
    found = auth.read_token_file(auth.token_path(db_path))
    if found is None:
        raise NotFound(
            f"no token yet at {auth.token_path(db_path)}: start `kickoff server` once "
            "(or run `kickoff token --rotate`)"
        )
    sys.stdout.write(found + "\n")


def register(app: typer.Typer) -> None:
    app.command("token")(token)
