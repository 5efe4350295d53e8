"""`kickoff migrate SRC DST` as a command: what it says, its exit codes."""

from __future__ import annotations

from pathlib import Path

from kickoff.database import Database
from tests.cli.conftest import Cli
from tests.store.test_recorder import story


def test_migrate_copies_then_refuses_a_destination_with_a_log(
    cli: Cli, tmp_path: Path, pg_url: str
) -> None:
    source = tmp_path / "a.db"
    db = Database(source)
    db.write(story())
    db.close()
    first = cli("migrate", str(source), pg_url)
    assert first.code == 0, first.err
    assert f"copied 15 events (seq 1..15) from {source} to {pg_url}" in first.out
    again = cli("migrate", str(source), pg_url)
    assert again.code == 1
    assert "already holds a log (15 events)" in again.err
    back = cli("migrate", pg_url, str(tmp_path / "b.db"), "--json")
    assert back.code == 0 and '"events": 15' in back.out
    assert cli("verify", "--db", str(tmp_path / "b.db")).code == 0
    bad = cli("migrate", str(source), "mysql://x/y")
    assert bad.code == 2 and "does not support mysql://" in bad.err
