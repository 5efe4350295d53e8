"""A task's events told as a story: one step per thing that happened. No I/O here.

Input is the documented event JSON (`seq, ts, type, task_id, worker_id, data`), as
`GET /v1/tasks/{id}/events` answers it. That list may include the `WorkerHeartbeat`s of
the workers while they ran the task; consecutive heartbeats from one worker become one
step ("12 heartbeats from w3 between 10:01:02 and 10:02:05").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kickoff.resources import show

EventJSON = Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One line of a task's story."""

    seq: int
    at: datetime
    kind: str  # submitted, released, claimed, heartbeats, lease_expired, requeued,
    # retry_scheduled, cancel_requested, cancelled, completed, failed, or the event type
    # for anything else
    text: str
    worker_id: str | None = None
    attempt: int | None = None
    outcome: str | None = None  # succeeded / failed / cancelled / warning: for colour
    count: int = 1  # heartbeats summarised in this step
    last_seq: int | None = None  # heartbeats: the last one's seq
    until: datetime | None = None  # heartbeats: the last one's time
    output_tail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Story:
    """Everything `kickoff history` shows about one task."""

    task_id: int | None
    command: str | None
    state: str  # as far as the events tell
    steps: tuple[Step, ...]
    attempts: int = 0
    max_attempts: int | None = None
    submitted_at: datetime | None = None
    first_started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def waited_s(self) -> float | None:
        """Submission to the first start."""
        if self.submitted_at is None or self.first_started_at is None:
            return None
        return (self.first_started_at - self.submitted_at).total_seconds()

    @property
    def took_s(self) -> float | None:
        """Submission to the end."""
        if self.submitted_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.submitted_at).total_seconds()


def parse_ts(text: str) -> datetime:
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def clock_time(at: datetime) -> str:
    """`10:01:02` (UTC), how heartbeat ranges are told."""
    return at.astimezone(UTC).strftime("%H:%M:%S")


def duration(seconds: float) -> str:
    """`0.42s`, `12.3s`, `4m05s`, `2h03m`."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _tags(values: Iterable[str]) -> str:
    return " ".join(values)


@dataclass(slots=True)
class _Teller:
    """Walks the events in seq order, remembering what later steps need."""

    task_id: int | None = None
    command: str | None = None
    state: str = "unknown"
    max_attempts: int | None = None
    attempts: int = 0
    submitted_at: datetime | None = None
    first_started_at: datetime | None = None
    finished_at: datetime | None = None
    last_seen: dict[str, datetime] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    beats: list[tuple[int, datetime, str]] = field(default_factory=list)  # pending group

    def flush_beats(self) -> None:
        if not self.beats:
            return
        (first, start, worker), (last, end, _) = self.beats[0], self.beats[-1]
        n = len(self.beats)
        text = (
            f"1 heartbeat from {worker} at {clock_time(start)}"
            if n == 1
            else f"{n} heartbeats from {worker} between {clock_time(start)} and {clock_time(end)}"
        )
        self.steps.append(
            Step(
                seq=first,
                at=start,
                kind="heartbeats",
                text=text,
                worker_id=worker,
                count=n,
                last_seq=last,
                until=end,
            )
        )
        self.beats = []

    def heartbeat(self, seq: int, at: datetime, worker: str) -> None:
        if self.beats and self.beats[-1][2] != worker:
            self.flush_beats()
        self.beats.append((seq, at, worker))
        self.last_seen[worker] = at

    def step(self, seq: int, at: datetime, kind: str, text: str, **extra: Any) -> None:
        self.flush_beats()
        self.steps.append(Step(seq=seq, at=at, kind=kind, text=text, **extra))

    def finish(self, at: datetime, state: str) -> None:
        self.state = state
        self.finished_at = at


def _submitted(t: _Teller, seq: int, at: datetime, data: EventJSON) -> None:
    t.task_id, t.command = data.get("task_id"), data.get("command")
    t.state = "waiting" if data.get("after") or data.get("after_any") else "pending"
    t.submitted_at = at
    if data.get("max_attempts") is not None:  # retries come on top of the restarts
        t.max_attempts = int(data["max_attempts"]) + int(data.get("retries") or 0)
    by = data.get("submitted_by")
    parts = [f"submitted by {by}" if by else "submitted"]
    if data.get("require"):
        parts.append(f"require {_tags(data['require'])}")
    if data.get("want"):
        parts.append(f"want {_tags(data['want'])}")
    if data.get("priority"):
        parts.append(f"priority {data['priority']}")
    if data.get("timeout_s") is not None:
        parts.append(f"timeout {duration(float(data['timeout_s']))}")
    if data.get("max_attempts") is not None:
        parts.append(f"up to {data['max_attempts']} attempts")
    if data.get("idempotency_key"):
        parts.append(f"idempotency key {data['idempotency_key']}")
    parts.extend(_workflow(data))
    if data.get("cwd"):
        parts.append(f"in {data['cwd']}")
    if data.get("env"):
        parts.append("env " + " ".join(str(name) for name, _ in data["env"]))
    t.step(seq, at, "submitted", " · ".join(parts))


def _ids(ids: Iterable[int]) -> str:
    return " ".join(str(i) for i in ids)


def _workflow(data: EventJSON) -> list[str]:
    """What a submission says about dependencies, its group, array index and retries."""
    parts = []
    if data.get("after"):
        parts.append(f"after {_ids(data['after'])} succeed")
    if data.get("after_any"):
        parts.append(f"after {_ids(data['after_any'])} end")
    if data.get("group_id") is not None:
        parts.append(f"group g{data['group_id']}")
    if data.get("array_index") is not None:
        parts.append(f"array index {data['array_index']}")
    if data.get("retries"):
        retry = f"{data['retries']} {'retry' if data['retries'] == 1 else 'retries'}"
        if data.get("retry_on") is not None:
            retry += f" on {' '.join(str(c) for c in data['retry_on']) or 'nothing'}"
        if data.get("retry_delay_s"):
            retry += f", {duration(float(data['retry_delay_s']))} apart (doubling)"
        parts.append(retry)
    return parts


def _released(t: _Teller, seq: int, at: datetime, data: EventJSON) -> None:
    t.state = "pending"
    t.step(seq, at, "released", "released: its dependencies ended as it asked; pending")


def _claimed(t: _Teller, seq: int, at: datetime, data: EventJSON) -> None:
    worker, attempt = data["worker_id"], data["attempt"]
    t.state, t.attempts = "running", max(t.attempts, attempt)
    t.first_started_at = t.first_started_at or at
    t.last_seen[worker] = at
    of = f" of {t.max_attempts}" if t.max_attempts else ""
    gpus = data.get("gpu_ids") or ()
    devices = f"GPUs {','.join(map(str, gpus))}; " if gpus else ""
    held = show(data.get("resources") or ())
    t.step(
        seq,
        at,
        "claimed",
        f"claimed by {worker} ({devices}attempt {attempt}{of})"
        + (f", holding {held}" if held else ""),
        worker_id=worker,
        attempt=attempt,
    )


def _completed(t: _Teller, seq: int, at: datetime, data: EventJSON) -> None:
    worker, code, took = data["worker_id"], data["exit_code"], duration(data["duration_s"])
    ok = code == 0 and not data.get("timed_out")
    if data.get("timed_out"):
        text = f"timed out on {worker} after {took} (exit code {code})"
    else:
        text = f"{'succeeded' if ok else 'failed'} on {worker}: exit code {code} after {took}"
    retry_in_s = data.get("retry_in_s")
    if retry_in_s is not None:  # not over: a retry is scheduled
        t.state = "waiting"
        text += "; to be retried" + (f" in {duration(float(retry_in_s))}" if retry_in_s else "")
    if data.get("scratch_dir"):
        text += f"; ran in the scratch directory {data['scratch_dir']} (its own was missing)"
    if retry_in_s is None:
        t.finish(at, "succeeded" if ok else "failed")
    t.last_seen[worker] = at
    t.step(
        seq,
        at,
        "completed" if retry_in_s is None else "retry_scheduled",
        text,
        worker_id=worker,
        attempt=data.get("attempt"),
        outcome=("succeeded" if ok else "failed") if retry_in_s is None else "warning",
        output_tail=data.get("output_tail") or "",
    )


def _lease_expired(t: _Teller, seq: int, at: datetime, data: EventJSON) -> None:
    worker, attempt = data["worker_id"], data["attempt"]
    text = f"lease of attempt {attempt} on {worker} expired"
    seen = t.last_seen.get(worker)
    if seen is not None:
        silent = (at - seen).total_seconds()
        text += f": not heard from since {clock_time(seen)} ({duration(silent)})"
    t.step(seq, at, "lease_expired", text, worker_id=worker, attempt=attempt, outcome="warning")


def _requeued(t: _Teller, seq: int, at: datetime, data: EventJSON) -> None:
    t.state = "pending"
    reason = str(data.get("reason") or "").replace("_", " ")
    why = f" ({reason})" if reason else ""
    text = f"requeued{why}; next start is attempt {data['next_attempt']}"
    if reason.startswith("retry"):
        text = f"started again: {reason}; next start is attempt {data['next_attempt']}"
    t.step(
        seq,
        at,
        "requeued",
        text,
        attempt=data["next_attempt"],
        outcome="warning",
    )


def _cancel_requested(t: _Teller, seq: int, at: datetime, data: EventJSON) -> None:
    by = data.get("requested_by")
    running = t.state == "running"
    if running:
        t.state = "cancelling"
    text = "cancel requested" + (f" by {by}" if by else "") + (" while running" if running else "")
    t.step(seq, at, "cancel_requested", text)


def _cancelled(t: _Teller, seq: int, at: datetime, data: EventJSON) -> None:
    worker = data.get("worker_id")
    t.finish(at, "cancelled")
    text = f"cancelled (attempt {data['attempt']} on {worker} stopped)" if worker else "cancelled"
    if data.get("reason"):
        text += f": {data['reason']}"
    if data.get("scratch_dir"):
        text += f"; ran in the scratch directory {data['scratch_dir']} (its own was missing)"
    t.step(
        seq,
        at,
        "cancelled",
        text,
        worker_id=worker,
        attempt=data.get("attempt"),
        outcome="cancelled",
        output_tail=data.get("output_tail") or "",
    )


def _failed(t: _Teller, seq: int, at: datetime, data: EventJSON) -> None:
    t.finish(at, "failed")
    reason = str(data.get("reason") or "").replace("_", " ")
    t.step(
        seq,
        at,
        "failed",
        f"failed: {reason}" if reason else "failed",
        attempt=data.get("attempt"),
        outcome="failed",
    )


_TELLERS = {
    "TaskSubmitted": _submitted,
    "TaskReleased": _released,
    "TaskClaimed": _claimed,
    "TaskCompleted": _completed,
    "TaskLeaseExpired": _lease_expired,
    "TaskRequeued": _requeued,
    "TaskCancelRequested": _cancel_requested,
    "TaskCancelled": _cancelled,
    "TaskFailed": _failed,
}


def story(events: Iterable[EventJSON]) -> Story:
    """The task's story from its events (any order; sorted by seq here)."""
    teller = _Teller()
    for event in sorted(events, key=lambda e: int(e["seq"])):
        seq, at, kind = int(event["seq"]), parse_ts(event["ts"]), event["type"]
        data: EventJSON = event.get("data") or {}
        if kind == "WorkerHeartbeat":
            teller.heartbeat(seq, at, str(event.get("worker_id") or data.get("worker_id")))
        elif kind in _TELLERS:
            _TELLERS[kind](teller, seq, at, data)
        else:
            teller.step(seq, at, kind, kind, worker_id=event.get("worker_id"))
    teller.flush_beats()
    return Story(
        task_id=teller.task_id,
        command=teller.command,
        state=teller.state,
        steps=tuple(teller.steps),
        attempts=teller.attempts,
        max_attempts=teller.max_attempts,
        submitted_at=teller.submitted_at,
        first_started_at=teller.first_started_at,
        finished_at=teller.finished_at,
    )
