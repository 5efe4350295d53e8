"""A task's attempts, read from its events: where each ran and why it ended (for `why`,
state/why.py). No I/O here; no rules: only what the log says happened to each attempt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kickoff.events import model as ev

Logged = tuple[int, datetime, ev.Event]
"""seq, time, event: one row of the log, decoded (store's `Recorded` is one)."""


def to_text(at: datetime) -> str:
    """A time as the log stores it (kickoff.clock's format; this layer imports no clock)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One start of the task: where it ran and why it ended."""

    attempt: int
    worker_id: str
    worker_name: str
    started_at: str
    ended_at: str | None = None
    outcome: str = "running"  # succeeded, failed, timed_out, lost, stopped, cancelled, running
    exit_code: int | None = None
    detail: str = ""  # "exit code 3; retried after 2s", "its worker was lost", ...


def worker_label(name: str, worker_id: str) -> str:
    return worker_id if name in ("", worker_id) else f"{name} ({worker_id})"


class _Open:
    """An attempt being read from the log."""

    __slots__ = ("attempt", "detail", "ended_at", "exit_code", "outcome", "started", "worker")

    def __init__(self, attempt: int, worker: str, started: str) -> None:
        self.attempt = attempt
        self.worker = worker
        self.started = started
        self.ended_at: str | None = None
        self.outcome = "running"
        self.exit_code: int | None = None
        self.detail = ""

    def end(self, at: str, outcome: str, detail: str, exit_code: int | None = None) -> None:
        self.ended_at, self.outcome, self.detail, self.exit_code = at, outcome, detail, exit_code


def attempts_of(own: Sequence[Logged], names: Mapping[str, str]) -> tuple[Attempt, ...]:
    """Each start of the task from its events: where it ran and why it ended."""
    found: list[_Open] = []
    for _, at, event in own:
        current = found[-1] if found and found[-1].outcome == "running" else None
        _attempt_step(found, current, to_text(at), event)
    return tuple(
        Attempt(
            attempt=a.attempt,
            worker_id=a.worker,
            worker_name=names.get(a.worker, a.worker),
            started_at=a.started,
            ended_at=a.ended_at,
            outcome=a.outcome,
            exit_code=a.exit_code,
            detail=a.detail,
        )
        for a in found
    )


def _attempt_step(found: list[_Open], current: _Open | None, at: str, event: ev.Event) -> None:
    match event:
        case ev.TaskClaimed():
            found.append(_Open(event.attempt, event.worker_id, at))
        case ev.TaskCompleted() if current is not None:
            _completed(current, at, event)
        case ev.TaskLeaseExpired() if current is not None:
            current.end(at, "lost", "its worker was lost (no heartbeat in time)")
        case ev.TaskRequeued() if current is not None:
            stopped = event.reason == "worker_stopped"
            current.end(
                at,
                "stopped" if stopped else "lost",
                "its worker stopped" if stopped else event.reason,
            )
        case ev.TaskRequeued() if found and found[-1].outcome in ("failed", "timed_out"):
            found[-1].detail += f"; {event.reason}"
        case ev.TaskCancelled() if current is not None:
            current.end(
                at, "cancelled", "cancelled" + (f": {event.reason}" if event.reason else "")
            )
        case ev.TaskFailed() if current is not None:
            current.end(at, "failed", event.reason)
        case ev.TaskFailed() if found and found[-1].outcome == "lost":
            found[-1].detail += f"; {event.reason}"
        case _:
            pass


def _completed(current: _Open, at: str, event: ev.TaskCompleted) -> None:
    if event.timed_out:
        outcome, detail = "timed_out", f"timed out after {event.duration_s:.3g}s"
    elif event.exit_code == 0:
        outcome, detail = "succeeded", "exit code 0"
    else:
        outcome, detail = "failed", f"exit code {event.exit_code}"
    if event.retry_in_s:
        detail += f"; retried after {event.retry_in_s:g}s"
    current.end(at, outcome, detail, event.exit_code)


def end_reason(event: ev.Event | None) -> str | None:
    match event:
        case ev.TaskCancelled():
            return event.reason or "cancelled"
        case ev.TaskFailed():
            return event.reason
        case ev.TaskCompleted():
            return "timed out" if event.timed_out else f"exit code {event.exit_code}"
    return None
