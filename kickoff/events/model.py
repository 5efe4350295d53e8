"""Every event kickoff records, as frozen dataclasses. No I/O here.

The class name is the log's `type` column: never rename one. Changing a payload means
bumping VERSION and adding an upcaster in `codec.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")

OMITTED_AT_DEFAULT = {"omit_default": True}
"""Field metadata: the log's payload leaves the field out while it holds its default (a
plain task's submission stays as short as before the field existed); decoding fills the
default in again."""


def _later(default: Any) -> Any:
    """A field added to an event after its first version, left out of the payload at its
    default."""
    return field(default=default, metadata=OMITTED_AT_DEFAULT)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStarted:
    """The server opened the log; every running task's lease starts afresh from here."""

    VERSION: ClassVar[int] = 1
    version: str
    heartbeat_timeout_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSubmitted:
    """A client queued a task. Emitted once per task, before any claim.

    A task with dependencies (`after`: every one must succeed; `after_any`: every one must
    end) starts `waiting`; the others start `pending`.
    """

    VERSION: ClassVar[int] = 5
    task_id: int
    command: str
    require: frozenset[str] = frozenset()
    want: frozenset[str] = frozenset()
    priority: int = 0
    max_attempts: int = 3
    timeout_s: float | None = None  # added in v2; the v1 -> v2 upcaster sets None
    idempotency_key: str | None = None  # added in v2
    submitted_by: str | None = None  # added in v2: client address, if known
    # added in v3 (workflows), each left out of the payload at its default:
    after: tuple[int, ...] = _later(())  # ids that must succeed first
    after_any: tuple[int, ...] = _later(())  # ids that must end first, in any way
    group_id: int | None = _later(None)  # its group (GroupCreated)
    array_index: int | None = _later(None)  # KICKOFF_ARRAY_INDEX
    retries: int = _later(0)  # starts again after a failure, apart from max_attempts
    retry_delay_s: float = _later(0.0)  # before the first retry; doubles for each next one
    retry_on: tuple[int | str, ...] | None = _later(None)  # exit codes (and "timeout") to
    # retry; None: any failure
    # added in v4 (where and with what it runs), each left out of the payload at its default:
    cwd: str | None = _later(None)  # the absolute directory to run in; None: the worker's
    env: tuple[tuple[str, str], ...] = _later(())  # (name, value) pairs, sorted by name
    # added in v5 (counted resources), left out of the payload at its default:
    resources: tuple[tuple[str, int], ...] = _later(())  # (name, amount) asked for, by name


def fast_constructor(cls: type[T]) -> Callable[..., T]:
    """`cls(...)` for a hot path, with every field given positionally in field order.

    A frozen dataclass's __init__ calls object.__setattr__ once per field; this builds
    an unfrozen twin with the same fields and slots (its __init__, made by dataclasses
    from the same fields, stores them directly) and then makes the instance a `cls`,
    which the identical slot layout allows. The result is an ordinary frozen `cls`, at a
    quarter of the cost (a bulk submit makes two such objects per task).
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    twin = make_dataclass(f"_Unfrozen{cls.__name__}", names, slots=True)
    if vars(twin).get("__slots__") != vars(cls).get("__slots__"):
        raise TypeError(f"{cls.__name__} is not a slotted dataclass with only its fields")

    def construct(*values: Any) -> T:
        made = twin(*values)
        made.__class__ = cls
        return made  # type: ignore[no-any-return]

    construct.__name__ = construct.__qualname__ = f"fast_{cls.__name__}"
    return construct


task_submitted = fast_constructor(TaskSubmitted)
"""TaskSubmitted(task_id, command, require, want, priority, max_attempts, timeout_s,
idempotency_key, submitted_by, after, after_any, group_id, array_index, retries,
retry_delay_s, retry_on, cwd, env, resources) for a bulk submit, which makes one per task."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupCreated:
    """A submit started a group (`--group NAME`, `--from`, `--array`); `name` is None when
    the server names it (`g<id>`). `max_running` caps how many of its tasks run at once."""

    VERSION: ClassVar[int] = 1
    group_id: int
    name: str | None = None
    max_running: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskReleased:
    """The last dependency of a waiting task ended as it asked: the task is pending."""

    VERSION: ClassVar[int] = 1
    task_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskClaimed:
    """A worker took a pending task; `attempt` counts from 1.

    `resources`: the amounts the attempt holds on the worker until it ends (the task's
    request); `gpu_ids`: the devices it holds, of the worker's. `ahead_of`: a better-ranked
    task (SPEC §1) that fits the worker's total amounts but not its free ones, which this
    claim went ahead of (see state/matcher.py on reserving).
    """

    VERSION: ClassVar[int] = 2
    task_id: int
    worker_id: str
    attempt: int
    # added in v2 (counted resources), each left out of the payload at its default:
    resources: tuple[tuple[str, int], ...] = _later(())
    gpu_ids: tuple[int, ...] = _later(())
    ahead_of: int | None = _later(None)


task_claimed = fast_constructor(TaskClaimed)
"""TaskClaimed(task_id, worker_id, attempt, resources, gpu_ids, ahead_of) for a claim, the
hot path of every dispatch."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerHeartbeat:
    """A worker is alive and still runs these (task_id, attempt) pairs."""

    VERSION: ClassVar[int] = 1
    worker_id: str
    running: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCompleted:
    """The current attempt's command exited (exit code 0 succeeds, anything else fails).

    `retry_in_s` set: the task is not over; it waits that long (from this event's time)
    for its next attempt (`--retries`), which a TaskRequeued starts.
    """

    VERSION: ClassVar[int] = 3
    task_id: int
    worker_id: str
    attempt: int
    exit_code: int
    duration_s: float
    output_tail: str = ""
    timed_out: bool = False
    retry_in_s: float | None = _later(None)  # added in v2
    scratch_dir: str | None = _later(None)  # added in v3: where it ran, its cwd missing


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCancelRequested:
    """Someone asked to cancel the task (pending: cancelled at once; running: cancelling)."""

    VERSION: ClassVar[int] = 1
    task_id: int
    requested_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCancelled:
    """The task ended as cancelled (its process, if any, was killed). `reason` says why
    when nobody asked for it (a dependency failed)."""

    VERSION: ClassVar[int] = 3
    task_id: int
    attempt: int
    worker_id: str | None = None
    output_tail: str = ""
    reason: str | None = _later(None)  # added in v2
    scratch_dir: str | None = _later(None)  # added in v3: where it ran, its cwd missing


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskLeaseExpired:
    """The worker running this attempt was not heard from in time."""

    VERSION: ClassVar[int] = 1
    task_id: int
    worker_id: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRequeued:
    """The task is pending again and will be started as attempt `next_attempt`: its worker
    was lost or stopped, or (reason `retry ...`) its retry is due."""

    VERSION: ClassVar[int] = 1
    task_id: int
    next_attempt: int
    reason: str = "lease_expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed:
    """The task ended as failed without a completion (attempts used up, ...)."""

    VERSION: ClassVar[int] = 1
    task_id: int
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRegistered:
    """A worker process joined with its tags, slots and resource amounts; `gpu_ids`: the
    devices it hands out (as many as its `gpu` amount)."""

    VERSION: ClassVar[int] = 2
    worker_id: str
    name: str
    tags: frozenset[str] = frozenset()
    slots: int = 1
    host: str | None = None
    # added in v2 (counted resources), each left out of the payload at its default:
    resources: tuple[tuple[str, int], ...] = _later(())  # (name, amount) declared, by name
    gpu_ids: tuple[int, ...] = _later(())


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerTagsChanged:
    """A worker's tags were replaced; effective on its next claim."""

    VERSION: ClassVar[int] = 1
    worker_id: str
    tags: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStopped:
    """A worker deregistered cleanly."""

    VERSION: ClassVar[int] = 1
    worker_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerLost:
    """A worker was not heard from within the heartbeat timeout."""

    VERSION: ClassVar[int] = 1
    worker_id: str


Event = (
    ServerStarted
    | TaskSubmitted
    | GroupCreated
    | TaskReleased
    | TaskClaimed
    | WorkerHeartbeat
    | TaskCompleted
    | TaskCancelRequested
    | TaskCancelled
    | TaskLeaseExpired
    | TaskRequeued
    | TaskFailed
    | WorkerRegistered
    | WorkerTagsChanged
    | WorkerStopped
    | WorkerLost
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        ServerStarted,
        TaskSubmitted,
        GroupCreated,
        TaskReleased,
        TaskClaimed,
        WorkerHeartbeat,
        TaskCompleted,
        TaskCancelRequested,
        TaskCancelled,
        TaskLeaseExpired,
        TaskRequeued,
        TaskFailed,
        WorkerRegistered,
        WorkerTagsChanged,
        WorkerStopped,
        WorkerLost,
    )
}


HAS_TASK_ID = frozenset(cls for cls in EVENT_TYPES.values() if "task_id" in cls.__slots__)
HAS_WORKER_ID = frozenset(cls for cls in EVENT_TYPES.values() if "worker_id" in cls.__slots__)


def task_id_of(event: Event) -> int | None:
    """The task an event is about, for the log's indexed column."""
    return event.task_id if type(event) in HAS_TASK_ID else None  # type: ignore[union-attr]


def worker_id_of(event: Event) -> str | None:
    """The worker an event is about, for the log's indexed column."""
    return event.worker_id if type(event) in HAS_WORKER_ID else None  # type: ignore[union-attr]
