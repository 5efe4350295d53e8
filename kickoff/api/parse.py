"""Request bodies and query strings -> the service's request types. Small explicit
functions, each raising InvalidInput (422) naming the field, MalformedRequest (400) for
bodies that are not JSON, TooLarge (413) for limits on size."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson
from starlette.requests import Request

from kickoff import defaults
from kickoff.errors import InvalidInput, KickoffError, MalformedRequest, TooLarge
from kickoff.state.decide import Completion, NewTask
from kickoff.state.decide import new_task as make_task
from kickoff.tags import check_tags, split_tags

_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})  # controls, invisible format marks, line breaks
_INT_RE = re.compile(r"-?[0-9]{1,19}")

TASK_FIELDS = frozenset(
    {"command", "require", "want", "priority", "max_attempts", "timeout_s", "idempotency_key"}
)


async def body(request: Request, *, limit: int = defaults.MAX_BODY_BYTES) -> Any:
    """The JSON body (an empty body is `{}`).

    Raises:
        TooLarge: over `limit` bytes.
        MalformedRequest: not JSON (or not UTF-8).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {declared} bytes is over the {limit} byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body is over the {limit} byte limit")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"request body is not valid JSON: {exc}") from None


def obj(
    value: Any, *, field: str = "body", allowed: frozenset[str] | set[str] | None = None
) -> dict[str, Any]:
    """A JSON object, optionally with only the allowed keys."""
    if not isinstance(value, dict):
        raise InvalidInput(f"{field}: expected a JSON object")
    if allowed is not None and not value.keys() <= allowed:
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise InvalidInput(f"{field}: unknown field(s) {', '.join(map(repr, unknown))}")
    return value


def integer(value: Any, *, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field}: expected an integer")
    if not low <= value <= high:
        raise InvalidInput(f"{field}: {value} is out of range {low}..{high}")
    return value


def number(value: Any, *, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{field}: expected a number")
    if not low <= value <= high:  # NaN and infinities too; an int too big for a float too
        raise InvalidInput(f"{field}: {value} is out of range {low}..{high}")
    return float(value)


def string(
    value: Any, *, field: str, max_chars: int, allow_empty: bool = False, plain: bool = False
) -> str:
    """A string of at most max_chars; never with NUL; with `plain`, no hidden characters
    at all (names and keys end up in terminals, where an escape sequence would act and a
    bidi control such as U+202E would show the name reversed)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: expected a string")
    if not value and not allow_empty:
        raise InvalidInput(f"{field}: must not be empty")
    if len(value) > max_chars:
        raise TooLarge(f"{field}: {len(value)} characters, at most {max_chars} allowed")
    if "\x00" in value:
        raise InvalidInput(f"{field}: must not contain NUL characters")
    if plain:
        hidden = hidden_char(value)
        if hidden is not None:
            raise InvalidInput(
                f"{field}: must not contain control or invisible format characters "
                f"(found U+{ord(hidden):04X})"
            )
    return value


def hidden_char(value: str) -> str | None:
    """The first character that a terminal would act on or not show: a control (Cc), an
    invisible format character such as a bidi override or a zero-width space (Cf), or a
    line or paragraph separator (Zl, Zp). None if there is none."""
    if value.isprintable():  # no Cc, Cf, Zl, Zp in it (nor other non-printables)
        return None
    category = unicodedata.category
    return next((c for c in value if category(c) in _HIDDEN), None)


def tags(value: Any, *, field: str, limit: int) -> frozenset[str]:
    """A list of tags, or one string of tags separated by space, comma or semicolon."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise InvalidInput(f"{field}: expected a list of tags")
    if len(value) > limit * 4:
        raise InvalidInput(f"{field}: {len(value)} tags, at most {limit} allowed")
    try:
        return _tag_set(tuple(value), limit)
    except InvalidInput as exc:  # name the field this request used
        raise InvalidInput(field + exc.message.removeprefix(_TAGS_FIELD)) from None


_TAGS_FIELD = "tags"


@lru_cache(maxsize=4096)  # tasks of a batch mostly share their tags (the field is not in the key)
def _tag_set(value: tuple[str, ...], limit: int) -> frozenset[str]:
    return check_tags(split_tags(value), field=_TAGS_FIELD, limit=limit)


def new_task(value: Any, *, field: str = "task") -> NewTask:
    """One task object.

    Raises:
        InvalidInput, TooLarge: naming `field` (`tasks[7].require`, say).
    """
    task = _plain_task(value)
    if task is not None:
        return task
    try:
        return _new_task(value, _field_names("task"))
    except KickoffError:
        if field == "task":
            raise
        return _new_task(value, _field_names(field))  # fails again, naming the batch item


def _plain_task(value: Any) -> NewTask | None:
    """A valid task with an ASCII command, checked inline (a bulk submit parses thousands);
    None sends any other value through `_new_task`, which takes the same valid tasks and
    names what is wrong with the invalid ones (tests/unit/test_parse.py holds them equal)."""
    if type(value) is not dict or not value.keys() <= TASK_FIELDS:
        return None
    get = value.get
    command, priority = get("command"), get("priority", 0)
    attempts = get("max_attempts", defaults.MAX_ATTEMPTS)
    timeout, key = get("timeout_s"), get("idempotency_key")
    if (
        type(command) is not str
        or not 0 < len(command) <= defaults.MAX_COMMAND_BYTES
        or not command.isascii()  # then its length is its size in bytes
        or "\x00" in command
        or type(priority) is not int
        or not defaults.MIN_PRIORITY <= priority <= defaults.MAX_PRIORITY
        or type(attempts) is not int
        or not 1 <= attempts <= defaults.MAX_ATTEMPTS_LIMIT
    ):
        return None
    if timeout is not None:
        if (
            type(timeout) not in (int, float)
            or not defaults.MIN_TIMEOUT_S <= timeout <= defaults.MAX_TIMEOUT_S
        ):
            return None  # NaN fails the comparison too
        timeout = float(timeout)
    if key is not None and (
        type(key) is not str
        or not 0 < len(key) <= defaults.MAX_IDEMPOTENCY_KEY_CHARS
        or hidden_char(key) is not None
    ):
        return None
    require, want = _plain_tags(get("require")), _plain_tags(get("want"))
    if require is None or want is None:
        return None
    return make_task(command, require, want, priority, attempts, timeout, key)


_NO_TAGS: frozenset[str] = frozenset()


def _plain_tags(value: Any) -> frozenset[str] | None:
    """A task's valid tags as `tags` reads them; None for anything else."""
    if value is None:
        return _NO_TAGS
    if type(value) is str:
        words: tuple[Any, ...] = (value,)
    elif type(value) is list and len(value) <= defaults.MAX_TASK_TAGS * 4:
        words = tuple(value)
    else:
        return None
    try:  # a word that is not a string: unhashable, or refused by the splitter
        return _tag_set(words, defaults.MAX_TASK_TAGS)
    except (TypeError, KickoffError):
        return None


@lru_cache(maxsize=64)
def _field_names(field: str) -> dict[str, str]:
    """Field names for messages, made once: formatting them per task costs a batch dearly."""
    return {name: f"{field}.{name}" for name in TASK_FIELDS} | {"": field}


def _new_task(value: Any, names: dict[str, str]) -> NewTask:
    field = names[""]
    task = obj(value, field=field, allowed=TASK_FIELDS)
    if "command" not in task:
        raise InvalidInput(f"{field}.command: required")
    command = string(task["command"], field=names["command"], max_chars=defaults.MAX_COMMAND_BYTES)
    if len(command.encode()) > defaults.MAX_COMMAND_BYTES:
        raise TooLarge(f"{field}.command: over {defaults.MAX_COMMAND_BYTES} bytes")
    timeout = task.get("timeout_s")
    key = task.get("idempotency_key")
    return NewTask(
        command=command,
        require=tags(task.get("require"), field=names["require"], limit=defaults.MAX_TASK_TAGS),
        want=tags(task.get("want"), field=names["want"], limit=defaults.MAX_TASK_TAGS),
        priority=integer(
            task.get("priority", 0),
            field=names["priority"],
            low=defaults.MIN_PRIORITY,
            high=defaults.MAX_PRIORITY,
        ),
        max_attempts=integer(
            task.get("max_attempts", defaults.MAX_ATTEMPTS),
            field=names["max_attempts"],
            low=1,
            high=defaults.MAX_ATTEMPTS_LIMIT,
        ),
        timeout_s=None
        if timeout is None
        else number(
            timeout,
            field=names["timeout_s"],
            low=defaults.MIN_TIMEOUT_S,
            high=defaults.MAX_TIMEOUT_S,
        ),
        idempotency_key=None
        if key is None
        else string(
            key,
            field=names["idempotency_key"],
            max_chars=defaults.MAX_IDEMPOTENCY_KEY_CHARS,
            plain=True,
        ),
    )


def submission(value: Any) -> list[NewTask]:
    """One task object, or `{"tasks": [...]}`: all valid, or nothing is submitted."""
    data = obj(value)
    if "tasks" not in data:
        return [new_task(data)]
    obj(data, allowed={"tasks"})
    items = data["tasks"]
    if not isinstance(items, list) or not items:
        raise InvalidInput("tasks: expected a non-empty list")
    if len(items) > defaults.MAX_BATCH:
        raise TooLarge(f"tasks: {len(items)} in one request, at most {defaults.MAX_BATCH}")
    tasks = []
    for i, item in enumerate(items):
        task = _plain_task(item)  # first: a field name per task costs a batch dearly
        tasks.append(task if task is not None else new_task(item, field=f"tasks[{i}]"))
    return tasks


def task_id(text: str) -> int:
    """A task id from a path or query: ASCII digits only (`int()` would take `١٢` or ` 12`)."""
    if not (
        text.isascii()
        and text.isdigit()
        and len(text) <= 13
        and 0 < int(text) <= defaults.MAX_TASK_ID
    ):
        raise InvalidInput(f"task id {text[:40]!r}: expected a positive integer")
    return int(text)


def registration(value: Any) -> tuple[str, frozenset[str], int, str | None]:
    data = obj(value, allowed={"name", "tags", "slots", "host"})
    name = string(data.get("name", ""), field="name", max_chars=defaults.MAX_NAME_CHARS, plain=True)
    host = data.get("host")
    return (
        name,
        tags(data.get("tags"), field="tags", limit=defaults.MAX_WORKER_TAGS),
        integer(data.get("slots", defaults.SLOTS), field="slots", low=1, high=defaults.MAX_SLOTS),
        None
        if host is None
        else string(host, field="host", max_chars=defaults.MAX_NAME_CHARS, plain=True),
    )


def claim(value: Any) -> tuple[int, float]:
    data = obj(value, allowed={"max_tasks", "wait_s"})
    return (
        integer(data.get("max_tasks", 1), field="max_tasks", low=1, high=defaults.MAX_SLOTS),
        number(data.get("wait_s", 0), field="wait_s", low=0, high=defaults.CLAIM_WAIT_S * 10),
    )


def heartbeat(value: Any) -> list[tuple[int, int]]:
    data = obj(value, allowed={"running"})
    running = data.get("running", [])
    if not isinstance(running, list) or len(running) > defaults.MAX_SLOTS:
        raise InvalidInput(f"running: expected a list of at most {defaults.MAX_SLOTS} pairs")
    pairs = []
    for i, pair in enumerate(running):
        if not isinstance(pair, list) or len(pair) != 2:
            raise InvalidInput(f"running[{i}]: expected [task_id, attempt]")
        pairs.append(
            (
                integer(pair[0], field=f"running[{i}][0]", low=1, high=defaults.MAX_TASK_ID),
                integer(pair[1], field=f"running[{i}][1]", low=1, high=defaults.MAX_ATTEMPTS_LIMIT),
            )
        )
    return pairs


COMPLETION_FIELDS = frozenset(
    {"worker_id", "attempt", "exit_code", "duration_s", "output_tail", "timed_out", "cancelled"}
)


def completion(task: int, value: Any) -> Completion:
    data = obj(value, allowed=COMPLETION_FIELDS)
    for required in ("worker_id", "attempt", "exit_code"):
        if required not in data:
            raise InvalidInput(f"{required}: required")
    timed_out, cancelled = data.get("timed_out", False), data.get("cancelled", False)
    if not isinstance(timed_out, bool) or not isinstance(cancelled, bool):
        raise InvalidInput("timed_out, cancelled: expected true or false")
    tail = string(
        data.get("output_tail", ""),
        field="output_tail",
        max_chars=4 * defaults.OUTPUT_TAIL_BYTES,
        allow_empty=True,
    )
    return Completion(
        task_id=task,
        worker_id=string(data["worker_id"], field="worker_id", max_chars=defaults.MAX_NAME_CHARS),
        attempt=integer(data["attempt"], field="attempt", low=1, high=defaults.MAX_ATTEMPTS_LIMIT),
        exit_code=integer(data["exit_code"], field="exit_code", low=-(1 << 31), high=1 << 31),
        duration_s=number(data.get("duration_s", 0.0), field="duration_s", low=0, high=1e10),
        output_tail=tail[-defaults.OUTPUT_TAIL_BYTES :],
        timed_out=timed_out,
        cancelled=cancelled,
    )


def tag_change(value: Any) -> tuple[frozenset[str], frozenset[str], frozenset[str] | None]:
    data = obj(value, allowed={"add", "remove", "set"})
    limit = defaults.MAX_WORKER_TAGS
    replace = data.get("set")
    result = (
        tags(data.get("add"), field="add", limit=limit),
        tags(data.get("remove"), field="remove", limit=limit),
        None if replace is None else tags(replace, field="set", limit=limit),
    )
    final = (result[2] if result[2] is not None else frozenset()) | result[0]
    if len(final) > limit:
        raise InvalidInput(f"tags: at most {limit} per worker")
    return result


def ids(value: Any) -> list[int]:
    data = obj(value, allowed={"ids"})
    items = data.get("ids")
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"ids: expected a list of 1..{defaults.MAX_BATCH} task ids")
    if len(items) > defaults.MAX_BATCH:
        raise TooLarge(f"ids: {len(items)} in one request, at most {defaults.MAX_BATCH}")
    return [
        integer(i, field=f"ids[{n}]", low=1, high=defaults.MAX_TASK_ID) for n, i in enumerate(items)
    ]


def query_int(params: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter: optional sign and ASCII digits, nothing else."""
    text = params.get(name)
    if text is None or text == "":
        return default
    if not _INT_RE.fullmatch(text):
        raise InvalidInput(f"{name}: expected an integer")
    value = int(text)
    if not low <= value <= high:
        raise InvalidInput(f"{name}: {value} is out of range {low}..{high}")
    return value


def query_list(values: list[str]) -> list[str]:
    """Repeated and comma-separated values of one query parameter, flattened."""
    return [v for text in values for v in text.split(",") if v]
