"""Store fixtures: a database file in tmp_path, and an open Database on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kickoff.database import Database


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "kickoff.db"


@pytest.fixture
def database(db_path: Path) -> Iterator[Database]:
    db = Database(db_path)
    yield db
    db.close()
