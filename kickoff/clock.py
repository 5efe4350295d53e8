"""Time as a seam: services take a Clock; pure code takes `now` as an argument.

Only the seam and the time format: no time-based decision here (state/decide.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


@lru_cache(maxsize=4096)  # a batch shares one time; strftime is costly on the hot path
def to_text(at: datetime) -> str:
    """ISO 8601 UTC with a `Z`, microsecond precision: how times are stored."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_text(text: str) -> datetime:
    """Parse what `to_text` wrote (or any ISO 8601 time; naive means UTC)."""
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)
