"""Parsing, help and exit codes that need no server (or need it to be absent)."""

from __future__ import annotations

import re

import pytest

from tests.cli.conftest import Cli
from tests.conftest import free_port

CLIENT_COMMANDS = ["new", "status", "info", "cancel", "wait", "stats", "workers", "tags"]


def test_no_arguments_prints_the_help_screen(cli: Cli) -> None:
    result = cli()
    assert result.code == 0
    assert "Usage: kickoff" in result.out
    for command in CLIENT_COMMANDS:
        assert re.search(rf"^\s+{command}\s", result.out, re.MULTILINE), command


@pytest.mark.parametrize("command", CLIENT_COMMANDS)
def test_each_command_has_help_with_an_example(cli: Cli, command: str) -> None:
    result = cli(command, "--help")
    assert result.code == 0
    assert f"kickoff {command} " in result.out.split("Options:")[0]  # an example
    assert "--server" in result.out and "--token" in result.out
    assert cli(command, "-help").out == result.out  # the seed's spelling too


def test_list_is_an_alias_of_status(cli: Cli) -> None:
    assert cli("list", "--help").code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["new"], "no command given"),
        (["new", "--from", "x.txt", "--", "echo"], "not both"),
        (["new", "--bogus", "echo"], "unknown option --bogus"),
        (["new", "echo", "hi", "--requre", "cpu"], "unknown option --requre; if it belongs"),
        (["new", "ls", "-l"], "unknown option -l"),
        (["new", "echo", "-priority", "5", "hi"], "'hi' after --priority 5"),
        (["new", "echo", "-priority", "many"], "priority"),
        (["new", "echo", "-priority", "2000000"], "priority"),
        (["new", "echo", "-require", "bad tag!"], "invalid tag"),
        (["new", "echo", "-require"], "needs a value"),
        (["new", "echo", "--max-attempts", "0"], "max-attempts"),
        (["new", "--from", "/nonexistent/file"], "cannot read"),
        (["info"], "Missing argument"),
        (["info", "abc"], "integer"),
        (["cancel"], "give task ids or --group NAME"),
        (["wait", "x"], "integer"),
        (["status", "--state", "bogus"], "unknown bogus"),
        (["status", "--limit", "0"], "limit"),
        (["tags", "w", "--add", "no spaces!"], "invalid tag"),
        (["nosuchcommand"], "No such command"),
        (["events", "-type", "completed", "bogus"], "unknown event type 'bogus'"),
        (["events", "-task", "4", "5"], "unexpected extra argument"),  # one task per query
    ],
)
def test_usage_errors_exit_2(cli: Cli, args: list[str], message: str) -> None:
    result = cli(*args, "--server", "127.0.0.1:1")
    assert result.code == 2, result
    assert result.err.startswith("error: ")
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err


def test_an_empty_from_file_is_a_usage_error(cli: Cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "jobs.txt"
    path.write_text("# only comments\n\n   \n")
    result = cli("new", "--from", str(path), "--server", "127.0.0.1:1")
    assert (result.code, result.out) == (2, "")
    assert "no commands" in result.err


@pytest.mark.parametrize(
    "args",
    [
        ["new", "echo", "hi"],
        ["new", "--from", "-"],
        ["status"],
        ["list"],
        ["info", "1"],
        ["cancel", "1"],
        ["wait", "1"],
        ["stats"],
        ["workers"],
        ["tags", "w1", "--add", "gpu"],
    ],
)
def test_an_unreachable_server_exits_3_naming_it(cli: Cli, args: list[str]) -> None:
    port = free_port()  # nothing listens there
    result = cli(*args, "-server", f"127.0.0.1:{port}", stdin="echo a\n")
    assert result.code == 3, result
    assert result.out == ""
    assert f"127.0.0.1:{port}" in result.err
    assert "kickoff server" in result.err  # how to start one
    assert len(result.err.strip().splitlines()) == 1


def test_a_seed_server_name_gets_the_default_port(cli: Cli) -> None:
    result = cli("status", "-server", "no-such-host.invalid")
    assert result.code == 3
    assert "no-such-host.invalid:3355" in result.err


def test_kickoff_server_env_is_used(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("KICKOFF_SERVER", f"127.0.0.1:{port}")
    result = cli("stats")
    assert result.code == 3
    assert f"127.0.0.1:{port}" in result.err


def test_debug_shows_the_traceback(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from kickoff.errors import ServerUnreachable

    monkeypatch.setenv("KICKOFF_DEBUG", "1")
    with pytest.raises(ServerUnreachable):
        cli("stats", "--server", f"127.0.0.1:{free_port()}")


def test_every_client_command_is_in_the_cli_docs() -> None:
    from pathlib import Path

    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for command in CLIENT_COMMANDS:
        assert f"| `kickoff {command}" in docs, command


def test_the_cli_adds_no_error_codes() -> None:
    """Every KickoffError the CLI can raise has a code the API and client know
    (`wait --timeout` running out is a plain KickoffError: exit 1)."""
    import kickoff.cli  # noqa: F401  (imports every command module)
    from kickoff.errors import ERRORS_BY_CODE, KickoffError

    found, todo = [], [KickoffError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    ours = [cls for cls in found if cls.__module__.startswith("kickoff.cli")]
    assert [cls for cls in ours if ERRORS_BY_CODE.get(cls.code) is not cls] == []
