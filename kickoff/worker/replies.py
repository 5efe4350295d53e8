"""Checks on what the server answers the worker. No I/O here.

A broken or hostile server must never crash the worker or make it run anything but a
task's own command string: every field is checked for its type and size, and whatever
fails is refused here, with the reason, before the loop looks at it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kickoff import defaults, resources
from kickoff.errors import ERRORS_BY_CODE, InvalidInput, KickoffError
from kickoff.resources import GPU, Resources, show_amount
from kickoff.worker.lease import heartbeat_interval_s
from kickoff.worker.process import Assignment

# Worker ids go into URL paths: no slash, no dot segments, nothing to escape.
WORKER_ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.:=+-]{0,127}")
# Server ids name the worker's log directory for that server: hex digits only.
SERVER_ID_RE = re.compile(r"[0-9a-f]{8,64}")
MAX_TASK_ID = (1 << 53) - 1
MIN_INTERVAL_S = defaults.MIN_HEARTBEAT_INTERVAL_S
MAX_INTERVAL_S = defaults.MAX_HEARTBEAT_INTERVAL_S
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
MAX_MESSAGE_CHARS = 500  # of an error message the server sends along with an answer


class BadReply(KickoffError, ValueError):
    """The server's answer is not what the API documents (a KickoffError, so that
    `kickoff worker` reports it in one line; its code stays the generic `error`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """The worker's current registration with the server."""

    worker_id: str
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    server_id: str  # the server's database identity (its log's first hash)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A claimed task the worker will not run (bad command or timeout); it reports why."""

    task_id: int
    attempt: int
    reason: str


def _int(value: Any, *, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def worker_id(value: Any) -> str:
    """A worker id safe to put into a URL path.

    Raises:
        BadReply: not a short string of id characters.
    """
    if not isinstance(value, str) or not WORKER_ID_RE.fullmatch(value):
        raise BadReply(f"worker_id {str(value)[:40]!r} is not a valid worker id")
    return value


def registration(answer: Any) -> Registration:
    """The answer to `POST /v1/workers`. The heartbeat interval derives from the server's
    heartbeat timeout (so that it always fits, whatever interval the server suggests).

    Raises:
        BadReply: not an object with a valid worker_id, heartbeat timeout and server id.
    """
    if not isinstance(answer, dict):
        raise BadReply("registration answer is not a JSON object")
    valid_id = worker_id(answer.get("worker_id"))
    timeout = _seconds(answer.get("heartbeat_timeout_s"))
    if timeout is None:
        raise BadReply("registration answer has no valid heartbeat_timeout_s")
    interval = heartbeat_interval_s(timeout, _seconds(answer.get("heartbeat_interval_s")))
    server_id = answer.get("server_id")
    if not isinstance(server_id, str) or not SERVER_ID_RE.fullmatch(server_id):
        raise BadReply("registration answer has no valid server_id")
    return Registration(
        worker_id=valid_id,
        server_id=server_id,
        heartbeat_interval_s=min(max(interval, MIN_INTERVAL_S), MAX_INTERVAL_S),
        heartbeat_timeout_s=max(timeout, MIN_INTERVAL_S),
    )


def _command_problem(command: Any) -> str | None:
    if not isinstance(command, str):
        return "the command is not a string"
    try:
        size = len(command.encode("utf-8"))
    except UnicodeEncodeError:
        return "the command is not valid UTF-8"
    if size > defaults.MAX_COMMAND_BYTES:
        return f"the command is {size} bytes, over the {defaults.MAX_COMMAND_BYTES} byte limit"
    if "\0" in command:
        return "the command holds a NUL byte"
    return None


def assignment(raw: Any, *, id_key: str = "task_id") -> Assignment | Refused:
    """One claimed task: an Assignment to run, or Refused with the reason.

    Raises:
        BadReply: no usable task id and attempt, so it cannot even be reported.
    """
    if not isinstance(raw, dict):
        raise BadReply("a claimed task is not a JSON object")
    task_id = _int(raw.get(id_key), low=1, high=MAX_TASK_ID)
    attempt = _int(raw.get("attempt"), low=1, high=defaults.MAX_ATTEMPTS_LIMIT)
    if task_id is None or attempt is None:
        raise BadReply(f"a claimed task has no valid {id_key} and attempt: {str(raw)[:120]}")
    problem = _command_problem(raw.get("command"))
    timeout = raw.get("timeout_s")
    timeout_s = None if timeout is None else _seconds(timeout)
    if problem is None and timeout is not None and timeout_s is None:
        problem = f"timeout_s {str(timeout)[:40]!r} is not a positive number"
    if problem is not None:
        return Refused(task_id=task_id, attempt=attempt, reason=problem)
    if timeout_s is not None:
        timeout_s = min(timeout_s, defaults.MAX_TIMEOUT_S)
    index = _int(raw.get("array_index"), low=0, high=defaults.MAX_ARRAY_INDEX)
    cwd, env, problem = _where(raw.get("cwd")), _env(raw.get("env")), None
    held, devices = _held(raw.get("resources")), _devices(raw.get("gpu_ids"))
    if raw.get("cwd") is not None and cwd is None:
        problem = "cwd is not an absolute directory"
    elif env is None:
        problem = "env is not an object of variable names to strings"
    elif held is None:
        problem = "resources is not an object of resource names to amounts"
    elif devices is None or len(devices) != dict(held or ()).get(GPU, 0):
        problem = "gpu_ids is not a list of as many device indices as its gpu amount"
    if problem is not None:
        return Refused(task_id=task_id, attempt=attempt, reason=problem)
    assert env is not None and held is not None and devices is not None
    return Assignment(
        task_id=task_id,
        attempt=attempt,
        command=raw["command"],
        timeout_s=timeout_s,
        array_index=index,
        cwd=cwd,
        env=env,
        resources=held,
        gpu_ids=devices,
    )


def misfit(
    claimed: Assignment,
    *,
    declared: tuple[tuple[str, int], ...],
    devices: tuple[int, ...],
    running: Iterable[Assignment],
) -> Refused | None:
    """Why a claimed task cannot run beside this worker's `running` ones (None if it can):
    a device id that is not one of its `devices`, an amount over what the worker declared
    or has free, a device a running task holds. A server that keeps to the rules never
    hands out such a claim: it would share a device, or hold what is not there."""
    held: dict[str, int] = {}
    holder: dict[int, int] = {}
    for other in running:
        for name, value in other.resources:
            held[name] = held.get(name, 0) + value
        holder.update(dict.fromkeys(other.gpu_ids, other.task_id))
    problem = _foreign(claimed.gpu_ids, devices) or _over(claimed.resources, dict(declared), held)
    taken = [d for d in claimed.gpu_ids if d in holder]
    if problem is None and taken:
        problem = f"gpu_ids names device {taken[0]}, which task {holder[taken[0]]} holds"
    if problem is None:
        return None
    return Refused(task_id=claimed.task_id, attempt=claimed.attempt, reason=problem)


def _foreign(asked: tuple[int, ...], devices: tuple[int, ...]) -> str | None:
    """Why device ids `asked` are not all among a worker's `devices`."""
    foreign = [d for d in asked if d not in devices]
    if not foreign:
        return None
    shown = ",".join(map(str, devices)) or "none"
    return f"gpu_ids names device {foreign[0]}, not one of this worker's ({shown})"


def _over(asked: Resources, own: dict[str, int], held: dict[str, int]) -> str | None:
    """Why amounts `asked` are more than a worker of `own` amounts, `held` taken, has free."""
    for name, value in asked:
        total, free = own.get(name, 0), own.get(name, 0) - held.get(name, 0)
        wants = f"it asks for {name}={show_amount(value)}"
        if value > total:
            return f"{wants}, over this worker's {name}={show_amount(total)}"
        if value > free:
            return f"{wants}, and only {show_amount(free)} of this worker's {name} is free"
    return None


def _held(value: Any) -> tuple[tuple[str, int], ...] | None:
    """What an attempt holds: checked amounts (none for null), or None if they are not."""
    try:
        return resources.from_json(value, field="resources", task=True)
    except InvalidInput:
        return None


def _devices(value: Any) -> tuple[int, ...] | None:
    """Distinct device indices (none for null), or None if they are not."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > defaults.MAX_GPUS:
        return None
    ids = tuple(v for v in value if type(v) is int and 0 <= v < 1 << 20)
    return ids if len(ids) == len(value) == len(set(ids)) else None


def _where(value: Any) -> str | None:
    """An absolute directory without NUL, or None."""
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        return None
    return value if len(value.encode("utf-8", "surrogatepass")) <= defaults.MAX_CWD_BYTES else None


def _env(value: Any) -> tuple[tuple[str, str], ...] | None:
    """Sorted (name, value) pairs from an object of names to strings; None if it is not one."""
    if value is None:
        return ()
    if not isinstance(value, dict) or len(value) > defaults.MAX_ENV_VARS:
        return None
    size = 0
    for name, text in value.items():
        if not (ENV_NAME_RE.fullmatch(name) and isinstance(text, str)) or "\0" in text:
            return None
        size += len(name) + len(text.encode("utf-8", "surrogatepass"))
    return tuple(sorted(value.items())) if size <= defaults.MAX_ENV_BYTES else None


def claimed(answer: Any, *, limit: int) -> tuple[list[Assignment | Refused], list[str]]:
    """The tasks of a claim answer (at most `limit`, each id once) and the problems seen."""
    problems: list[str] = []
    if not isinstance(answer, dict) or not isinstance(answer.get("tasks"), list):
        return [], ["claim answer has no list of tasks"]
    raw_tasks: list[Any] = answer["tasks"]
    if len(raw_tasks) > limit:
        problems.append(f"claim answer has {len(raw_tasks)} tasks, asked for {limit}")
    out: list[Assignment | Refused] = []
    seen: set[int] = set()
    for raw in raw_tasks[:limit]:
        try:
            item = assignment(raw)
        except BadReply as exc:
            problems.append(str(exc))
            continue
        if item.task_id in seen:
            problems.append(f"claim answer names task {item.task_id} twice")
            continue
        seen.add(item.task_id)
        out.append(item)
    return out, problems


def claim_error(answer: Any) -> KickoffError | None:
    """Why a complete-and-claim answer claimed nothing (`"claim_error": {"code", "message"}`):
    the error of that code, or None when the answer names none (or nothing usable)."""
    if not isinstance(answer, dict):
        return None
    raw = answer.get("claim_error")
    if not isinstance(raw, dict) or not isinstance(raw.get("code"), str):
        return None
    message = raw.get("message")
    text = message[:MAX_MESSAGE_CHARS] if isinstance(message, str) else raw["code"][:40]
    cls = ERRORS_BY_CODE.get(raw["code"], KickoffError)
    return cls(text)


def cancel_ids(answer: Any, *, limit: int = defaults.MAX_SLOTS) -> list[int]:
    """The task ids a heartbeat answer says to stop (anything else in it is ignored)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("cancel"), list):
        return []
    ids = (_int(v, low=1, high=MAX_TASK_ID) for v in answer["cancel"][: limit * 4])
    return [i for i in ids if i is not None]


def task_list(answer: Any) -> list[Any]:
    """The `tasks` list of a `GET /v1/tasks` answer (empty if there is none)."""
    if isinstance(answer, dict) and isinstance(answer.get("tasks"), list):
        return list(answer["tasks"])
    return []
