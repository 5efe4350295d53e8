"""A read as data: SQL, its parameters and the function that shapes its rows.

The same Query runs on a plain connection (offline commands, start-up, tests: `run`) and on
the server's async reader (`Service.query`). Recorders and projections make them; nothing
here knows a table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

RowT = Sequence[Any]


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    params: tuple[Any, ...]
    shape: Callable[[list[RowT]], Any]


def run(conn: sqlite3.Connection, query: Query) -> Any:
    """Run a query on a synchronous connection."""
    return query.shape(conn.execute(query.sql, query.params).fetchall())
