"""The docs are tested: every command has help text with an example, and is in the README.

Like sqlite-utils' tests/test_docs.py: the commands are read from the app itself, so a new
command without help or without a README line fails here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from kickoff.cli import run
from kickoff.cli._app import full_app

README = Path(__file__).parent.parent / "README.md"
# An example: an `Example:` line, or an indented `kickoff ...` line (a `\b` block).
EXAMPLE = re.compile(r"^(?:Example:[ \t]*kickoff |[ \t]+(?:\S+=\S*[ \t]+)*kickoff )", re.MULTILINE)


def _walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield (*path, name), sub
        yield from _walk(sub, (*path, name))


COMMANDS = dict(_walk(typer.main.get_command(full_app()), ()))
VISIBLE = [path for path, command in COMMANDS.items() if not command.hidden]


def _id(path: tuple[str, ...]) -> str:
    return " ".join(path)


def test_the_walk_finds_the_commands_and_the_sub_apps() -> None:
    names = {_id(path) for path in COMMANDS}
    assert {"new", "status", "list", "events", "server", "worker", "token"} <= names
    assert {"projections", "projections rebuild"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=_id)
def test_help_opens_with_a_sentence(path: tuple[str, ...]) -> None:
    first = (COMMANDS[path].help or "").strip().splitlines()[0:1]
    assert first, f"kickoff {_id(path)} has no help text"
    line = first[0]
    assert line[:1].isupper() and line.endswith("."), (
        f"kickoff {_id(path)}: the first line of the help should be a sentence, not {line!r}"
    )


@pytest.mark.parametrize("path", COMMANDS, ids=_id)
def test_help_has_an_example(path: tuple[str, ...]) -> None:
    text = COMMANDS[path].help or ""
    assert EXAMPLE.search(text), (
        f"kickoff {_id(path)}: add an example to its help (`Example: kickoff ...`, or an "
        f"indented `kickoff ...` line after a \\b line)"
    )


@pytest.mark.parametrize("path", COMMANDS, ids=_id)
def test_help_shows_the_examples_as_written(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    """`kickoff CMD --help` keeps each example on a line of its own (click rewraps
    paragraphs unless they follow a `\\b` line)."""
    assert run([*path, "--help"]) == 0
    shown = [line.strip() for line in capsys.readouterr().out.splitlines()]
    for match in EXAMPLE.finditer(COMMANDS[path].help or ""):
        start = match.start()
        example = (COMMANDS[path].help or "")[start:].splitlines()[0].strip()
        assert example in shown, f"kickoff {_id(path)} --help: {example!r} is rewrapped"


@pytest.mark.parametrize("path", VISIBLE, ids=_id)
def test_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    readme = README.read_text()
    assert re.search(rf"kickoff {re.escape(_id(path))}(?![\w-])", readme), (
        f"`kickoff {_id(path)}` is not in README.md (its CLI table lists every command)"
    )


CLI_DOCS = Path(__file__).parent.parent / "docs" / "cli.md"
RULE_ROW = re.compile(r"^\| (`kickoff new [^|]*`) \| `([^`]*)`", re.MULTILINE)


def _refusals() -> list[tuple[str, str]]:
    rows = RULE_ROW.findall(CLI_DOCS.read_text())
    return [
        (typed, says) for cell, says in rows for typed in re.findall(r"`kickoff (new [^`]*)`", cell)
    ]


def test_the_one_rule_table_lists_refusals() -> None:
    assert len(_refusals()) >= 6


@pytest.mark.parametrize(("typed", "says"), _refusals())
def test_the_one_rule_table_is_what_kickoff_says(
    typed: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/cli.md's table of refused `new` lines, word for word (no server: refused first)."""
    assert run(shlex.split(typed)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err, err


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        ("new ./render.sh 12 -require cpu -want gpu", "./render.sh 12"),
        ("new --require cpu -- ./train.py --epochs 3 --json", "./train.py --epochs 3 --json"),
        ("new 'make -j8 && ./run > out.txt'", "make -j8 && ./run > out.txt"),
    ],
)
def test_the_readmes_new_examples_mean_what_it_says(typed: str, command: str) -> None:
    from kickoff.cli._syntax import parse_new

    assert " ".join(parse_new(shlex.split(typed)[1:]).command) == command
    assert f"kickoff {typed}" in " ".join(README.read_text().split())


@pytest.mark.parametrize(
    "typed",
    [
        "new ls -l",
        "new echo hi --requre cpu",
        "new echo -priority 5 hi",
        "new --require cpu make",
    ],
)
def test_the_readmes_refused_examples_are_refused(
    typed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert f"kickoff {typed}" in " ".join(README.read_text().split())
    assert run(shlex.split(typed)) == 2
    assert capsys.readouterr().err.startswith("error: ")


TYPE_NAME = re.compile(r"<[a-z][a-z \[\],|]*>|\{[A-Z.]+\}|x>=|<=x")


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=lambda p: _id(p) or "kickoff")
def test_help_speaks_in_words_not_types(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    """`TAG`, `N`, `SECONDS`, `PATH`, `ID...`: never `<list[str]>`, `<int range>`, `{ID}`."""
    assert run([*path, "--help"]) == 0
    shown = capsys.readouterr().out
    found = TYPE_NAME.findall(shown)
    assert not found, f"kickoff {_id(path)} --help shows {found}:\n{shown}"


@pytest.mark.parametrize("args", [["--version"], ["version"], ["-version"]])
def test_the_version(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    import kickoff

    assert run(args) == 0
    assert capsys.readouterr().out == f"kickoff {kickoff.__version__}\n"
    assert version("kickoff") == kickoff.__version__  # pyproject reads it from there


def test_the_command_table_is_the_app() -> None:
    """`kickoff --help` comes from _commands without typer: its table is the app's."""
    from kickoff.cli import _commands
    from kickoff.cli._app import app_for

    top = typer.main.get_command(full_app()).commands  # type: ignore[attr-defined]
    assert list(_commands.COMMANDS) == list(top)  # the same, in the same order
    for name, (module, summary) in _commands.COMMANDS.items():
        first = (top[name].help or "").strip().splitlines()[0]
        assert summary == (None if top[name].hidden else first), name
        assert name in typer.main.get_command(app_for(module)).commands  # type: ignore[attr-defined]


def test_kickoff_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for args in ([], ["--help"], ["-h"]):
        assert run(args) == 0
        shown = capsys.readouterr().out
        assert shown.startswith("Usage: kickoff [OPTIONS] COMMAND [ARGS]...\n")
        assert all(len(line) < 80 for line in shown.splitlines())
        listed = re.findall(r"^  ([a-z]+)  ", shown.split("\nCommands:\n")[1], re.MULTILINE)
        top = typer.main.get_command(full_app()).commands  # type: ignore[attr-defined]
        assert listed == [name for name, command in top.items() if not command.hidden]


def _architecture_rows() -> list[str]:
    text = README.read_text()
    section = text[text.index("## How it works") :]
    return [line for line in section.splitlines() if line.startswith("| `kickoff/")]


def _named_paths(row: str) -> Iterator[Path]:
    """The files and folders a row of the table names: `kickoff/...` from the checkout,
    `part/x.py` from kickoff/, a bare `x.py` (or `static/`) from the row's first path."""
    root = README.parent
    names = re.findall(r"`([\w./]+(?:\.py|/))`", row)
    first = root / names[0]
    base = first if names[0].endswith("/") else first.parent
    for name in names:
        if name.startswith("kickoff/"):
            yield root / name
        elif "/" in name.rstrip("/"):
            yield root / "kickoff" / name
        else:
            yield base / name


def test_the_architecture_table_names_modules_that_exist() -> None:
    rows = _architecture_rows()
    assert len(rows) > 10
    named = [path for row in rows for path in _named_paths(row)]
    assert {"recording.py", "claims.py", "reads.py"} <= {p.name for p in named}
    missing = [str(p.relative_to(README.parent)) for p in named if not p.exists()]
    assert missing == []
