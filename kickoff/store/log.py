"""The append-only event log: gapless seq, UTC time, type, ids, payload, chained hash.

`Log.append` writes inside the caller's transaction (see `Database.write`); `read_log`
iterates from a seq on in bounded chunks so a million-event log never sits in memory.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from kickoff.clock import from_text, to_text
from kickoff.errors import DatabaseRefused
from kickoff.events import codec
from kickoff.events import model as ev
from kickoff.events.model import HAS_TASK_ID, HAS_WORKER_ID, Event

GENESIS = bytes(32)

INSERT_EVENTS = "INSERT INTO events (seq, at, type, version, task_id, worker_id, payload, hash)"
EVENT_VALUES = "(?, ?, ?, ?, nullif(?, x''), nullif(?, x''), ?, ?)"  # see NULL
MAX_ROWS_PER_INSERT = 512
# sqlite3 looks a None or a bytes parameter up in its adapter registry (~0.3 us each, a
# third of a row's insert); a bytearray it binds at once. So bulk inserts bind NULL, a
# zero-length blob, where a value is missing, and `nullif(?, x'')` makes it NULL again
# (no value of a text, integer or real column equals a blob); hashes go in as bytearrays.
NULL = bytearray()
SELECT_TAIL = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
SELECT_HASH = "SELECT hash FROM events WHERE seq = ?"
SELECT_FIRST_HASH = "SELECT hash FROM events ORDER BY seq LIMIT 1"  # the log's identity
SELECT_RUN_BEFORE = (  # the compacted run a seq falls in, if any (see hash_at)
    "SELECT first_seq, last_seq, last_hash FROM compacted_runs WHERE first_seq <= ? "
    "ORDER BY first_seq DESC LIMIT 1"
)
HAS_RUNS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'compacted_runs'"
SELECT_RUNS = "SELECT first_seq, last_seq, last_hash FROM compacted_runs ORDER BY first_seq"
SELECT_SUBMISSION = (  # a task's TaskSubmitted row, and the hash it chains to
    "SELECT s.seq, s.at, s.type, s.version, s.task_id, s.worker_id, s.payload, s.hash, "
    "coalesce((SELECT p.hash FROM events p WHERE p.seq = s.seq - 1), "
    "(SELECT r.last_hash FROM compacted_runs r WHERE r.first_seq <= s.seq - 1 "
    "AND r.last_seq = s.seq - 1 ORDER BY r.first_seq DESC LIMIT 1)) "
    "FROM events s WHERE s.task_id = ? AND s.type = 'TaskSubmitted'"
)
SELECT_FROM = (
    "SELECT seq, at, type, version, task_id, worker_id, payload, hash FROM events "
    "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)


class Recorded(NamedTuple):
    """An event with its place in the log (a tuple: one is made per event on the hot
    path, at a third of a frozen dataclass's cost)."""

    seq: int
    at: datetime
    event: Event


class Encoded(NamedTuple):
    """Records encoded for the log ahead of their write (see `encode`)."""

    after_seq: int  # the row they follow
    prev: bytes  # that row's hash
    rows: list[Row]
    params: list[object]  # the rows' insert parameters, flat


def encode(prev: bytes, after_seq: int, records: Sequence[Recorded]) -> Encoded:
    """Encode records into the rows that follow the row `after_seq`, hashed `prev`.

    The server encodes on its event loop as it records, so that the writer thread, the
    bottleneck of a bulk submit, only inserts. Raises: DatabaseRefused on a seq gap.
    """
    return Encoded(after_seq, prev, *_encode(prev, after_seq, records))


def joined(parts: Sequence[Encoded]) -> Encoded:
    """Consecutive encoded batches as one.

    Raises:
        DatabaseRefused: a part does not follow the one before (a bug: never write it).
    """
    first = parts[0]
    rows, params = list(first.rows), list(first.params)
    for part in parts[1:]:
        if part.after_seq != rows[-1].seq or part.prev != rows[-1].hash:
            raise DatabaseRefused(f"encoded batches out of order at seq {part.after_seq + 1}")
        rows.extend(part.rows)
        params.extend(part.params)
    return Encoded(first.after_seq, first.prev, rows, params)


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
    return to_rows(prev, record.seq - 1, [record])[0]


def to_rows(prev: bytes, after_seq: int, records: Sequence[Recorded]) -> list[Row]:
    """Encode records into the rows that follow the row `after_seq`, hashed `prev`.

    Raises:
        DatabaseRefused: a gap or a repeat in seq (a bug, or a second writer).
    """
    return _encode(prev, after_seq, records)[0]


def _encode(
    prev: bytes, after_seq: int, records: Sequence[Recorded]
) -> tuple[list[Row], list[object]]:
    """The rows, and their parameters for EVENT_VALUES one after the other (see NULL).

    The hot path of every write, so `chain_hash` and `Row()` are inlined (the same bytes:
    tests/store/test_log.py checks each row's hash against chain_hash).
    """
    rows: list[Row] = []
    params: list[object] = []  # flat: a tuple per row kept alive is work for the collector
    add_row, add_params = rows.append, params.extend
    sha256, new_row, encoders = hashlib.sha256, tuple.__new__, codec.PAYLOAD_ENCODERS
    has_task, has_worker = HAS_TASK_ID, HAS_WORKER_ID
    seq, last_at, at = after_seq, None, ""
    for record in records:
        seq += 1
        if record.seq != seq:
            raise DatabaseRefused(f"log append out of order: got seq {record.seq}, want {seq}")
        if record.at is not last_at:  # a batch mostly shares one time
            last_at, at = record.at, to_text(record.at)
        event: Any = record.event
        cls = type(event)
        payload = encoders[cls](event).decode()
        task_id = event.task_id if cls in has_task else None
        worker_id = event.worker_id if cls in has_worker else None
        type_name, version = cls.__name__, cls.VERSION
        text = f"{seq}\x1f{at}\x1f{type_name}\x1f{version}\x1f{task_id}\x1f{worker_id}\x1f{payload}"
        prev = sha256(prev + text.encode()).digest()
        add_row(new_row(Row, (seq, at, type_name, version, task_id, worker_id, payload, prev)))
        add_params(
            (
                seq,
                at,
                type_name,
                version,
                NULL if task_id is None else task_id,
                NULL if worker_id is None else worker_id,
                payload,
                bytearray(prev),
            )
        )
    return rows, params


@lru_cache(maxsize=64)
def _values_sql(insert: str, values: str, count: int) -> str:
    return f"{insert} VALUES {', '.join([values] * count)}"


def insert_rows(conn: sqlite3.Connection, insert: str, values: str, params: list[object]) -> None:
    """`insert` (an INSERT up to VALUES) of rows whose `params` follow one another, many
    rows per statement.

    One statement per row (executemany) costs a Python round trip and a GIL hand-off per
    row; here a batch of 1,000 takes six statements. Bind NULL for a missing value (see
    NULL) where `values` says `nullif(?, x'')`. Chunks are powers of two so that at most
    ten statement texts per table reach the statement cache.
    """
    width = values.count("?")
    most = MAX_ROWS_PER_INSERT
    while most > 1 and most * width > conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER):
        most //= 2
    done, total = 0, len(params) // width
    while done < total:
        while most > total - done:
            most //= 2
        chunk = params[done * width : (done + most) * width]
        conn.execute(_values_sql(insert, values, most), chunk)
        done += most


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

    def append(self, records: list[Recorded], encoded: Encoded | None = None) -> list[Row]:
        """Insert records in the current transaction; their seqs must follow the tail.

        `encoded` is the records already encoded (see `encode`); it must follow the tail.

        Raises:
            DatabaseRefused: a gap or a repeat in seq (a bug, or a second writer).
        """
        if encoded is None:
            rows, params = _encode(self.last_hash, self.last_seq, records)
        elif encoded.after_seq != self.last_seq or encoded.prev != self.last_hash:
            raise DatabaseRefused(
                f"log append out of order: rows follow seq {encoded.after_seq}, "
                f"the log ends at {self.last_seq}"
            )
        else:
            rows, params = encoded.rows, encoded.params
        insert_rows(self.conn, INSERT_EVENTS, EVENT_VALUES, params)
        if rows:
            self.last_seq, self.last_hash = rows[-1].seq, rows[-1].hash
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


def broken(seq: int, why: str = "its hash does not match its contents and the row before") -> str:
    """How a row that does not verify is reported."""
    return f"the log does not verify at seq {seq} ({why}); run `kickoff verify`"


def compacted_runs(conn: sqlite3.Connection) -> dict[int, tuple[int, bytes]]:
    """Archived seqs: first seq of each run -> (its last seq, the last row's hash)."""
    if conn.execute(HAS_RUNS).fetchone() is None:  # a v1 database never compacted
        return {}
    return {first: (last, bytes(h)) for first, last, h in conn.execute(SELECT_RUNS)}


def hash_at(conn: sqlite3.Connection, seq: int) -> bytes | None:
    """The hash the row after `seq` chains to: row `seq`'s, or the recorded last hash of
    the compacted run that ends at `seq`; GENESIS for 0; None if neither is there."""
    if seq == 0:
        return GENESIS
    row = conn.execute(SELECT_HASH, (seq,)).fetchone()
    if row is not None:
        return bytes(row[0])
    if conn.execute(HAS_RUNS).fetchone() is None:
        return None
    run = conn.execute(SELECT_RUN_BEFORE, (seq,)).fetchone()
    return bytes(run[2]) if run is not None and run[1] == seq else None


def verified(
    rows: Iterable[Row], prev: bytes, after_seq: int, runs: dict[int, tuple[int, bytes]]
) -> Iterator[Row]:
    """The rows, each checked to chain to the one before (starting after `after_seq`,
    hashed `prev`), across compacted runs.

    Raises:
        DatabaseRefused: a row that does not verify, or a seq missing from the log.
    """
    expect = after_seq + 1
    for row in rows:
        while row.seq > expect:  # archived seqs: chain over their run
            run = runs.get(expect)
            if run is None or run[0] >= row.seq:
                raise DatabaseRefused(broken(expect, "the row is missing from the log"))
            expect, prev = run[0] + 1, run[1]
        if row.seq < expect or row.expected_hash(prev) != row.hash:
            raise DatabaseRefused(broken(row.seq))
        prev, expect = row.hash, row.seq + 1
        yield row


def read_verified(
    conn: sqlite3.Connection, after_seq: int = 0, *, until_seq: int | None = None
) -> Iterator[Row]:
    """Rows with seq > after_seq (and <= until_seq), in order, each checked against the
    chain (the row `after_seq` itself is trusted: check it with `verify_row`).

    Raises:
        DatabaseRefused: a row that does not verify, or the row it follows is missing.
    """
    prev = hash_at(conn, after_seq)
    if prev is None:
        raise DatabaseRefused(broken(after_seq, "the row is missing from the log"))
    runs = compacted_runs(conn)
    yield from verified(read_rows(conn, after_seq, until_seq=until_seq), prev, after_seq, runs)


def submission(rows: Sequence[Sequence[Any]]) -> ev.TaskSubmitted:
    """A task's submission from its SELECT_SUBMISSION row, checked against the chain.

    Raises:
        DatabaseRefused: no such row, or it does not verify (its command is not to be
            trusted: never hand it to a worker).
    """
    if len(rows) != 1:
        raise DatabaseRefused(f"the log holds {len(rows)} submissions of this task")
    r = rows[0]
    row = Row(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bytes(r[7]))
    prev = GENESIS if row.seq == 1 else (bytes(r[8]) if r[8] is not None else None)
    if prev is None:
        raise DatabaseRefused(broken(row.seq - 1, "the row is missing from the log"))
    if row.expected_hash(prev) != row.hash:
        raise DatabaseRefused(broken(row.seq))
    event = row.decode().event
    if not isinstance(event, ev.TaskSubmitted) or event.task_id != row.task_id:
        raise DatabaseRefused(broken(row.seq, "its payload does not match its row"))
    return event
