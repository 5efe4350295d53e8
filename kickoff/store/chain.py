"""The log's rows and their hash chain, the same for every backend. No I/O here.

A `Recorded` is an event with its seq and time; a `Row` is how the log stores it (the
payload as canonical JSON, the hash chained to the row before). `verified` checks rows
against the chain as they are read, across the seqs a compaction archived.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from kickoff.clock import from_text, to_text
from kickoff.errors import DatabaseRefused
from kickoff.events import codec
from kickoff.events import model as ev
from kickoff.events.model import HAS_TASK_ID, HAS_WORKER_ID, Event

GENESIS = bytes(32)  # what the first row chains to


class Recorded(NamedTuple):
    """An event with its place in the log (a tuple: one is made per event on the hot
    path, at a third of a frozen dataclass's cost)."""

    seq: int
    at: datetime
    event: Event


class Row(NamedTuple):
    """A log row, as stored (a tuple: it is made once per event on the hot path)."""

    seq: int
    at: str
    type: str
    version: int
    task_id: int | None
    worker_id: str | None
    payload: str
    hash: bytes

    def expected_hash(self, prev: bytes) -> bytes:
        """The hash this row must carry after a row hashed `prev`."""
        return chain_hash(prev, *self[:7])

    def decode(self) -> Recorded:
        """Raises: DatabaseRefused: the payload does not decode under its version."""
        return Recorded(
            self.seq, from_text(self.at), codec.decode(self.type, self.version, self.payload)
        )


class Encoded(NamedTuple):
    """Records encoded for the log ahead of their write (see Recorder.encode)."""

    after_seq: int  # the row they follow
    prev: bytes  # that row's hash
    rows: list[Row]
    params: list[object]  # the rows' insert parameters, flat, as the backend binds them


class Run(NamedTuple):
    """Consecutive seqs a compaction archived; the next row in the log chains to
    `last_hash`."""

    first_seq: int
    last_seq: int
    last_hash: bytes
    compaction_id: int


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


def to_rows(prev: bytes, after_seq: int, records: Sequence[Recorded]) -> list[Row]:
    """The rows that follow the row `after_seq`, hashed `prev` (the plain definition; the
    backends' encoders do the same faster, and tests hold them to this).

    Raises:
        DatabaseRefused: a gap or a repeat in seq.
    """
    rows: list[Row] = []
    for seq, record in enumerate(records, after_seq + 1):
        if record.seq != seq:
            raise DatabaseRefused(f"log append out of order: got seq {record.seq}, want {seq}")
        event: Any = record.event
        cls = type(event)
        task_id = event.task_id if cls in HAS_TASK_ID else None
        worker_id = event.worker_id if cls in HAS_WORKER_ID else None
        type_name, version, payload = codec.encode(event)
        at = to_text(record.at)
        prev = chain_hash(prev, seq, at, type_name, version, task_id, worker_id, payload)
        rows.append(Row(seq, at, type_name, version, task_id, worker_id, payload, prev))
    return rows


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


def broken(seq: int, why: str = "its hash does not match its contents and the row before") -> str:
    """How a row that does not verify is reported."""
    return f"the log does not verify at seq {seq} ({why}); run `kickoff verify`"


def verified(
    rows: Iterable[Row], prev: bytes, after_seq: int, runs: Mapping[int, Run]
) -> Iterator[Row]:
    """The rows, each checked to chain to the one before (starting after `after_seq`,
    hashed `prev`), across compacted runs (by first seq).

    Raises:
        DatabaseRefused: a row that does not verify, or a seq missing from the log.
    """
    expect = after_seq + 1
    for row in rows:
        while row.seq > expect:  # archived seqs: chain over their run
            run = runs.get(expect)
            if run is None or run.last_seq >= row.seq:
                raise DatabaseRefused(broken(expect, "the row is missing from the log"))
            expect, prev = run.last_seq + 1, run.last_hash
        if row.seq < expect or row.expected_hash(prev) != row.hash:
            raise DatabaseRefused(broken(row.seq))
        prev, expect = row.hash, row.seq + 1
        yield row


def verified_submission(row: Row, prev: bytes | None) -> ev.TaskSubmitted:
    """A task's submission, its row checked against the chain (`prev`: the hash it chains
    to, None when that row is missing).

    Raises:
        DatabaseRefused: it does not verify: its command is never to be handed out.
    """
    if prev is None:
        raise DatabaseRefused(broken(row.seq - 1, "the row is missing from the log"))
    if row.expected_hash(prev) != row.hash:
        raise DatabaseRefused(broken(row.seq))
    event = row.decode().event
    if not isinstance(event, ev.TaskSubmitted) or event.task_id != row.task_id:
        raise DatabaseRefused(broken(row.seq, "its payload does not match its row"))
    return event
