"""Points in the log as people write them: a seq, a time, or "that long ago". No I/O here.

`1234` is a seq. `2026-01-01T10:00:00Z`, `2026-01-01 10:00`, `2026-01-01` and a bare time
of day `10:01:02` (today) are times; a time without an offset is UTC, as kickoff prints
them. `90s`, `10m`, `2h`, `1d`, `1h30m` (optionally followed by ` ago`) are that long
before `now`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

from kickoff.errors import InvalidInput

_SPAN = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+(?:\s*ago)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_TIME_OF_DAY = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?")

Point = int | datetime


def parse_time(text: str, *, now: datetime) -> datetime:
    """A time as an aware UTC datetime (see the module docstring for the forms).

    Raises:
        InvalidInput: not a time or a span.
    """
    text = text.strip()
    if _SPAN.fullmatch(text):
        seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _PART.findall(text))
        return now - timedelta(seconds=seconds)
    try:
        if _TIME_OF_DAY.fullmatch(text):
            of_day = time.fromisoformat(text if text.index(":") == 2 else "0" + text)
            return datetime.combine(now.astimezone(UTC).date(), of_day, tzinfo=UTC)
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a seq, a time (2026-01-01T10:00:00Z, 10:01:02) "
            "or a span (10m, 2h, 1d)"
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def parse_point(text: str, *, now: datetime) -> Point:
    """A seq (a plain non-negative integer) or a time.

    Raises:
        InvalidInput: neither.
    """
    stripped = text.strip()
    if stripped.isdigit():
        return int(stripped)
    return parse_time(stripped, now=now)
