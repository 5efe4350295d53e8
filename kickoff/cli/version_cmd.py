"""`kickoff version` (and `kickoff --version`): print the version.

Nothing else: the version is kickoff/__init__.py's.
"""

from __future__ import annotations

import typer

from kickoff import __version__
from kickoff.cli._terminal import out


def line() -> str:
    return f"kickoff {__version__}"


def version() -> None:
    """Print kickoff's version (also: kickoff --version).

    Example: kickoff version
    """
    out.line(line())


def register(app: typer.Typer) -> None:
    app.command("version")(version)
