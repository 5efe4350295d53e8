"""Request bodies and query strings -> the service's request types. Small explicit
functions, each raising InvalidInput (422) naming the field, MalformedRequest (400) for
bodies that are not JSON, TooLarge (413) for limits on size. Each kind of value has one
rule (`integer_rule`, `string_rule`, ...); a task is checked field by field by the rules
in TASK_RULES, the one path for a single submit and for every task of a bulk one."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import orjson
from starlette.requests import Request

from kickoff import defaults, envvars, resources
from kickoff.errors import InvalidInput, KickoffError, MalformedRequest, TooLarge
from kickoff.state.decide import Completion, GroupRequest, NewTask
from kickoff.state.decide import new_task as make_task
from kickoff.tags import TAG_RE, check_tags, split_tags

_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})  # controls, invisible format marks, line breaks
_INT_RE = re.compile(r"-?[0-9]{1,19}")


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


Rule = Callable[[Any, str], Any]
"""A field's rule: (value, field name) -> the checked value, or raise naming the field.
Each kind of value has one, made once per limit; the functions below call them."""


@cache
def integer_rule(low: int, high: int) -> Rule:
    def check(value: Any, field: str) -> int:
        if type(value) is not int:  # JSON's true and false are not integers here
            raise InvalidInput(f"{field}: expected an integer")
        if not low <= value <= high:
            raise InvalidInput(f"{field}: {value} is out of range {low}..{high}")
        return value

    return check


@cache
def number_rule(low: float, high: float, *, optional: bool = False) -> Rule:
    """A number as a float; with `optional`, null too (as None)."""

    def check(value: Any, field: str) -> float | None:
        kind = type(value)
        if kind is not float and kind is not int:
            if value is None and optional:
                return None
            raise InvalidInput(f"{field}: expected a number")
        if not low <= value <= high:  # NaN and infinities too; an int too big for a float too
            raise InvalidInput(f"{field}: {value} is out of range {low}..{high}")
        return float(value)

    return check


@cache
def string_rule(
    max_chars: int,
    *,
    allow_empty: bool = False,
    plain: bool = False,
    optional: bool = False,
    in_bytes: bool = False,
) -> Rule:
    """A string of at most max_chars (with `in_bytes`, UTF-8 bytes); never with NUL; with
    `plain`, no hidden characters at all (names and keys end up in terminals, where an
    escape sequence would act and a bidi control such as U+202E would show the name
    reversed); with `optional`, null too (as None)."""

    def check(value: Any, field: str) -> str | None:
        if type(value) is not str:
            if value is None and optional:
                return None
            raise InvalidInput(f"{field}: expected a string")
        if not value and not allow_empty:
            raise InvalidInput(f"{field}: must not be empty")
        if len(value) > max_chars:
            raise TooLarge(f"{field}: {len(value)} characters, at most {max_chars} allowed")
        if in_bytes and not value.isascii() and len(value.encode()) > max_chars:
            raise TooLarge(f"{field}: over {max_chars} bytes")
        if "\x00" in value:
            raise InvalidInput(f"{field}: must not contain NUL characters")
        if plain and not value.isprintable():  # the common case without a call
            hidden = hidden_char(value)
            if hidden is not None:
                raise InvalidInput(
                    f"{field}: must not contain control or invisible format characters "
                    f"(found U+{ord(hidden):04X})"
                )
        return value

    return check


@cache
def tags_rule(limit: int) -> Rule:
    """A list of tags, or one string of tags separated by space, comma or semicolon."""

    def check(value: Any, field: str) -> frozenset[str]:
        if value is None:
            return _NO_TAGS
        if type(value) is str:
            words: tuple[Any, ...] = (value,)
        elif type(value) is list and len(value) <= limit * 4:
            words = tuple(value)
        elif type(value) is list:
            raise InvalidInput(f"{field}: {len(value)} tags, at most {limit} allowed")
        else:
            raise InvalidInput(f"{field}: expected a list of tags")
        try:
            return _tag_set(words, limit)
        except TypeError:  # a word that is not a string: unhashable, or refused by the splitter
            raise InvalidInput(f"{field}: expected a list of tags") from None
        except InvalidInput as exc:  # name the field this request used
            raise InvalidInput(field + exc.message.removeprefix(_TAGS_FIELD)) from None

    return check


_NO_TAGS: frozenset[str] = frozenset()
_TAGS_FIELD = "tags"


@lru_cache(maxsize=4096)  # tasks of a batch mostly share their tags (the field is not in the key)
def _tag_set(value: tuple[str, ...], limit: int) -> frozenset[str]:
    return check_tags(split_tags(value), field=_TAGS_FIELD, limit=limit)


@cache
def ids_rule(limit: int) -> Rule:
    """A list of at most `limit` task ids, as a tuple in first-seen order without repeats."""
    check_id = integer_rule(1, defaults.MAX_TASK_ID)

    def check(value: Any, field: str) -> tuple[int, ...]:
        if type(value) is not list:
            raise InvalidInput(f"{field}: expected a list of task ids")
        if len(value) > limit:
            raise InvalidInput(f"{field}: {len(value)} ids, at most {limit} allowed")
        return tuple(dict.fromkeys(check_id(v, field) for v in value))

    return check


@cache
def exit_codes_rule(limit: int) -> Rule:
    """A list of exit codes and maybe "timeout", or null; sorted, codes first."""
    check_code = integer_rule(-(1 << 31), 1 << 31)

    def check(value: Any, field: str) -> tuple[int | str, ...] | None:
        if value is None:
            return None
        if type(value) is not list or len(value) > limit:
            raise InvalidInput(f"{field}: expected a list of at most {limit} exit codes")
        timeout = "timeout" in value
        codes = sorted({check_code(v, field) for v in value if v != "timeout"})
        return (*codes, *(("timeout",) if timeout else ()))

    return check


def hidden_char(value: str) -> str | None:
    """The first character that a terminal would act on or not show: a control (Cc), an
    invisible format character such as a bidi override or a zero-width space (Cf), or a
    line or paragraph separator (Zl, Zp). None if there is none."""
    if value.isprintable():  # no Cc, Cf, Zl, Zp in it (nor other non-printables)
        return None
    category = unicodedata.category
    return next((c for c in value if category(c) in _HIDDEN), None)


def integer(value: Any, *, field: str, low: int, high: int) -> int:
    checked: int = integer_rule(low, high)(value, field)
    return checked


def number(value: Any, *, field: str, low: float, high: float) -> float:
    checked: float = number_rule(low, high)(value, field)
    return checked


def string(
    value: Any, *, field: str, max_chars: int, allow_empty: bool = False, plain: bool = False
) -> str:
    """See string_rule."""
    checked: str = string_rule(max_chars, allow_empty=allow_empty, plain=plain)(value, field)
    return checked


def tags(value: Any, *, field: str, limit: int) -> frozenset[str]:
    """See tags_rule."""
    checked: frozenset[str] = tags_rule(limit)(value, field)
    return checked


def cwd_rule(value: Any, field: str) -> str | None:
    """An absolute directory (at most MAX_CWD_BYTES, no NUL), or null."""
    if value is None:
        return None
    if type(value) is not str or not value.startswith("/"):
        raise InvalidInput(f"{field}: expected an absolute directory (starting with /)")
    if "\x00" in value:
        raise InvalidInput(f"{field}: must not contain NUL characters")
    if len(value.encode("utf-8", "surrogatepass")) > defaults.MAX_CWD_BYTES:
        raise TooLarge(f"{field}: over {defaults.MAX_CWD_BYTES} bytes")
    return value


def env_rule(value: Any, field: str) -> tuple[tuple[str, str], ...]:
    """An object of variable names to string values, as sorted (name, value) pairs."""
    if value is None:
        return ()
    if type(value) is not dict:
        raise InvalidInput(f"{field}: expected an object of names to values")
    if len(value) > defaults.MAX_ENV_VARS:
        raise TooLarge(f"{field}: {len(value)} variables, at most {defaults.MAX_ENV_VARS}")
    size = 0
    for name, text in value.items():
        problem = envvars.name_problem(name)
        if problem is not None:
            raise InvalidInput(f"{field}: {problem}")
        if type(text) is not str:
            raise InvalidInput(f"{field}.{name}: expected a string")
        if "\x00" in text:
            raise InvalidInput(f"{field}.{name}: must not contain NUL characters")
        size += envvars.size(name, text)
    if size > defaults.MAX_ENV_BYTES:
        raise TooLarge(
            f"{field}: {size} bytes of names and values, at most {defaults.MAX_ENV_BYTES}"
        )
    return tuple(sorted(value.items()))


def task_resources_rule(value: Any, field: str) -> resources.Resources:
    """A task's request: `{"gpu": 2, "mem": "16G"}` or `"gpu=2,mem=16G"`; each at least 1."""
    return resources.from_json(value, field=field, task=True)


# -- tasks: one rule per field ---------------------------------------------------------


_task_tags = tags_rule(defaults.MAX_TASK_TAGS)
TASK_RULES: dict[str, Rule] = {
    "command": string_rule(defaults.MAX_COMMAND_BYTES, in_bytes=True),
    "require": _task_tags,
    "want": _task_tags,
    "priority": integer_rule(defaults.MIN_PRIORITY, defaults.MAX_PRIORITY),
    "max_attempts": integer_rule(1, defaults.MAX_ATTEMPTS_LIMIT),
    "timeout_s": number_rule(defaults.MIN_TIMEOUT_S, defaults.MAX_TIMEOUT_S, optional=True),
    "idempotency_key": string_rule(defaults.MAX_IDEMPOTENCY_KEY_CHARS, plain=True, optional=True),
    "after": ids_rule(defaults.MAX_DEPENDENCIES),
    "after_any": ids_rule(defaults.MAX_DEPENDENCIES),
    "array_index": integer_rule(0, defaults.MAX_ARRAY_INDEX),
    "retries": integer_rule(0, defaults.MAX_RETRIES),
    "retry_delay_s": number_rule(0, defaults.MAX_RETRY_DELAY_S),
    "retry_on": exit_codes_rule(defaults.MAX_RETRY_CODES),
    "cwd": cwd_rule,
    "env": env_rule,
    "resources": task_resources_rule,
}
TASK_FIELDS = frozenset(TASK_RULES)
# A task's fields in NewTask's order with their defaults (a given field replaces its own);
# tests/unit/test_parse.py holds the fields and the rules to the same names.
_TASK_DEFAULTS = {f.name: f.default for f in dataclasses.fields(NewTask)}


@lru_cache(maxsize=64)
def _field_names(field: str) -> dict[str, str]:
    """Field names for messages, made once: formatting them per task costs a batch dearly."""
    return {name: f"{field}.{name}" for name in TASK_FIELDS} | {"": field}


def _new_task(value: Any, names: dict[str, str]) -> NewTask:
    """One task object, each given field checked by its rule (a bulk submit parses
    thousands: every field absent costs nothing, and the NewTask is made positionally)."""
    if type(value) is not dict:
        raise InvalidInput(f"{names['']}: expected a JSON object")
    if "command" not in value:
        obj(value, field=names[""], allowed=TASK_FIELDS)  # unknown fields are named first
        raise InvalidInput(f"{names['command']}: required")
    checked, rules = _TASK_DEFAULTS.copy(), TASK_RULES
    try:
        for name, given in value.items():
            checked[name] = rules[name](given, names[name])
    except KeyError:  # a field without a rule
        obj(value, field=names[""], allowed=TASK_FIELDS)  # raises, naming it
        raise
    return make_task(*checked.values())


def new_task(value: Any, *, field: str = "task") -> NewTask:
    """One task object.

    Raises:
        InvalidInput, TooLarge: naming `field` (`tasks[7].require`, say).
    """
    return _new_task(value, _field_names(field))


def submission(value: Any) -> list[NewTask]:
    """One task object, or `{"tasks": [...]}`: all valid, or nothing is submitted. Either
    may name a `group` (see `group`)."""
    data = obj(value)
    if "tasks" not in data:
        return [new_task({k: v for k, v in data.items() if k != "group"})]
    obj(data, allowed={"tasks", "group"})
    items = data["tasks"]
    if not isinstance(items, list) or not items:
        raise InvalidInput("tasks: expected a non-empty list")
    if len(items) > defaults.MAX_BATCH:
        raise TooLarge(f"tasks: {len(items)} in one request, at most {defaults.MAX_BATCH}")
    tasks: list[NewTask] = []
    add, names = tasks.append, _field_names("task")
    try:
        for item in items:
            add(_new_task(item, names))  # a name per task would cost a batch dearly
    except KickoffError:
        failed = len(tasks)
        _new_task(items[failed], _field_names(f"tasks[{failed}]"))  # fails again, named
        raise
    return tasks


GROUP_FIELDS = frozenset({"name", "max_running"})


def group(value: Any) -> GroupRequest | None:
    """A submit body's `group`: `{"name": NAME, "max_running": N}`, both optional (no
    name: a new group the server names), or just the name; None when there is none.

    Raises:
        InvalidInput: a malformed group or name.
    """
    given = obj(value).get("group")
    if given is None:
        return None
    if type(given) is str:
        given = {"name": given}
    data = obj(given, field="group", allowed=GROUP_FIELDS)
    name = data.get("name")
    if name is not None:
        group_name(name)
    cap = data.get("max_running")
    if cap is not None:
        cap = integer(cap, field="group.max_running", low=1, high=defaults.MAX_GROUP_RUNNING)
    return GroupRequest(name=name, max_running=cap)


def group_name(value: Any, *, field: str = "group.name") -> str:
    """A group's name: 1-64 characters of the tag alphabet (it goes into shell commands).

    Raises:
        InvalidInput: anything else.
    """
    if type(value) is not str or not TAG_RE.fullmatch(value):
        shown = repr(value)[:80]
        raise InvalidInput(
            f"{field}: invalid group name {shown}: 1-{defaults.MAX_GROUP_NAME_CHARS} "
            "characters from A-Z a-z 0-9 _ . : = + / -"
        )
    return value


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """A worker's registration request, checked."""

    name: str
    tags: frozenset[str]
    slots: int
    host: str | None
    resources: resources.Resources = ()
    gpu_ids: tuple[int, ...] = ()


REGISTRATION_FIELDS = frozenset({"name", "tags", "slots", "host", "resources", "gpu_ids"})


def registration(value: Any) -> Registration:
    """A registration: name, tags, slots, host, resources (0 allowed), and `gpu_ids`, the
    devices it hands out (as many as its `gpu` amount, distinct; default 0..gpu-1).

    Raises:
        InvalidInput: naming the field.
    """
    data = obj(value, allowed=REGISTRATION_FIELDS)
    name = string(data.get("name", ""), field="name", max_chars=defaults.MAX_NAME_CHARS, plain=True)
    host = data.get("host")
    declared = resources.from_json(data.get("resources"), field="resources", task=False)
    return Registration(
        name=name,
        tags=tags(data.get("tags"), field="tags", limit=defaults.MAX_WORKER_TAGS),
        slots=integer(
            data.get("slots", defaults.SLOTS), field="slots", low=1, high=defaults.MAX_SLOTS
        ),
        host=None
        if host is None
        else string(host, field="host", max_chars=defaults.MAX_NAME_CHARS, plain=True),
        resources=declared,
        gpu_ids=_gpu_ids(data.get("gpu_ids"), dict(declared).get(resources.GPU, 0)),
    )


def _gpu_ids(value: Any, gpus: int) -> tuple[int, ...]:
    if value is None:
        return tuple(range(gpus))
    check_id = integer_rule(0, 1 << 20)
    if type(value) is not list:
        raise InvalidInput("gpu_ids: expected a list of device indices")
    ids = tuple(check_id(v, "gpu_ids") for v in value)
    if len(set(ids)) != len(ids):
        raise InvalidInput("gpu_ids: a device is listed twice")
    if len(ids) != gpus:
        raise InvalidInput(f"gpu_ids: {len(ids)} devices for resources gpu={gpus}")
    return ids


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
    {
        "worker_id",
        "attempt",
        "exit_code",
        "duration_s",
        "output_tail",
        "timed_out",
        "cancelled",
        "scratch_dir",
    }
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
        scratch_dir=cwd_rule(data.get("scratch_dir"), "scratch_dir"),
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


MAX_SEARCH_CHARS = 200


def search_text(text: str | None) -> str | None:
    """The `q` of a task search: a substring of the command."""
    if not text:
        return None
    if len(text) > MAX_SEARCH_CHARS:
        raise InvalidInput(f"q: at most {MAX_SEARCH_CHARS} characters")
    return text


def search_tag(text: str | None) -> str | None:
    """The `tag` of a task search: one tag, by the tag grammar."""
    if not text:
        return None
    found = tags(text, field="tag", limit=1)
    if len(found) != 1:
        raise InvalidInput("tag: expected one tag")
    return next(iter(found))


def output_rest(value: Any) -> tuple[int, bytes]:
    """A report's `output`: `{"offset": B, "text": "..."}`, the attempt's last output
    (from byte B on, as UTF-8), which ends where it ends."""
    data = obj(value, field="output", allowed={"offset", "text"})
    offset = integer(data.get("offset"), field="output.offset", low=0, high=1 << 50)
    text = data.get("text", "")
    if not isinstance(text, str):
        raise InvalidInput("output.text: expected a string")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("output.text: not valid UTF-8 (a lone surrogate)") from None
    if len(raw) > defaults.OUTPUT_CHUNK_BYTES:
        raise TooLarge(f"output.text: over {defaults.OUTPUT_CHUNK_BYTES} bytes")
    return offset, raw
