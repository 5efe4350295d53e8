"""Run the CLI in-process (`kickoff.cli.run`) and capture what it prints.

The environment is private: no KICKOFF_* variables, and a config dir of the test's own, so
a token in the user's real config is never found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kickoff.cli import run
from tests.conftest import ServerProcess


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KICKOFF_SERVER", "KICKOFF_TOKEN", "KICKOFF_DB", "KICKOFF_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """cli(*args, stdin=None) -> Result(code, out, err), the way a pipe would see it."""

    def invoke(*args: str, stdin: str | None = None) -> Result:
        if stdin is not None:
            import io

            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def ko(cli: Cli, server: ServerProcess) -> Cli:
    """The CLI pointed at the test server."""

    def invoke(*args: str, stdin: str | None = None) -> Result:
        where = ["--server", server.address, "--token", server.token]
        if args[0] == "new" and "--" not in args and args[1:2] and args[1][0] != "-":
            return cli(*args, *where, stdin=stdin)  # `new CMD... -opt ...`: after the options
        # right after the subcommand, so that `new ... -- CMD` keeps CMD last
        return cli(args[0], *where, *args[1:], stdin=stdin)

    return invoke


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make stdout and stderr look like a 120-column terminal (without colors)."""
    from kickoff.cli import _terminal

    monkeypatch.setenv("NO_COLOR", "1")
    for stream in (_terminal.out, _terminal.err):
        monkeypatch.setattr(stream, "terminal", True)
        monkeypatch.setattr(stream, "columns", 120)
