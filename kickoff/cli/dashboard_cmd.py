"""`kickoff dashboard`: a one-time login link for the server's web dashboard.

The dashboard itself is kickoff/dashboard, served by the server; this only asks the
server for a login code.
"""

from __future__ import annotations

from typing import Annotated

import typer

from kickoff.cli._options import ServerOpt, TokenOpt, client
from kickoff.cli._terminal import err, out
from kickoff.client import base_url


def dashboard(
    server: ServerOpt = None,
    token: TokenOpt = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the link in a web browser too.")
    ] = False,
) -> None:
    """Print a login link for the web dashboard (it works once, within a minute).

    The link opens a browser session; the token itself never goes into a URL.

    Example: kickoff dashboard --open
    """
    with client(server, token) as api:
        answer = api.post("/dashboard/login-codes")
        url = base_url(api.server) + str(answer["path"])
    out.line(url)
    err.line(
        f"the link works once, within {answer['expires_in_s']:g} s; "
        "run `kickoff dashboard` again for another"
    )
    if open_browser:
        import webbrowser

        if not webbrowser.open(url):
            err.line("no web browser found here: open the link by hand")


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
