"""docs/database.md: every ```sql block runs on a database a real Service wrote, and the
page documents every event type, payload field and projection column."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kickoff.audit import compact
from kickoff.events.model import EVENT_TYPES
from kickoff.projections.schema import PROJECTION_SCHEMA
from tests.audit.conftest import play

DOC = Path(__file__).resolve().parents[2] / "docs" / "database.md"
SQL_BLOCK = re.compile(r"```sql\n(.*?)```", re.DOTALL)


def blocks() -> list[str]:
    return SQL_BLOCK.findall(DOC.read_text())


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenario, played yesterday (so "yesterday" queries find it), then compacted."""
    yesterday = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    path = tmp_path_factory.mktemp("docs") / "kickoff.db"
    play(path, start=yesterday - timedelta(days=1))
    compact.compact(path, before=20, archive=path.with_name("archive.db"), now=yesterday)
    return path


def test_there_are_queries() -> None:
    assert len(blocks()) >= 8


@pytest.mark.parametrize("sql", blocks(), ids=lambda sql: sql.split("\n")[0][:40])
def test_query_runs_and_finds_something(db: Path, sql: str) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(sql).fetchall()  # one statement per block
    finally:
        conn.close()
    assert rows, "the query found nothing on a database that has every kind of event"
    assert all(any(value is not None for value in row) for row in rows)


def test_the_named_queries_give_sensible_answers(db: Path) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        per_type = dict((r[0], r[1]) for r in conn.execute(blocks()[0]))
        assert per_type["TaskSubmitted"] == 6 and per_type["ServerStarted"] == 2
        yesterday = next(s for s in blocks() if "date('now', '-1 day')" in s)
        assert sorted(r[0] for r in conn.execute(yesterday)) == ["beta", "gamma"]
        median = next(s for s in blocks() if "median_wait_s" in s)
        tags = {r[0]: r[1] for r in conn.execute(median)}
        assert set(tags) == {"(none)", "cpu", "gpu"} and all(v >= 0 for v in tags.values())
        failure = next(s for s in blocks() if "failure_pct" in s)
        rates = {r[1]: r[4] for r in conn.execute(failure)}
        assert rates == {"alpha": 100.0, "beta": 100.0, "gamma": 0.0}  # lost; exit 3; ok
    finally:
        conn.close()


def test_every_event_type_and_field_is_documented() -> None:
    text = DOC.read_text()
    for name, cls in EVENT_TYPES.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` (")), None)
        assert row is not None, f"{name} is not in the event table"
        assert f"({cls.VERSION})" in row, f"{name}: wrong version"
        for field in dataclasses.fields(cls):
            assert f"`{field.name}`" in row, f"{name}.{field.name} is not documented"


def test_every_projection_column_is_documented() -> None:
    text = DOC.read_text()
    for table, body in re.findall(
        r"CREATE TABLE (\w+) \((.*?)\) STRICT", PROJECTION_SCHEMA, re.DOTALL
    ):
        for line in body.strip().splitlines():
            column = line.split()[0]
            assert f"`{column}`" in text, f"{table}.{column} is not documented"
