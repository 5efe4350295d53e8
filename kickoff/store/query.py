"""A read as data: SQL, its parameters and the function that shapes its rows.

The same Query runs on a plain connection, SQLite's or PostgreSQL's (offline commands,
start-up, tests: `run`), and on the server's async reader (`Service.query`). Recorders and
projections make them; nothing here knows a table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

RowT = Sequence[Any]


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    params: tuple[Any, ...]
    shape: Callable[[list[RowT]], Any]


class Connection(Protocol):
    """What the rules need of a connection: sqlite3's, or PostgreSQL's through
    store/pgconnection.py (which takes the same SQL and raises the same DB-API errors)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...

    @property
    def in_transaction(self) -> bool: ...

    def getlimit(self, category: int, /) -> int: ...

    def close(self) -> None: ...


def run(conn: Connection, query: Query) -> Any:
    """Run a query on a synchronous connection."""
    return query.shape(conn.execute(query.sql, query.params).fetchall())
