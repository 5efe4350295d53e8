"""A task's own environment variables (`--env`, `--env-pass`): the name rule, shared by the
API's parser and the command line. No I/O here."""

from __future__ import annotations

import re

from kickoff import defaults

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What the worker sets, or keeps for itself: a task cannot name them.
RESERVED = frozenset(
    {
        "KICKOFF_TOKEN",
        "KICKOFF_TASK_ID",
        "KICKOFF_ATTEMPT",
        "KICKOFF_WORKER",
        "KICKOFF_WORKER_RUN",
        "KICKOFF_ARRAY_INDEX",
        "KICKOFF_RESOURCES",
        "KICKOFF_GPU_IDS",
    }
)


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a task's environment variable; None if it can."""
    if len(name) > defaults.MAX_ENV_NAME_CHARS:
        return f"a name of {len(name)} characters, at most {defaults.MAX_ENV_NAME_CHARS}"
    if not NAME_RE.fullmatch(name):
        return f"{name[:60]!r} is not a variable name (letters, digits and _, not a digit first)"
    if name in RESERVED:
        return f"{name} is set by the worker itself"
    return None


def size(name: str, value: str) -> int:
    """What a variable counts against MAX_ENV_BYTES: its name and value in UTF-8."""
    return len(name) + len(value.encode("utf-8", "surrogatepass"))
