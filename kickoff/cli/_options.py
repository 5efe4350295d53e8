"""The options every client command shares (--server, --token, --json), and its client."""

from __future__ import annotations

from typing import Annotated

import typer

from kickoff.client import Client

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


def client(server: str | None, token: str | None) -> Client:
    """A client for the chosen server."""
    return Client(server, token=token)
