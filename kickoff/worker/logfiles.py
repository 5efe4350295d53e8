"""The worker's log directory: one `task-<id>-<attempt>.log` per attempt, pruned to the
newest files (by task id) so that a busy worker does not fill the disk with small files."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Container
from pathlib import Path

KEEP_LOGS = 10_000  # default: task log files kept in a log directory
NAME_RE = re.compile(r"task-(\d+)-(\d+)\.log")


def path(log_dir: Path, task_id: int, attempt: int) -> Path:
    """Where an attempt's output goes."""
    return log_dir / f"task-{task_id}-{attempt}.log"


def prune(log_dir: Path, *, keep: int, protect: Container[tuple[int, int]] = ()) -> int:
    """Delete all but the `keep` newest task log files; returns how many were deleted.

    Newest means the highest (task id, attempt): ids grow in submission order. Files of
    the attempts in `protect` (running here) and files not named like task logs stay.
    """
    found: list[tuple[int, int, str]] = []
    with os.scandir(log_dir) as entries:
        for entry in entries:
            match = NAME_RE.fullmatch(entry.name)
            if match:
                found.append((int(match[1]), int(match[2]), entry.name))
    if len(found) <= keep:
        return 0
    found.sort()
    deleted = 0
    for task_id, attempt, name in found[: len(found) - keep]:
        if (task_id, attempt) in protect:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log_dir / name)
            deleted += 1
    return deleted
