"""The `kickoff` command line: a thin typer layer over client.py, the worker and the store.

Commands live in submodules by area; each has a `register(app)`. `main()` rewrites the
original tool's syntax (`-have cpu gpu`, `new CMD -require cpu`) into the modern form
first (see `_syntax.py`), then maps KickoffError to `error: ...` and its exit code.
"""

from __future__ import annotations

import os
import sys

import typer

from kickoff.cli import _help, _screen, _syntax
from kickoff.errors import KickoffError

app = typer.Typer(
    name="kickoff",
    help=(
        "kickoff: a task scheduler for heterogeneous compute clusters.\n\n"
        "Start a server, add workers with resource tags, submit shell commands that require "
        "and want tags.\n\n"
        "\b\n"
        "  kickoff server\n"
        "  kickoff worker -have cpu gpu -server HOST\n"
        "  kickoff new ./train.sh -require gpu -want big-mem -server HOST\n"
        "  kickoff status | info ID | cancel ID | wait ID | history ID\n\n"
        "Options take one dash or two (-have, --have). A command with words of its own that "
        "start with a dash goes after --:\n\n"
        "\b\n"
        "  kickoff new --require cpu -- ls -la\n\n"
        "Exit codes: 0 ok, 1 failed, 2 usage, 3 server unreachable, 4 not found, "
        "5 not authorized. `kickoff COMMAND --help` shows a command's options; "
        "`kickoff --version` the version."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register_all() -> None:
    from kickoff.cli import (
        client_cmds,
        dashboard_cmd,
        log_cmds,
        server_cmds,
        token_cmd,
        version_cmd,
        worker_cmd,
    )

    for module in (
        client_cmds,
        server_cmds,
        worker_cmd,
        log_cmds,
        dashboard_cmd,
        token_cmd,
        version_cmd,
    ):
        module.register(app)
    _help.use_words(app)


_register_all()


def _usage_hint(exc: typer.TyperException) -> str:
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "kickoff"
    return f" (see `{path} --help`)" if getattr(exc, "exit_code", 1) == 2 else ""


def _quiet_broken_pipe() -> None:
    """`kickoff status | head`: the reader left; stop without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def run(args: list[str]) -> int:
    """Run the command line on `args` (without the program name); the exit code.

    Expected errors print one `error: ...` line on stderr and never a traceback
    (KICKOFF_DEBUG=1 shows it).
    """
    if args in (["--version"], ["-version"]):
        args = ["version"]
    command = typer.main.get_command(app)
    try:
        args = _syntax.translate(args) or ["--help"]
        code = command.main(args=args, prog_name="kickoff", standalone_mode=False)
    except KickoffError as exc:
        if os.environ.get("KICKOFF_DEBUG"):
            raise
        _screen.error(exc.message)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        _screen.error("interrupted")
        return 130
    except typer.TyperException as exc:  # click's usage errors (typer vendors click): exit 2
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group without its subcommand
            _screen.err.write(exc.format_message() + "\n")
        else:
            _screen.error(exc.format_message().rstrip(".") + _usage_hint(exc))
        return exc.exit_code
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 1
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `kickoff` console script."""
    sys.exit(run(list(sys.argv[1:] if argv is None else argv)))
