"""Completion reports, and the outbox: the reports the server has not acknowledged yet.

The outbox only holds them (a task's slot counts as busy while its report is here); the
jobs part (`jobs.py`) sends them. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kickoff.worker.ledger import Key
from kickoff.worker.process import Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The end of one attempt, as `POST /v1/tasks/{id}/complete` takes it."""

    task_id: int
    attempt: int
    worker_id: str
    outcome: Outcome
    output: dict[str, Any] | None = None  # the attempt's last output (worker/output.py)

    @property
    def key(self) -> Key:
        return (self.task_id, self.attempt)

    @property
    def what(self) -> str:
        """The report, as log lines name it."""
        return f"report of task={self.task_id} attempt={self.attempt}"

    def body(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "worker_id": self.worker_id,
            "attempt": self.attempt,
            "exit_code": o.exit_code,
            "duration_s": round(o.duration_s, 6),
            "output_tail": o.output_tail,
            "timed_out": o.timed_out,
            "cancelled": o.cancelled,
            **({} if o.scratch_dir is None else {"scratch_dir": o.scratch_dir}),
            **({} if self.output is None else {"output": self.output}),
        }


class Outbox:
    """Reports waiting for the server's acknowledgement, by (task id, attempt)."""

    def __init__(self) -> None:
        self.pending: dict[Key, Report] = {}

    def __len__(self) -> int:
        return len(self.pending)

    def __contains__(self, key: object) -> bool:
        return key in self.pending

    def add(self, report: Report) -> None:
        self.pending[report.key] = report

    def remove(self, key: Key) -> None:
        self.pending.pop(key, None)
