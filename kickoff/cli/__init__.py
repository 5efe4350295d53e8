"""The `kickoff` command line: a thin typer layer over client.py, the worker and the store.

Commands live in submodules by area; each has a `register(app)`. `main()` rewrites the
original tool's syntax (`-have cpu gpu`, `new CMD -require cpu`) into the modern form
first (see `_syntax.py`), then maps KickoffError to `error: ...` and its exit code.
"""

from __future__ import annotations

import os
import sys

import click
import typer

from kickoff.cli import _common, _syntax
from kickoff.errors import KickoffError

app = typer.Typer(
    name="kickoff",
    help=(
        "kickoff: a task scheduler for heterogeneous compute clusters.\n\n"
        "Start a server, add workers with resource tags, submit shell commands that require "
        "and want tags.\n\n"
        "  kickoff server\n\n"
        "  kickoff worker -have cpu gpu -server HOST\n\n"
        "  kickoff new ./train.sh -require gpu -want big-mem -server HOST\n\n"
        "  kickoff status | info ID | cancel ID | wait ID | history ID"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register_all() -> None:
    from kickoff.cli import client_cmds, log_cmds, server_cmds, worker_cmd

    for module in (client_cmds, server_cmds, worker_cmd, log_cmds):
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `kickoff` console script."""
    args = _syntax.translate(list(sys.argv[1:] if argv is None else argv))
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="kickoff", standalone_mode=False)
    except KickoffError as exc:
        if os.environ.get("KICKOFF_DEBUG"):
            raise
        _common.error(exc.message)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _common.error("interrupted")
        sys.exit(130)
    except click.ClickException as exc:  # usage errors: exit 2
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
