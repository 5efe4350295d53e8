"""The typer app, built for the one command being run (its module alone is imported), and
typer's usage errors as one `error:` line with exit code 2.

`full_app()` has every command, for the docs and their tests.

No command's code here (each lives in its `*_cmd(s).py`), and no output (`_terminal`).
"""

from __future__ import annotations

import importlib

import typer

from kickoff.cli import _commands, _help


def _group() -> None:
    """(A callback makes the app a group even with one command registered.)"""


def _new_app() -> typer.Typer:
    app = typer.Typer(
        name="kickoff",
        help=_commands.ABOUT,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_group)
    return app


def app_for(*modules: str) -> typer.Typer:
    """An app with the commands of these modules (of kickoff.cli) registered."""
    app = _new_app()
    for name in dict.fromkeys(modules):
        importlib.import_module(f"kickoff.cli.{name}").register(app)
    _help.use_words(app)
    return app


def full_app() -> typer.Typer:
    """Every command."""
    return app_for(*(module for module, _ in _commands.COMMANDS.values()))


def _usage_hint(exc: typer.TyperException) -> str:
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "kickoff"
    return f" (see `{path} --help`)" if getattr(exc, "exit_code", 1) == 2 else ""


def run(words: list[str]) -> int:
    """Run a command through typer (`words` as `_syntax.translate` gave them).

    Raises:
        KickoffError: what the command met (the caller prints it).
    """
    module = _commands.module_of(words[0])
    assert module is not None, words[0]
    command = typer.main.get_command(app_for(module))
    try:
        code = command.main(args=words, prog_name="kickoff", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        raise KeyboardInterrupt from None
    except typer.TyperException as exc:  # click's usage errors (typer vendors click): exit 2
        from kickoff.cli import _terminal

        if type(exc).__name__ == "NoArgsIsHelpError":  # a group without its subcommand
            _terminal.err.write(exc.format_message() + "\n")
        else:
            _terminal.error(exc.format_message().rstrip(".") + _usage_hint(exc))
        return exc.exit_code
    return code if isinstance(code, int) else 0
