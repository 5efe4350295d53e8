"""The original's syntax -> the modern one: `_syntax.translate`, a pure function."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kickoff.cli._syntax import (
    LIST_OPTIONS,
    NEW_FLAGS,
    NEW_VALUED,
    is_dash_word,
    parse_new,
    translate,
)
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
        ("new -h", "new --help"),
        ("new --require cpu -h", "new --help"),
        ("new --help", "new --help"),
        ("new -- ls -require x", "new -- ls -require x"),  # after --, nothing is an option
        ("new python3 t.py -- --epochs 3", "new -- python3 t.py --epochs 3"),  # one run
        ("new ./job -priority -5", "new --priority=-5 -- ./job"),  # negative numbers
        ("new ./job -priority=-5 -wait", "new --priority=-5 --wait -- ./job"),
        ("new ./job --priority -5", "new --priority=-5 -- ./job"),
        ("new ./job --token -Zx9", "new --token=-Zx9 -- ./job"),  # a token may start with -
        ("new ./job --timeout --wait", "new --timeout=--wait -- ./job"),  # typer: not a float
        ("new ./job -max-attempts 5 -timeout 2.5", "new --max-attempts 5 --timeout 2.5 -- ./job"),
        ("new ./job -max_attempts 5", "new --max-attempts 5 -- ./job"),
        ("new -from jobs.txt -require cpu", "new --from jobs.txt --require cpu"),
        ("new -from - -want gpu", "new --from=- --want gpu"),
        ("new -require a;b c,d -- x", "new --require a;b --require c,d -- x"),
        # a tag option takes every word up to the next option, with one dash or two
        ("new --require cpu gpu -- echo x", "new --require cpu --require gpu -- echo x"),
        ("new echo y --require cpu gpu", "new --require cpu --require gpu -- echo y"),
        ("new echo y --want=a b -wait", "new --want a --want b --wait -- echo y"),
        ("new --require cpu", "new --require cpu"),  # `new` itself says: no command
        ("worker --have cpu solo", "worker --have cpu --have solo"),
        ("worker --have=cpu solo -slots 2", "worker --have cpu --have solo --slots 2"),
        ("status --state running pending", "status --state running --state pending"),
        ("-server h:1 status", "status --server h:1"),
        ("-server h:1 new ./job -want gpu", "new --server h:1 --want gpu -- ./job"),
        ("--server=h:1 info 3", "info --server=h:1 3"),
        ("--help", "--help"),
        ("-help", "--help"),
        ("", ""),
        ("status -state -5", "status --state=-5"),  # a value, not an option
        ("status -token -abc -all", "status --token=-abc --all"),  # a token may start with -
        ("status --server h --token -x_y", "status --server h --token=-x_y"),
        ("worker -have cpu -- -server", "worker --have cpu -- -server"),
        ("events -task 4 5", "events --task 4 5"),  # one task: typer reports the extra word
        ("events -worker box1 box2", "events --worker box1 box2"),
    ],
)
def test_translate(given_: str, expected: str) -> None:
    assert t(given_) == expected.split()


@pytest.mark.parametrize(
    "line",
    [
        "new ./job -require",
        "new ./job -priority",
        "worker -have -server x",
        "new x -server --",
    ],
)
def test_an_option_without_its_value_is_a_usage_error(line: str) -> None:
    with pytest.raises(InvalidInput, match="needs a value"):
        t(line)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # a typo is never absorbed into the command
        ("new echo hi --requre cpu", "unknown option --requre; if it belongs to the command"),
        ("new echo hi -requre cpu", "unknown option -requre"),
        ("new -bogus x", "unknown option -bogus"),
        # the command's own dash-words: kickoff's or the command's? refused, never guessed
        ("new ls -l", "unknown option -l; if it belongs to the command, put the command after --"),
        ("new echo -n hi", "unknown option -n"),
        ("new ls -la -require cpu", "unknown option -la"),
        ("new df -h", "-h after the command: for help, kickoff new --help"),
        ("new df --help -json", "--help after the command"),
        # a word after the options that no option takes: the command is never split
        ("new echo -priority 5 hi", "'hi' after --priority 5 is not part of the command"),
        ("new echo -wait hi", "'hi' after --wait is not part of the command"),
        # tags that swallowed the command
        ("new --require cpu make", "no command given: cpu make are all tags of --require"),
        ("new -want a -require cpu ./run.sh", "cpu ./run.sh are all tags of --require"),
        ("new x --json=yes", "--json takes no value"),
        # one command in two pieces, around the options
        ("new echo a -require cpu -- b", "the command is in two places"),
    ],
)
def test_new_refuses_what_could_mean_two_things(line: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        t(line)
    assert message in caught.value.message


def test_the_hint_names_the_way_out() -> None:
    with pytest.raises(InvalidInput) as caught:
        t("new echo hi --requre cpu")
    assert caught.value.message.endswith("kickoff new [OPTIONS] -- CMD...")


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


@settings(max_examples=300)
@given(st.lists(TOKENS, max_size=12))
def test_new_runs_the_words_given_as_the_command_or_refuses(args: list[str]) -> None:
    """The command is the words before the first dash-word, or all the words after `--`:
    never a word from among the options, never a word split off the command."""
    try:
        words = parse_new(args)
    except InvalidInput:
        return
    if words.help:
        return
    lead = list(itertools.takewhile(lambda w: not is_dash_word(w), args))
    after = args[args.index("--") + 1 :] if "--" in args else []
    assert list(words.command) == lead + after
    assert not (lead and after and words.options), "one command in two pieces"


@given(
    command=st.lists(WORD, min_size=1, max_size=4),
    require=st.lists(WORD, min_size=1, max_size=4),
    dashes=st.sampled_from(["-", "--"]),
)
def test_tag_options_take_their_words_with_one_dash_or_two(
    command: list[str], require: list[str], dashes: str
) -> None:
    seed = parse_new([*command, f"{dashes}require", *require])
    modern = parse_new([f"{dashes}require", *require, "--", *command])
    assert seed == modern
    assert list(seed.command) == command
    assert [v for _, v in seed.options] == require


@given(st.lists(st.one_of(WORD, st.sampled_from(["--all", "--json", "--limit", "--", "-5", "-h"]))))
def test_modern_arguments_pass_unchanged(args: list[str]) -> None:
    assert translate(["status", *args]) == ["status", *args]


def test_the_option_tables_match_the_commands() -> None:
    """_syntax's constants name the real options (so a renamed option cannot go unnoticed)."""
    import typer

    from kickoff.cli._app import full_app

    group = typer.main.get_command(full_app())
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


@pytest.mark.parametrize("name", ["new", "status"])
def test_the_quick_tables_are_typers_declarations(name: str) -> None:
    """`_quick` parses new and status by its own tables; typer shows their --help from
    client_cmds' declarations: the same options, kinds, types, ranges and defaults."""
    import typer

    from kickoff.cli import _quick
    from kickoff.cli._app import full_app

    table = {"new": _quick.NEW, "status": _quick.STATUS}[name]
    command = typer.main.get_command(full_app()).commands[name]  # type: ignore[attr-defined]
    declared = {
        opt[2:]: param
        for param in command.params
        for opt in param.opts
        if opt.startswith("--") and opt != "--help"
    }
    assert set(declared) == set(table)
    for option, param in declared.items():
        quick = table[option]
        kind = "flag" if param.is_flag else "many" if param.multiple else "value"
        assert quick.kind == kind, option
        if kind == "value":
            declared_type = param.type_descriptor.annotation
            assert declared_type in (quick.type, quick.type | None), (option, declared_type)
            assert (param.min, param.max) == (quick.low, quick.high), option
            assert param.default == quick.default, option
        elif kind == "flag":
            assert param.default is False, option
