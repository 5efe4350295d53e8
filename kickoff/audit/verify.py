"""`kickoff verify`: is this log exactly what kickoff wrote, and do the projections follow it?

Integrity, seq continuity (archived seqs accounted for), the hash chain, payloads, the
fold and a fresh rebuild of the projections, all read-only in one read transaction (safe
and consistent on a live server's database). Each problem names its seq where it has one.
"""

from __future__ import annotations

import bisect
import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from kickoff.audit.fresh import Builder
from kickoff.database import SCHEMA_VERSION, open_connection, recorder_of
from kickoff.dblocation import Location
from kickoff.errors import DatabaseRefused
from kickoff.events.model import task_id_of, worker_id_of
from kickoff.projections.schema import RESOURCES_DOWNGRADE, WORKFLOW_DOWNGRADE
from kickoff.state.fold import State, apply
from kickoff.store.archive import archived_rows, open_archive
from kickoff.store.chain import GENESIS, Recorded, Row, Run
from kickoff.store.query import run as run_query
from kickoff.store.recorder import Compaction
from kickoff.store.sqlite import SqliteRecorder

CHECKS: dict[str, str] = {
    "integrity": "the engine's own check (SQLite's integrity_check); the log's append-only "
    "triggers are in place",
    "sequence": "seqs start at 1 and have no gaps",
    "chain": "every row's hash chains to the row before it",
    "payloads": "every payload decodes under its version and matches its row",
    "fold": "the state fold accepts every event in order",
    "projections": "tasks, workers, task_counts, groups and projection_state equal a fresh rebuild",
    "archive": "archived heartbeats match their compaction records",
}
COMPARED = (
    ("tasks", "id"),
    ("workers", "id"),
    ("task_counts", "state"),
    ("groups", "id"),
    ("projection_state", "name"),
)
MAX_PROBLEMS = 50  # per check; the rest are counted


@dataclass(frozen=True, slots=True)
class Problem:
    check: str
    seq: int | None
    message: str


@dataclass(slots=True)
class Report:
    """What verify found: problems (none means all good), counts and notes."""

    path: Location
    events: int = 0
    last_seq: int = 0
    archived: int = 0  # seqs missing from the log that compactions account for
    archive_checked: int = 0  # of those, rows read back from an archive and checked
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ran: set[str] = field(default_factory=set)
    suppressed: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        return min((p.seq for p in self.problems if p.seq is not None), default=None)

    def add(self, check: str, seq: int | None, message: str) -> None:
        if sum(1 for p in self.problems if p.check == check) >= MAX_PROBLEMS:
            self.suppressed[check] = self.suppressed.get(check, 0) + 1
            return
        self.problems.append(Problem(check, seq, message))

    def status(self, check: str) -> str:
        if any(p.check == check for p in self.problems):
            return "failed"
        return "ok" if check in self.ran else "skipped"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "path": str(self.path),
            "events": self.events,
            "last_seq": self.last_seq,
            "first_bad_seq": self.first_bad_seq,
            "archived": {"seqs": self.archived, "checked": self.archive_checked},
            "checks": {name: self.status(name) for name in CHECKS if self._relevant(name)},
            "problems": [
                {"check": p.check, "seq": p.seq, "message": p.message}
                for p in sorted(self.problems, key=_order)
            ],
            "more_problems": dict(self.suppressed),
            "notes": list(self.notes),
        }

    def _relevant(self, name: str) -> bool:
        return name != "archive" or "archive" in self.ran or self.status(name) == "failed"


def _order(p: Problem) -> tuple[int, int]:
    return (0 if p.seq is not None else 1, p.seq or 0)


class _Archives:
    """The archive files compactions wrote (or --archive names), opened read-only on demand."""

    def __init__(
        self, records: Sequence[Compaction], extra: Sequence[Path], log_id: bytes | None
    ) -> None:
        self.records = {r.id: r for r in records}
        self.extra, self.log_id = list(extra), log_id
        self.open: dict[Path, sqlite3.Connection | None] = {}

    def conn(self, path: Path) -> sqlite3.Connection | None:
        if path not in self.open:
            self.open[path] = open_archive(path, self.log_id)
        return self.open[path]

    def rows(self, run: Run) -> list[Row] | None:
        """The run's rows from the first archive that holds them all (the one its
        compaction recorded, then those given), or None."""
        record = self.records.get(run.compaction_id)
        for path in [*([Path(record.archive)] if record else []), *self.extra]:
            conn = self.conn(path)
            rows = None if conn is None else archived_rows(conn, run.first_seq, run.last_seq)
            if rows is not None:
                return rows
        return None

    def close(self) -> None:
        for conn in self.open.values():
            if conn is not None:
                conn.close()


class _Scan:
    """One pass over the log: sequence, chain, payloads, fold and a fresh rebuild."""

    def __init__(self, report: Report, runs: list[Run], archives: _Archives) -> None:
        self.report, self.runs, self.archives = report, {r.first_seq: r for r in runs}, archives
        self.starts = sorted(self.runs)
        self.prev, self.expect, self.unchecked = GENESIS, 1, False
        self.state: State | None = State()
        self.builder: Builder | None = Builder()
        self.archived_hashes: dict[int, list[bytes]] = {}
        self.trusted: dict[int, int] = {}

    def row(self, row: Row) -> None:
        if row.seq != self.expect:
            self.gap(row.seq)
        self.chain(row)
        record = self.decode(row)
        if record is not None:
            self.fold(record)
            self.project(record)
        self.expect = row.seq + 1
        self.report.events += 1
        self.report.last_seq = row.seq

    def gap(self, seq: int) -> None:
        if seq < self.expect:
            self.report.add("sequence", seq, f"seq {seq} is out of order (expected {self.expect})")
            return
        while self.expect < seq:
            run = self.runs.get(self.expect)
            if run is None:
                i = bisect.bisect_right(self.starts, self.expect)
                nxt = min(self.starts[i] if i < len(self.starts) else seq, seq)
                one = nxt - 1 == self.expect
                span = f"seq {self.expect}" if one else f"seqs {self.expect}..{nxt - 1}"
                self.report.add(
                    "sequence",
                    self.expect,
                    f"{span} missing from the log (removed?): it jumps to {nxt}",
                )
                self.unchecked, self.expect = True, nxt
                continue
            if run.last_seq >= seq:
                self.report.add(
                    "archive",
                    run.first_seq,
                    f"compaction {run.compaction_id} says seqs {run.first_seq}.."
                    f"{run.last_seq} were archived, but seq {seq} is in the log",
                )
                self.unchecked, self.expect = True, seq
                return
            self.cross(run)
            self.expect = run.last_seq + 1

    def cross(self, run: Run) -> None:
        """Walk over archived seqs: with their archived rows if readable, else trust."""
        n = run.last_seq - run.first_seq + 1
        self.report.archived += n
        rows = self.archives.rows(run)
        if rows is None:
            self.trusted[run.compaction_id] = self.trusted.get(run.compaction_id, 0) + n
            self.prev = run.last_hash
            return
        for row in rows:
            if row.type != "WorkerHeartbeat":
                self.report.add("archive", row.seq, f"archived seq {row.seq} is a {row.type}")
            self.chain(row, check="archive")
            self.decode(row, check="archive")
            self.archived_hashes.setdefault(run.compaction_id, []).append(row.hash)
        self.report.archive_checked += n
        if rows[-1].hash != run.last_hash:
            self.report.add(
                "archive",
                run.last_seq,
                f"archived seq {run.last_seq} does not end with the hash its compaction recorded",
            )
        self.prev = run.last_hash

    def chain(self, row: Row, *, check: str = "chain") -> None:
        if self.unchecked:  # the row before is missing: nothing to chain to
            self.unchecked = False
        else:
            digest = row.expected_hash(self.prev)
            if digest != row.hash:
                self.report.add(
                    check,
                    row.seq,
                    f"seq {row.seq} ({row.type}): its hash does not match its contents "
                    "and the row before (this row, or the one before it, was changed)",
                )
        self.prev = row.hash

    def decode(self, row: Row, *, check: str = "payloads") -> Recorded | None:
        try:
            record = row.decode()
        except (DatabaseRefused, ValueError) as exc:
            message = exc.message if isinstance(exc, DatabaseRefused) else str(exc)
            self.report.add(check, row.seq, f"seq {row.seq}: {message}")
            return None
        columns = (task_id_of(record.event), worker_id_of(record.event))
        if columns != (row.task_id, row.worker_id):
            stored = (row.task_id, row.worker_id)
            self.report.add(
                check,
                row.seq,
                f"seq {row.seq}: task_id/worker_id columns {stored} do not match "
                f"its payload {columns}",
            )
        return record

    def fold(self, record: Recorded) -> None:
        if self.state is None:
            return
        try:
            apply(self.state, record.event, seq=record.seq, at=record.at)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            name = type(record.event).__name__
            self.report.add(
                "fold",
                record.seq,
                f"seq {record.seq} ({name}) does not fold: {exc!r}; the fold stopped here",
            )
            self.state = None

    def project(self, record: Recorded) -> None:
        if self.builder is None:
            return
        first = self.builder.batch[0].seq if self.builder.batch else record.seq
        try:
            self.builder.add(record)
        except (sqlite3.Error, KeyError, TypeError, ValueError) as exc:
            self.failed_build(first, record.seq, exc)

    def finish(self) -> Builder | None:
        for start in self.starts:
            if start >= self.expect:
                run = self.runs[start]
                self.report.add(
                    "archive",
                    start,
                    f"compaction {run.compaction_id} archived seqs {start}.."
                    f"{run.last_seq}, after the log's last event: the log's end "
                    "was removed",
                )
                break
        if self.builder is not None and self.builder.batch:
            first, last = self.builder.batch[0].seq, self.builder.batch[-1].seq
            try:
                self.builder.flush()
            except (sqlite3.Error, KeyError, TypeError, ValueError) as exc:
                self.failed_build(first, last, exc)
        return self.builder

    def failed_build(self, first: int, last: int, exc: BaseException) -> None:
        self.report.add(
            "projections",
            None,
            f"a fresh rebuild fails on the events in seqs {first}..{last}: {exc!r}",
        )
        assert self.builder is not None
        self.builder.conn.close()
        self.builder = None


def _check_integrity(recorder: SqliteRecorder, report: Report) -> None:
    for message in recorder.schema_problems():
        report.add("integrity", None, message)
    version = recorder.schema_version()
    if version < SCHEMA_VERSION:  # never opened by a writer since
        report.notes.append(
            f"schema version {version}: a kickoff server upgrades it to {SCHEMA_VERSION} "
            "when it opens it"
        )
    report.ran.add("integrity")


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _by_key(rows: Iterable[Any], text_key: bool, k: int) -> Iterable[Any]:
    """Rows in the fresh rebuild's order: PostgreSQL orders text by its collation, SQLite
    (and Python) by code point."""
    return sorted(rows, key=lambda r: r[k]) if text_key else rows


def _differ(table: str, key: str, cols: list[str], live: Any, fresh: Any) -> tuple[int | None, str]:
    """The first difference between two rows (either may be None), and a seq to blame."""
    k = cols.index(key)
    seq_col = cols.index("updated_seq") if "updated_seq" in cols else None
    if live is None or (fresh is not None and fresh[k] < live[k]):
        seq = fresh[seq_col] if seq_col is not None else None
        return seq, f"{table} {key}={fresh[k]!r} is missing here but a fresh rebuild has it"
    if fresh is None or live[k] < fresh[k]:
        seq = live[seq_col] if seq_col is not None else None
        return seq, f"{table} {key}={live[k]!r} is here but a fresh rebuild has no such row"
    for name, a, b in zip(cols, live, fresh, strict=True):
        if a != b:
            if table == "projection_state":
                return (b + 1 if a > b else a + 1), (
                    f"projection_state {live[k]}: last_seq is {a} here but {b} in a fresh "
                    "rebuild" + (" (events at the end of the log are missing?)" if a > b else "")
                )
            # blame the later of the events that wrote the two versions of the row
            seq = max(live[seq_col], fresh[seq_col]) if seq_col is not None else None
            return seq, (
                f"{table} {key}={live[k]!r}: {name} is {a!r} here but {b!r} in a fresh rebuild"
            )
    return None, ""


def _compare(live: SqliteRecorder, fresh: sqlite3.Connection, report: Report) -> None:
    resort = not isinstance(live.conn, sqlite3.Connection)
    for table, key in COMPARED:
        try:
            cols = live.columns(table)
            if not cols and not _columns(fresh, table):
                continue  # not in this schema version
            if not cols:
                report.add(
                    "projections",
                    None,
                    f"table {table} is missing: run `kickoff projections rebuild`",
                )
                continue
            if cols != _columns(fresh, table):
                report.add("projections", None, f"table {table} has unexpected columns {cols}")
                continue
            query = f"SELECT * FROM {table} ORDER BY {key}"
            text_key = resort and key != "id"
            found = _by_key(live.conn.execute(query), text_key, cols.index(key))
            pairs: Iterable[tuple[Any, Any]] = zip_longest(found, fresh.execute(query))
            for a, b in pairs:
                if a != b:
                    seq, message = _differ(table, key, cols, a, b)
                    report.add("projections", seq, message)
                    break
        except sqlite3.Error as exc:
            report.add("projections", None, f"cannot read table {table}: {exc}")
    report.ran.add("projections")


def _check_digests(scan: _Scan, records: list[Compaction], report: Report) -> None:
    counted: dict[int, int] = {}
    for run in scan.runs.values():
        counted[run.compaction_id] = (
            counted.get(run.compaction_id, 0) + run.last_seq - run.first_seq + 1
        )
    for record in records:
        if counted.get(record.id, 0) != record.count:
            report.add(
                "archive",
                record.first_seq,
                f"compaction {record.id} recorded {record.count} archived events but its "
                f"runs cover {counted.get(record.id, 0)}",
            )
        trusted = scan.trusted.get(record.id, 0)
        if trusted:
            report.notes.append(
                f"archive {record.archive} (compaction {record.id}, seqs {record.first_seq}.."
                f"{record.last_seq}) is not readable here: trusted the recorded hashes of its "
                f"{trusted} archived heartbeats"
            )
            continue
        hashes = scan.archived_hashes.get(record.id, [])
        complete = len(hashes) == record.count
        if complete and hashlib.sha256(b"".join(hashes)).digest() != record.digest:
            report.add(
                "archive",
                record.first_seq,
                f"compaction {record.id}: the archived rows do not match its digest",
            )
    report.ran.add("archive")


def _scan(recorder: SqliteRecorder, report: Report, archives: Sequence[Path]) -> None:
    runs, records = recorder.runs(), recorder.compactions()
    first: list[Row] = run_query(recorder.conn, recorder.select(limit=1))
    log_id = first[0].hash if first and first[0].seq == 1 else None
    opened = _Archives(records, archives, log_id)
    scan = _Scan(report, runs, opened)
    try:
        for row in recorder.rows():
            scan.row(row)
        builder = scan.finish()
        report.ran.update(("sequence", "chain", "payloads"))
        if scan.state is not None:
            report.ran.add("fold")
        if records or runs:
            _check_digests(scan, records, report)
        if builder is not None:
            version = recorder.schema_version()
            if version < 4:
                for sql in RESOURCES_DOWNGRADE:  # a database from before resources
                    builder.conn.execute(sql)
            if version < 3:
                for sql in WORKFLOW_DOWNGRADE:  # a database from before workflows
                    builder.conn.execute(sql)
            _compare(recorder, builder.conn, report)
            builder.conn.close()
    finally:
        opened.close()


def verify(path: Location, *, archives: Sequence[Path] = ()) -> Report:
    """Check the database at `path`, a file or on PostgreSQL (read-only); never raises for
    a bad database."""
    report = Report(path=path)
    try:
        conn = open_connection(path, readonly=True)
    except DatabaseRefused as exc:
        report.add("open", None, exc.message)
        return report
    try:
        recorder = recorder_of(conn)
        try:
            _check_integrity(recorder, report)
        except sqlite3.DatabaseError as exc:
            report.add("integrity", None, f"integrity_check cannot run: {exc}")
        try:
            with recorder.snapshot():  # one snapshot: a live server may append meanwhile
                _scan(recorder, report, archives)
        except sqlite3.DatabaseError as exc:
            seq = report.last_seq + 1 if report.events else None
            where = f" after seq {report.last_seq}" if report.events else ""
            report.add("read", seq, f"cannot read the log{where}: {exc} (damaged or truncated?)")
    finally:
        conn.close()
    return report
