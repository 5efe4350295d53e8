"""The output file (store/output.py): appends by offset, idempotent; the cap; reads by
offset across chunks; retention by budget; a file of another program refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kickoff.errors import Conflict, DatabaseRefused
from kickoff.store.output import OutputFile, Stored

CAP = 1 << 20


def test_appends_and_reads_across_chunks(tmp_path: Path) -> None:
    out = OutputFile(tmp_path / "x.output")
    for offset, piece in ((0, b"abc"), (3, b"defg"), (7, b"h")):
        out.append(1, 1, offset, piece, cap=CAP)
    assert out.stored(1, 1) == Stored(size=8, total=8)
    assert out.read(1, 1, 0, 100) == b"abcdefgh"
    assert out.read(1, 1, 2, 4) == b"cdef"
    assert out.read(1, 1, 8, 10) == b""
    assert out.read(1, 2, 0, 10) == b""  # another attempt has its own
    assert out.stored(9, 1) == Stored()


def test_a_resent_chunk_is_kept_once_and_a_gap_refused(tmp_path: Path) -> None:
    out = OutputFile(tmp_path / "x.output")
    out.append(1, 1, 0, b"abcd", cap=CAP)
    assert out.append(1, 1, 0, b"abcd", cap=CAP) == Stored(size=4, total=4)
    assert out.append(1, 1, 2, b"cdef", cap=CAP) == Stored(size=6, total=6)
    with pytest.raises(Conflict, match="send from 6"):
        out.append(1, 1, 9, b"x", cap=CAP)
    assert out.read(1, 1, 0, 100) == b"abcdef"


def test_past_the_cap_bytes_are_counted_and_any_later_offset_taken(tmp_path: Path) -> None:
    out = OutputFile(tmp_path / "x.output")
    assert out.append(1, 1, 0, b"0123456789", cap=4) == Stored(size=4, total=10)
    assert out.append(1, 1, 500, b"", cap=4) == Stored(size=4, total=500)  # how far it got
    assert out.stored(1, 1).dropped == 496
    assert out.read(1, 1, 0, 100) == b"0123"


def test_past_the_budget_the_oldest_tasks_output_goes_first(tmp_path: Path) -> None:
    path = tmp_path / "x.output"
    out = OutputFile(path)
    for task_id in (1, 2, 3):
        out.append(task_id, 1, 0, b"x" * 100, cap=CAP)
    assert out.kept == 300
    assert out.prune(250) == 1
    assert (out.stored(1, 1), out.read(1, 1, 0, 10)) == (Stored(), b"")
    assert out.stored(3, 1).size == 100
    out.close()
    assert OutputFile(path).kept == 200  # counted again on opening


def test_a_file_of_another_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.output"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(DatabaseRefused, match="not a kickoff output file"):
        OutputFile(path)


def test_the_file_is_the_owner_s_alone(tmp_path: Path) -> None:
    path = tmp_path / "x.output"
    OutputFile(path).close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_output_of_tasks_it_is_told_to_keep_is_never_pruned(tmp_path: Path) -> None:
    out = OutputFile(tmp_path / "x.output")
    for task_id in range(1, 101):
        out.append(task_id, 1, 0, b"x" * 10, cap=CAP)
    running = {1, 2, 70}
    assert out.prune(100, keep=running.__contains__) == 90
    left = [t for t in range(1, 101) if out.stored(t, 1).size]
    assert left == [1, 2, 70, *range(94, 101)]
    assert out.kept == 100
