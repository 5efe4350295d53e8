"""The states of a task, and which of them are live. No I/O here; nothing else imported, so
that any part (the CLI too) can name the states without loading the fold."""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    PENDING = "pending"
    WAITING = "waiting"  # for its dependencies, or for a retry's delay: not claimable yet
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


LIVE_STATES = (TaskState.PENDING, TaskState.WAITING, TaskState.RUNNING, TaskState.CANCELLING)
"""Not finished: what the server keeps in memory and `status` lists by default."""
