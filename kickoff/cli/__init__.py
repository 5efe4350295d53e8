"""The `kickoff` command line: thin layers over client.py, the worker and the store.

`run()` rewrites the original tool's syntax (`-have cpu gpu`, `new CMD -require cpu`)
into the modern form first (`_syntax`); then `kickoff --help`, `new` and `status` are
answered without typer (`_commands`, `_quick`: they must start in milliseconds), and every
other command by typer with only its own module imported (`_app`). Commands live in
submodules by area, each with a `register(app)`. A KickoffError becomes `error: ...` and
its exit code.

Output, from the bottom up: `_terminal` (escaping, cell widths, colour, stdout and stderr,
JSON), `_tables` (tables and `key  value` fields), `_words` (values in words), and one view
per subject (`_view_tasks`, `_view_workers`, `_view_log`, `_view_why`).
"""

from __future__ import annotations

import os
import sys

from kickoff.errors import KickoffError

HELP = (["--help"], ["-h"], ["-help"])


def _quiet_broken_pipe() -> None:
    """`kickoff status | head`: the reader left; stop without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _no_such_command(name: str) -> int:
    from difflib import get_close_matches

    from kickoff.cli import _commands, _terminal

    known = [n for n, (_, summary) in _commands.COMMANDS.items() if summary]
    close = get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    _terminal.error(f"No such command '{name}'{hint} (see `kickoff --help`)")
    return 2


def _dispatch(args: list[str]) -> int:
    from kickoff.cli import _commands, _syntax

    if args in (["--version"], ["-version"]):
        args = ["version"]
    words = _syntax.translate(args)
    if not words or words in HELP:
        sys.stdout.write(_commands.help_text())
        return 0
    head = words[0]
    if _commands.module_of(head) is None:
        return _no_such_command(head)
    options = words[1 : words.index("--")] if "--" in words else words[1:]
    if head in _commands.QUICK and not {"--help", "-h"} & set(options):
        from kickoff.cli import _quick

        return _quick.run(words)
    if head == "version" and len(words) == 1:
        from kickoff.cli import version_cmd

        version_cmd.version()
        return 0
    from kickoff.cli import _app

    return _app.run(words)


def run(args: list[str]) -> int:
    """Run the command line on `args` (without the program name); the exit code.

    Expected errors print one `error: ...` line on stderr and never a traceback
    (KICKOFF_DEBUG=1 shows it).
    """
    try:
        return _dispatch(args)
    except KickoffError as exc:
        if os.environ.get("KICKOFF_DEBUG"):
            raise
        from kickoff.cli import _terminal

        _terminal.error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        from kickoff.cli import _terminal

        _terminal.error("interrupted")
        return 130
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 1


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `kickoff` console script."""
    sys.exit(run(list(sys.argv[1:] if argv is None else argv)))
