"""The original's syntax -> the modern one: `_syntax.translate`, a pure function."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kickoff.cli._syntax import LIST_OPTIONS, NEW_FLAGS, NEW_VALUED, is_dash_word, translate
from kickoff.errors import InvalidInput


def t(line: str) -> list[str]:
    return translate(line.split())


@pytest.mark.parametrize(
    ("seed", "modern"),
    [
        # every example of the original README
        ("server", "server"),
        ("worker -have cpu gpu -server 10.0.0.5", "worker --have cpu --have gpu --server 10.0.0.5"),
        (
            "new ./run.sh arg1 -require cpu -want gpu -server my_task_server",
            "new --require cpu --want gpu --server my_task_server -- ./run.sh arg1",
        ),
        ("status -server host", "status --server host"),
        ("info 42 -server host", "info 42 --server host"),
        ("cancel 42 -server host", "cancel 42 --server host"),
        # more of the same rule
        ("server -port 4000 -db /tmp/k.db", "server --port 4000 --db /tmp/k.db"),
        ("worker -have cpu,gpu -slots 4 -name box", "worker --have cpu,gpu --slots 4 --name box"),
        (
            "status -state running pending -limit 3",
            "status --state running --state pending --limit 3",
        ),
        ("tags w1 -add gpu big -remove cpu", "tags w1 --add gpu --add big --remove cpu"),
        ("workers -all -json", "workers --all --json"),
        ("wait 1 2 3 -timeout 10", "wait 1 2 3 --timeout 10"),
        ("up -have cpu -slots 2", "up --have cpu --slots 2"),
        (
            "events -type submitted completed -task 4 -worker box1 -json",
            "events --type submitted --type completed --task 4 --worker box1 --json",
        ),
    ],
)
def test_seed_syntax_becomes_modern(seed: str, modern: str) -> None:
    assert t(seed) == modern.split()


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("new echo hi", "new -- echo hi"),
        ("new --require cpu -- ls -la", "new --require cpu -- ls -la"),
        ("new ls -la -require cpu", "new --require cpu -- ls -la"),  # -la is not kickoff's
        ("new df -h -json", "new --json -- df -h"),  # -h inside a command is the command's
        ("new -h", "new --help"),
        ("new --help", "new --help"),
        ("new -- ls -require x", "new -- ls -require x"),  # after --, nothing is an option
        ("new ./job -priority -5", "new --priority=-5 -- ./job"),  # negative numbers
        ("new ./job -priority=-5 -wait", "new --priority=-5 --wait -- ./job"),
        ("new ./job --priority -5", "new --priority=-5 -- ./job"),
        ("new ./job -max-attempts 5 -timeout 2.5", "new --max-attempts 5 --timeout 2.5 -- ./job"),
        ("new ./job -max_attempts 5", "new --max-attempts 5 -- ./job"),
        ("new -from jobs.txt -require cpu", "new --from jobs.txt --require cpu"),
        ("new -from - -want gpu", "new --from=- --want gpu"),
        ("new -require a;b c,d -- x", "new --require a;b --require c,d -- x"),
        ("new --require cpu make", "new --require cpu -- make"),  # modern: one value per option
        ("new -bogus x", "new -bogus -- x"),  # an unknown option is left for typer to report
        ("-server h:1 status", "status --server h:1"),
        ("-server h:1 new ./job -want gpu", "new --server h:1 --want gpu -- ./job"),
        ("--server=h:1 info 3", "info --server=h:1 3"),
        ("--help", "--help"),
        ("-help", "--help"),
        ("", ""),
        ("status -state -5", "status --state=-5"),  # a value, not an option
        ("worker -have cpu -- -server", "worker --have cpu -- -server"),
        ("events -task 4 5", "events --task 4 5"),  # one task: typer reports the extra word
        ("events -worker box1 box2", "events --worker box1 box2"),
    ],
)
def test_translate(given_: str, expected: str) -> None:
    assert t(given_) == expected.split()


@pytest.mark.parametrize(
    "line",
    ["new ./job -require", "new ./job -priority", "worker -have -server x", "new x -server --"],
)
def test_an_option_without_its_value_is_a_usage_error(line: str) -> None:
    with pytest.raises(InvalidInput, match="needs a value"):
        t(line)


def test_words_with_spaces_stay_one_word() -> None:
    assert translate(["new", "echo 'a b' > out", "-require", "cpu gpu"]) == [
        "new",
        "--require",
        "cpu gpu",
        "--",
        "echo 'a b' > out",
    ]


def test_dash_words() -> None:
    assert all(map(is_dash_word, ["-a", "-have", "--have", "--", "-h"]))
    assert not any(map(is_dash_word, ["-", "-5", "-1.5", "cpu", "", "a-b"]))


# ------------------------------------------------------------------------- properties

WORD = st.text(st.sampled_from("abcxyz019./_=:"), min_size=1, max_size=6)
TOKENS = st.one_of(
    WORD,
    st.sampled_from(
        [
            "new",
            "status",
            "worker",
            "--",
            "-",
            "-5",
            "-la",
            "-h",
            "--help",
            "-json",
            "--json",
            "-wait",
            "-require",
            "--require",
            "-want",
            "-priority",
            "--priority",
            "-server",
            "--server=x",
            "-have",
            "-state",
            "-from",
            "-max_attempts",
            "-x=1",
            "--bogus",
        ]
    ),
)


@settings(max_examples=300)
@given(st.lists(TOKENS, max_size=12))
def test_translating_twice_changes_nothing(args: list[str]) -> None:
    try:
        once = translate(args)
    except InvalidInput:
        return
    assert translate(once) == once


@given(
    command=st.lists(WORD.filter(lambda w: w != "new"), min_size=1, max_size=4),
    require=st.lists(WORD, min_size=1, max_size=4),
    want=st.lists(WORD, min_size=1, max_size=4),
    host=WORD,
)
def test_new_in_seed_form(
    command: list[str], require: list[str], want: list[str], host: str
) -> None:
    args = ["new", *command, "-require", *require, "-want", *want, "-server", host]
    expected = ["new"]
    expected += [w for tag in require for w in ("--require", tag)]
    expected += [w for tag in want for w in ("--want", tag)]
    assert translate(args) == [*expected, "--server", host, "--", *command]


@given(st.lists(st.one_of(WORD, st.sampled_from(["--all", "--json", "--limit", "--", "-5", "-h"]))))
def test_modern_arguments_pass_unchanged(args: list[str]) -> None:
    assert translate(["status", *args]) == ["status", *args]


def test_the_option_tables_match_the_commands() -> None:
    """_syntax's constants name the real options (so a renamed option cannot go unnoticed)."""
    import typer

    from kickoff.cli import app

    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    new_options = {
        name[2:] for param in commands["new"].params for name in param.opts if name.startswith("--")
    }
    assert new_options - {"help"} == NEW_FLAGS | NEW_VALUED
    for command in commands.values():
        for param in command.params:
            for name in param.opts:
                if name[2:] in LIST_OPTIONS and name.startswith("--"):
                    assert getattr(param, "multiple", False), (
                        f"{command.name} {name} must be repeatable"
                    )
