"""Values in words for people: times and ages, durations, states and their colors, counts,
tags, event payloads, as the views (`_view_*`) use them. Pure: no I/O here (`_terminal`
decides how the words are shown)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kickoff.cli._terminal import Styled, assemble, join, one_line, styled
from kickoff.state.task_state import LIVE_STATES, TaskState

TYPE_CHECKING = False  # typing is for the type checker: its import slows `kickoff new`
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

STATES = tuple(str(s) for s in TaskState)
FINAL = frozenset(str(s) for s in TaskState if s not in LIVE_STATES)
STATE_STYLES = {
    "pending": "yellow",
    "waiting": "blue",
    "running": "cyan",
    "cancelling": "magenta",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "dim",
    "alive": "green",
    "stopped": "dim",
    "lost": "red",
}


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    from datetime import UTC, datetime  # 1 ms: piped output shows times as they are

    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def ago(text: str | None, now: datetime) -> str:
    """`3s ago`, `5m ago`, `2h ago`, `4d ago`; `-` when there is no time."""
    at = parse_time(text)
    if at is None:
        return "-"
    seconds = (now - at).total_seconds()
    if seconds < 0:
        return "just now" if seconds > -5 else "in " + span(-seconds)
    if seconds < 1:
        return "just now"
    return span(seconds) + " ago"


def span(seconds: float) -> str:
    """A coarse duration: `45s`, `12m`, `3h`, `5d`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def duration(seconds: float | None) -> str:
    """A precise duration: `0.42s`, `12.3s`, `4m05s`, `2h03m`; `-` for none."""
    from kickoff.audit.history import duration as precise  # 8 ms to import: when needed

    return "-" if seconds is None else precise(seconds)


def when(text: str | None, now: datetime, *, relative: bool) -> str:
    """A time for people: relative (`3s ago`) on a terminal, ISO 8601 UTC when piped."""
    if text is None:
        return "-"
    return ago(text, now) if relative else text


def state(name: str | None) -> Styled:
    return styled(name or "-", STATE_STYLES.get(name or "", ""))


def tags(values: Iterable[str] | None) -> str:
    return " ".join(values or ()) or "-"


def counts_line(counts: Mapping[str, int]) -> Styled:
    """`3 pending · 1 running · 10 succeeded`, colored, states with zero left out."""
    parts = [
        assemble((f"{counts[name]:,}", "bold"), " ", (name, STATE_STYLES[name]))
        for name in STATES
        if counts.get(name, 0)
    ]
    return join(" · ", parts) if parts else styled("no tasks", "dim")


SAID_WHEN_ZERO = frozenset({"exit_code"})  # 0 is news here: the command succeeded


def summary(data: Mapping[str, Any], *, skip: Iterable[str] = (), limit: int = 100) -> str:
    """An event payload as `key=value ...` for one table cell; a field that holds nothing
    (None, empty, False, or zero but for SAID_WHEN_ZERO) is left out: `retries=0` and
    `timed_out=False` say nothing."""
    skipped = set(skip)
    parts = []
    for key, value in data.items():
        nothing = value is None or value is False or value in ([], {}, ())
        zero = isinstance(value, int | float) and not isinstance(value, bool) and value == 0
        if key in skipped or nothing or (zero and key not in SAID_WHEN_ZERO):
            continue
        shown = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key}={shown}")
    return one_line(" ".join(parts), limit)
