"""The append-only event log: gapless seq, UTC time, type, ids, payload, chained hash.

`Log.append` writes inside the caller's transaction (see `Database.write`); `read_log`
iterates from a seq on in bounded chunks so a million-event log never sits in memory.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from kickoff.clock import from_text, to_text
from kickoff.errors import DatabaseRefused
from kickoff.events import codec
from kickoff.events.model import Event, task_id_of, worker_id_of

GENESIS = bytes(32)

INSERT_EVENT = (
    "INSERT INTO events (seq, at, type, version, task_id, worker_id, payload, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT_TAIL = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
SELECT_FROM = (
    "SELECT seq, at, type, version, task_id, worker_id, payload, hash FROM events "
    "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event with its place in the log."""

    seq: int
    at: datetime
    event: Event


class Row(NamedTuple):
    """A raw log row, as stored (a tuple: it is made once per event on the hot path)."""

    seq: int
    at: str
    type: str
    version: int
    task_id: int | None
    worker_id: str | None
    payload: str
    hash: bytes

    def expected_hash(self, prev: bytes) -> bytes:
        """The hash this row must carry after a row hashed `prev` (verify compares)."""
        return chain_hash(prev, *self[:7])

    def decode(self) -> Recorded:
        return Recorded(
            self.seq, from_text(self.at), codec.decode(self.type, self.version, self.payload)
        )


def chain_hash(
    prev: bytes,
    seq: int,
    at: str,
    type_name: str,
    version: int,
    task_id: int | None,
    worker_id: str | None,
    payload: str,
) -> bytes:
    """sha256 over the previous hash and every column of the row."""
    text = f"{seq}\x1f{at}\x1f{type_name}\x1f{version}\x1f{task_id}\x1f{worker_id}\x1f{payload}"
    return hashlib.sha256(prev + text.encode()).digest()


def to_row(prev: bytes, record: Recorded) -> Row:
    """Encode a record into the row that follows a row hashed `prev`."""
    type_name, version, payload = codec.encode(record.event)
    at = to_text(record.at)
    task_id, worker_id = task_id_of(record.event), worker_id_of(record.event)
    digest = chain_hash(prev, record.seq, at, type_name, version, task_id, worker_id, payload)
    return Row(record.seq, at, type_name, version, task_id, worker_id, payload, digest)


class Log:
    """Appends to the events table, keeping the tail seq and hash in memory."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.last_seq, self.last_hash = self._tail()

    def _tail(self) -> tuple[int, bytes]:
        row = self.conn.execute(SELECT_TAIL).fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    def reset(self) -> None:
        """Re-read the tail (after a rolled-back transaction)."""
        self.last_seq, self.last_hash = self._tail()

    def append(self, records: list[Recorded]) -> list[Row]:
        """Insert records in the current transaction; their seqs must follow the tail.

        Raises:
            DatabaseRefused: a gap or a repeat in seq (a bug, or a second writer).
        """
        rows: list[Row] = []
        prev, seq = self.last_hash, self.last_seq
        for record in records:
            seq += 1
            if record.seq != seq:
                raise DatabaseRefused(f"log append out of order: got seq {record.seq}, want {seq}")
            row = to_row(prev, record)
            rows.append(row)
            prev = row.hash
        self.conn.executemany(INSERT_EVENT, rows)
        self.last_seq, self.last_hash = seq, prev
        return rows


def read_rows(
    conn: sqlite3.Connection,
    after_seq: int = 0,
    *,
    until_seq: int | None = None,
    chunk: int = 10_000,
) -> Iterator[Row]:
    """Raw rows with seq > after_seq (and <= until_seq), in order, a chunk at a time."""
    last = after_seq
    limit = until_seq if until_seq is not None else (1 << 62)
    while True:
        batch = conn.execute(SELECT_FROM, (last, limit, chunk)).fetchall()
        for r in batch:
            yield Row(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bytes(r[7]))
        if len(batch) < chunk:
            return
        last = batch[-1][0]


def read_log(
    conn: sqlite3.Connection, after_seq: int = 0, *, until_seq: int | None = None
) -> Iterator[Recorded]:
    """Decoded events with seq > after_seq (and <= until_seq), in order."""
    for row in read_rows(conn, after_seq, until_seq=until_seq):
        yield row.decode()
