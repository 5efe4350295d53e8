"""Seqs, times and spans as users write them on the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kickoff.audit.timespec import parse_point, parse_time
from kickoff.errors import InvalidInput

NOW = datetime(2026, 3, 4, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234", 1234),
        ("0", 0),
        ("2026-01-01T10:00:00Z", datetime(2026, 1, 1, 10, tzinfo=UTC)),
        ("2026-01-01 10:00", datetime(2026, 1, 1, 10, tzinfo=UTC)),
        ("2026-01-01T11:00:00+01:00", datetime(2026, 1, 1, 10, tzinfo=UTC)),
        ("2026-01-01", datetime(2026, 1, 1, tzinfo=UTC)),
        ("10:01:02", datetime(2026, 3, 4, 10, 1, 2, tzinfo=UTC)),
        ("9:05", datetime(2026, 3, 4, 9, 5, tzinfo=UTC)),
        ("90s", NOW - timedelta(seconds=90)),
        ("10m", NOW - timedelta(minutes=10)),
        ("1h30m", NOW - timedelta(minutes=90)),
        ("2d ago", NOW - timedelta(days=2)),
        ("1w", NOW - timedelta(weeks=1)),
        ("0.5h", NOW - timedelta(minutes=30)),
    ],
)
def test_points(text: str, expected: int | datetime) -> None:
    assert parse_point(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["soon", "-5", "12x", "2026-13-01", "", "10m from now"])
def test_not_points(text: str) -> None:
    with pytest.raises(InvalidInput, match="not a seq, a time"):
        parse_point(text, now=NOW)


def test_a_seq_is_not_a_time() -> None:
    with pytest.raises(InvalidInput):
        parse_time("1234", now=NOW)
