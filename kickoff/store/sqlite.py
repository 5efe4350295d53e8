"""The SQLite recorder: every statement kickoff runs against the events table (and the
compaction records beside it) is here. Opening a file is store/connection.py's job, the
schema store/schema.py's, moving rows to an archive store/archive.py's.

Writes go in the caller's transaction. Bulk inserts bind many rows per statement, with a
zero-length blob for NULL (see NULL); the hot path encodes and hashes inline.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from kickoff.clock import to_text
from kickoff.errors import DatabaseRefused
from kickoff.events import codec
from kickoff.events.model import EVENT_TYPES, HAS_TASK_ID, HAS_WORKER_ID
from kickoff.store import schema
from kickoff.store.chain import (
    GENESIS,
    Encoded,
    Recorded,
    Row,
    Run,
    verified_submission,
)
from kickoff.store.dialect import SQLITE, Dialect, agreement_sql
from kickoff.store.query import Connection, Query, RowT
from kickoff.store.recorder import Agreement, Compaction, Recorder

INSERT_EVENTS = "INSERT INTO events (seq, at, type, version, task_id, worker_id, payload, hash)"
EVENT_VALUES = "(?, ?, ?, ?, nullif(?, x''), nullif(?, x''), ?, ?)"  # see NULL
MAX_ROWS_PER_INSERT = 512
# sqlite3 looks a None or a bytes parameter up in its adapter registry (~0.3 us each, a
# third of a row's insert); a bytearray it binds at once. So bulk inserts bind NULL, a
# zero-length blob, where a value is missing, and `nullif(?, x'')` makes it NULL again
# (no value of a text, integer or real column equals a blob); hashes go in as bytearrays.
NULL = bytearray()
COLUMNS = "seq, at, type, version, task_id, worker_id, payload, hash"
SELECT_TAIL = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
SELECT_HASH = "SELECT hash FROM events WHERE seq = ?"
SELECT_FROM = f"SELECT {COLUMNS} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
HAS_RUNS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'compacted_runs'"
SELECT_RUNS = (
    "SELECT first_seq, last_seq, last_hash, compaction_id FROM compacted_runs ORDER BY first_seq"
)
SELECT_RUN_BEFORE = (  # the compacted run a seq falls in, if any
    "SELECT last_seq, last_hash FROM compacted_runs WHERE first_seq <= ? "
    "ORDER BY first_seq DESC LIMIT 1"
)
SELECT_COMPACTIONS = (
    "SELECT id, at, first_seq, last_seq, count, digest, archive, before_seq FROM compactions "
    "ORDER BY id"
)
SELECT_SUBMISSION = (  # a task's TaskSubmitted row, and the hash it chains to
    f"SELECT {', '.join('s.' + c for c in COLUMNS.split(', '))}, "
    "coalesce((SELECT p.hash FROM events p WHERE p.seq = s.seq - 1), "
    "(SELECT r.last_hash FROM compacted_runs r WHERE r.first_seq <= s.seq - 1 "
    "AND r.last_seq = s.seq - 1 ORDER BY r.first_seq DESC LIMIT 1)) "
    "FROM events s WHERE s.task_id = ? AND s.type = 'TaskSubmitted'"
)
INSERT_COMPACTION_COPY = (
    "INSERT INTO compactions (id, at, first_seq, last_seq, count, digest, archive, before_seq) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_RUN_COPY = (
    "INSERT INTO compacted_runs (first_seq, last_seq, last_hash, compaction_id) VALUES (?, ?, ?, ?)"
)
SELECT_LAST_OF_EACH_WORKER = (
    "SELECT max(seq) FROM events WHERE type = ? AND seq < ? GROUP BY worker_id"
)


SELECT_SPARSE = (  # seq as the rowid's range: one pass, for types no index covers
    f"SELECT {COLUMNS} FROM events WHERE seq <= ? AND (type IN ('GroupCreated', "
    "'WorkerLost', 'WorkerStopped', 'TaskFailed', 'TaskCancelled') "
    "OR (type = 'TaskClaimed' AND instr(payload, '\"ahead_of\"') > 0) "
    # a completion that did not succeed (canonical JSON: each key once, outside strings)
    "OR (type = 'TaskCompleted' AND (instr(payload, '\"timed_out\":true') > 0 OR "
    "(instr(payload, '\"exit_code\":0,') = 0 AND instr(payload, '\"exit_code\":0}') = 0)))"
    ") ORDER BY seq"
)


# Registrations and tag changes have a partial index (schema.WORKER_CHANGES_INDEX), which
# the planner takes only for a WHERE that spells its condition exactly, and not while a
# range on seq (the rowid) looks cheaper: a select of those types says both (`+seq`).
WORKER_CHANGES = frozenset(("WorkerRegistered", "WorkerTagsChanged"))


def row_of(r: RowT) -> Row:
    """A Row from the COLUMNS of a result row."""
    return Row(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bytes(r[7]))


def _rows(found: list[RowT]) -> list[Row]:
    return [row_of(r) for r in found]


def _submission(found: list[RowT]) -> Any:
    if len(found) != 1:
        raise DatabaseRefused(f"the log holds {len(found)} submissions of this task")
    r = found[0]
    row = row_of(r)
    prev = GENESIS if row.seq == 1 else (None if r[8] is None else bytes(r[8]))
    return verified_submission(row, prev)


class SqliteRecorder(Recorder):
    """The events table of one SQLite database, through one connection (PostgreSQL's
    recorder, store/postgres.py, is this one in its dialect, but for the engine's own)."""

    dialect: Dialect = SQLITE

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._last_seq, self._last_hash = self._tail()

    # -- writing ---------------------------------------------------------------

    def _tail(self) -> tuple[int, bytes]:
        row = self.conn.execute(SELECT_TAIL).fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def last_hash(self) -> bytes:
        return self._last_hash

    def reset(self) -> None:
        self._last_seq, self._last_hash = self._tail()

    def encode(self, prev: bytes, after_seq: int, records: Sequence[Recorded]) -> Encoded:
        return Encoded(after_seq, prev, *encode_rows(prev, after_seq, records))

    def insert(self, records: list[Recorded], encoded: Encoded | None = None) -> list[Row]:
        if encoded is None:
            rows, params = encode_rows(self._last_hash, self._last_seq, records)
        elif encoded.after_seq != self._last_seq or encoded.prev != self._last_hash:
            raise DatabaseRefused(
                f"log append out of order: rows follow seq {encoded.after_seq}, "
                f"the log ends at {self._last_seq}"
            )
        else:
            rows, params = encoded.rows, encoded.params
        self._insert(rows, params)
        if rows:
            self._last_seq, self._last_hash = rows[-1].seq, rows[-1].hash
        return rows

    def copy(self, rows: list[Row]) -> None:
        """Append rows as another log stores them (`kickoff migrate`: their hashes kept,
        checked against the chain by the reader), after the tail; in the caller's
        transaction."""
        if not rows:
            return
        if rows[0].seq <= self._last_seq:
            raise DatabaseRefused(
                f"log copy out of order: row {rows[0].seq} after seq {self._last_seq}"
            )
        params: list[object] = []
        for r in rows:
            task_id = NULL if r.task_id is None else r.task_id
            worker_id = NULL if r.worker_id is None else r.worker_id
            params.extend((*r[:4], task_id, worker_id, r.payload, bytearray(r.hash)))
        self._insert(rows, params)
        self._last_seq, self._last_hash = rows[-1].seq, rows[-1].hash

    def copy_compactions(self, compactions: list[Compaction], runs: list[Run]) -> None:
        """Record another log's compactions and their runs as they are (`migrate`)."""
        for c in compactions:
            record = (c.id, c.at, c.first_seq, c.last_seq, c.count, bytearray(c.digest))
            self.conn.execute(INSERT_COMPACTION_COPY, (*record, c.archive, c.before_seq))
        for r in runs:
            self.conn.execute(INSERT_RUN_COPY, (*r[:2], bytearray(r.last_hash), r.compaction_id))

    def _insert(self, rows: list[Row], params: list[object]) -> None:
        """Write the rows (`params`: theirs for EVENT_VALUES, as encode_rows made them)."""
        insert_rows(self.conn, INSERT_EVENTS, EVENT_VALUES, params)

    # -- reading, as queries -----------------------------------------------------

    def select(
        self,
        *,
        after_seq: int = 0,
        until_seq: int | None = None,
        since: str | None = None,
        until: str | None = None,
        types: Sequence[str] = (),
        task_id: int | None = None,
        worker_id: str | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> Query:
        seq = "seq"
        where: list[str] = []
        params: list[object] = []
        if types:
            known = [t for t in types if t in EVENT_TYPES]  # names, inlined (see _partial)
            where.append(
                f"type IN ({', '.join(map(repr, known))})" if known else self.dialect.false
            )
            if set(known) <= WORKER_CHANGES:
                where.append(f"type IN ({', '.join(map(repr, sorted(WORKER_CHANGES)))})")
                seq = "+seq"
        where.append(f"{seq} > ?")
        params.append(after_seq)
        for clause, value in (
            (f"{seq} <= ?", until_seq),
            ("at >= ?", since),
            ("at <= ?", until),
            ("task_id = ?", task_id),
            ("worker_id = ?", worker_id),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        order = "DESC" if descending else "ASC"
        return Query(
            f"SELECT {COLUMNS} FROM events WHERE {' AND '.join(where)} "
            f"ORDER BY seq {order} LIMIT ?",
            (*params, self.dialect.no_limit if limit is None else limit),
            _rows,
        )

    def count(
        self,
        *,
        since: str | None = None,
        types: Sequence[str] = (),
        after_seq: int = 0,
        worker_id: str | None = None,
    ) -> Query:
        where: list[str] = [self.dialect.true]
        params: list[object] = []
        for clause, value in (("at >= ?", since), ("worker_id = ?", worker_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        if after_seq:
            where.append("seq > ?")
            params.append(after_seq)
        if types:
            where.append(f"type IN ({', '.join('?' * len(types))})")
            params.extend(types)
        return Query(
            f"SELECT count(*) FROM events WHERE {' AND '.join(where)}",
            tuple(params),
            lambda found: int(found[0][0]),
        )

    def tail(self) -> Query:
        return Query("SELECT coalesce(max(seq), 0) FROM events", (), lambda found: found[0][0])

    def last_task_id(self) -> Query:
        return Query(
            "SELECT coalesce(max(task_id), 0) FROM events WHERE task_id IS NOT NULL",
            (),
            lambda found: int(found[0][0]),
        )

    def sparse_rows(self, *, until_seq: int) -> Query:
        return Query(SELECT_SPARSE, (until_seq,), _rows)

    def first_at(self) -> Query:
        return Query(
            "SELECT at FROM events ORDER BY seq LIMIT 1",
            (),
            lambda found: found[0][0] if found else None,
        )

    def submission(self, task_id: int) -> Query:
        return Query(SELECT_SUBMISSION, (task_id,), _submission)

    # -- walking the log ---------------------------------------------------------

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # a read: nothing to lose
                    self.conn.execute("COMMIT")

    def rows(
        self, after_seq: int = 0, *, until_seq: int | None = None, chunk: int = 10_000
    ) -> Iterator[Row]:
        last = after_seq
        limit = until_seq if until_seq is not None else (1 << 62)
        while True:
            batch = self.conn.execute(SELECT_FROM, (last, limit, chunk)).fetchall()
            for r in batch:
                yield Row(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bytes(r[7]))
            if len(batch) < chunk:
                return
            last = batch[-1][0]

    def _has_runs(self) -> bool:
        return self.conn.execute(HAS_RUNS).fetchone() is not None  # v1, never compacted

    def hash_at(self, seq: int) -> bytes | None:
        if seq == 0:
            return GENESIS
        row = self.conn.execute(SELECT_HASH, (seq,)).fetchone()
        if row is not None:
            return bytes(row[0])
        if not self._has_runs():
            return None
        run = self.conn.execute(SELECT_RUN_BEFORE, (seq,)).fetchone()
        return bytes(run[1]) if run is not None and run[0] == seq else None

    def runs(self) -> list[Run]:
        if not self._has_runs():
            return []
        return [Run(a, b, bytes(h), c) for a, b, h, c in self.conn.execute(SELECT_RUNS)]

    def compactions(self) -> list[Compaction]:
        if not self._has_runs():
            return []
        return [
            Compaction(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6], r[7])
            for r in self.conn.execute(SELECT_COMPACTIONS)
        ]

    def last_of_each_worker(self, type_name: str, *, before_seq: int) -> set[int]:
        found = self.conn.execute(SELECT_LAST_OF_EACH_WORKER, (type_name, before_seq))
        return {r[0] for r in found}

    def disagreeing(self, agreement: Agreement, *, checkpoint_seq: int) -> Iterator[Any]:
        sql = agreement_sql(agreement, self.dialect)
        try:
            for (key,) in self.conn.execute(sql, {"seq": checkpoint_seq}):
                yield key
        except sqlite3.OperationalError as exc:
            if "JSON" not in str(exc):
                raise
            yield from self._malformed(agreement)  # a payload that is not JSON at all

    def _malformed(self, agreement: Agreement) -> Iterator[Any]:
        """The keys of rows whose events include a payload that is not JSON."""
        a = agreement
        sql = (
            f"SELECT DISTINCT p.{a.key} FROM {a.table} p JOIN events e ON e.{a.by} = p.{a.key} "
            f"WHERE ({a.where}) AND NOT json_valid(e.payload)"
        )
        for (key,) in self.conn.execute(sql):
            yield key

    # -- the file ----------------------------------------------------------------

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")]

    def quick_check(self) -> str | None:
        """SQLite's quick_check (every page, b-tree and record format; O(file size)):
        None when the file is whole, else what is wrong."""
        try:
            found = [r[0] for r in self.conn.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            return str(exc)
        return None if found == ["ok"] else "; ".join(" ".join(f.split()) for f in found)

    def schema_problems(self) -> list[str]:
        """SQLite's integrity_check, and every trigger of the schema in place exactly as
        written."""
        problems = [
            f"integrity_check: {r[0]}"
            for r in self.conn.execute("PRAGMA integrity_check(20)")
            if r[0] != "ok"
        ]
        found = dict(
            self.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        )
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        expected: dict[str, str] = schema.TRIGGERS
        if version < schema.TRIGGERS_SINCE:  # not opened by a writer since: as written
            expected = dict.fromkeys(schema.V1_TRIGGERS, "")
        for name, sql in expected.items():
            if name not in found:
                problems.append(f"trigger {name} is missing: {_guards(name)}")
            elif sql and not schema.same_sql(found[name], sql):
                problems.append(f"trigger {name} was changed: {_guards(name)}")
        return problems


def _guards(trigger: str) -> str:
    table, verb = trigger.rsplit("_no_", 1)
    return f"the {table} table no longer refuses every {verb.upper()} it must"


def encode_rows(
    prev: bytes, after_seq: int, records: Sequence[Recorded]
) -> tuple[list[Row], list[object]]:
    """The rows, and their parameters for EVENT_VALUES one after the other (see NULL).

    The hot path of every write, so chain.to_rows is inlined here (the same bytes:
    tests/store/test_recorder.py holds it to them).

    Raises:
        DatabaseRefused: a gap or a repeat in seq.
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


def insert_rows(conn: Connection, insert: str, values: str, params: list[object]) -> None:
    """`insert` (an INSERT up to VALUES) of rows whose `params` follow one another, many
    rows per statement (the projections' bulk inserts use it too).

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
