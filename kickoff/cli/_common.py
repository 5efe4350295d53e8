"""What every command shares: the consoles, the --server/--token/--json options, output."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.text import Text

from kickoff.client import Client

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

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


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def print_json_line(data: Any) -> None:
    """One compact JSON line on stdout (for streams and jq)."""
    sys.stdout.write(orjson.dumps(data).decode() + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    """`error: message` on stderr, red on a terminal; control characters shown escaped."""
    from kickoff.cli._output import one_line  # _output imports this module's consoles

    err_console.print(Text.assemble(("error:", "red"), " ", one_line(message)), soft_wrap=True)
