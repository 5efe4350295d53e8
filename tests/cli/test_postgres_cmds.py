"""Commands on a PostgreSQL database: `kickoff migrate SRC DST` (what it says, its exit
codes) and `kickoff token --rotate` (the token every server on the database shares)."""

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


def test_token_rotate_on_postgresql_replaces_the_token_every_server_shares(
    cli: Cli, pg_url: str
) -> None:
    from kickoff.database import shared_token
    from kickoff.dblocation import ServerUrl

    first = shared_token(ServerUrl(pg_url), "first-token-0123456789")
    rotated = cli("token", "--rotate", "--db", pg_url)
    assert rotated.code == 0, rotated.err
    new = rotated.out.strip()
    assert new != first
    assert shared_token(ServerUrl(pg_url), "ignored-0123456789") == new  # the next server's
    assert cli("token", "--db", pg_url).out.strip() == new  # this machine's token file
