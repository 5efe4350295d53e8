"""`--db` and `$KICKOFF_DB` take a file path or a postgresql:// URL; a URL this build does
not support is refused as a usage error (exit 2) before anything is created, never taken
for a path (issue 18: `--db postgresql://u@h/db` used to create `postgresql:/u@h/db`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Cli

URLS = ("mysql://kick@db.example/kickoff", "sqlite://k.db", "file://k.db", "postgis://x")


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize(
    "command",
    [["server", "--port", "0"], ["verify"], ["replay"], ["projections", "rebuild"], ["token"]],
)
def test_an_unsupported_url_is_refused_and_nothing_is_created(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, command: list[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = cli(*command, "--db", url)
    assert result.code == 2, result
    scheme = url.split(":")[0]
    assert f"does not support {scheme}:// databases" in result.err
    assert list(work.iterdir()) == []
    assert not (tmp_path / "data").exists()


def test_kickoff_db_is_held_to_the_same_rule(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KICKOFF_DB", "mysql://kick@db.example/kickoff")
    result = cli("verify")
    assert result.code == 2
    assert "does not support mysql:// databases" in result.err
    assert not Path("mysql:").exists()


def test_a_path_with_a_colon_is_still_a_path(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("projections", "rebuild", "--db", "a:b.db")
    assert "does not support" not in result.err
