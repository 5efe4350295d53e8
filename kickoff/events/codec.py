"""Events to and from the log's JSON payload, with upcasters for old versions. No I/O here.

Payloads are canonical JSON (sorted keys, compact, tags as sorted lists) so that the hash
chain over them is stable. An old payload is upgraded one version at a time by the
functions in UPCASTERS; never edit one that has shipped, only add.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson

from kickoff.errors import DatabaseRefused
from kickoff.events.model import EVENT_TYPES, Event

JSON = dict[str, Any]
Upcaster = Callable[[JSON], JSON]


def _task_submitted_v1_to_v2(payload: JSON) -> JSON:
    """v2 added timeout_s, idempotency_key and submitted_by; a v1 task had none of them."""
    return {**payload, "timeout_s": None, "idempotency_key": None, "submitted_by": None}


def _task_submitted_v2_to_v3(payload: JSON) -> JSON:
    """v3 added the workflow fields (dependencies, group, array index, retries); a v2 task
    had none of them."""
    return {
        **payload,
        "after": [],
        "after_any": [],
        "group_id": None,
        "array_index": None,
        "retries": 0,
        "retry_delay_s": 0.0,
        "retry_on": None,
    }


def _task_submitted_v3_to_v4(payload: JSON) -> JSON:
    """v4 added cwd and env; a v3 task ran in its worker's directory with its environment."""
    return {**payload, "cwd": None, "env": []}


def _task_submitted_v4_to_v5(payload: JSON) -> JSON:
    """v5 added resources; a v4 task asked for none."""
    return {**payload, "resources": []}


def _task_claimed_v1_to_v2(payload: JSON) -> JSON:
    """v2 added resources, gpu_ids and ahead_of; a v1 claim held nothing, went ahead of
    nothing."""
    return {**payload, "resources": [], "gpu_ids": [], "ahead_of": None}


def _worker_registered_v1_to_v2(payload: JSON) -> JSON:
    """v2 added resources and gpu_ids; a v1 worker declared none."""
    return {**payload, "resources": [], "gpu_ids": []}


def _task_completed_v1_to_v2(payload: JSON) -> JSON:
    """v2 added retry_in_s; a v1 completion always ended its task."""
    return {**payload, "retry_in_s": None}


def _task_cancelled_v1_to_v2(payload: JSON) -> JSON:
    """v2 added reason; a v1 cancel was always asked for."""
    return {**payload, "reason": None}


def _task_completed_v2_to_v3(payload: JSON) -> JSON:
    """v3 added scratch_dir; a v2 attempt ran where it was asked to."""
    return {**payload, "scratch_dir": None}


def _task_cancelled_v2_to_v3(payload: JSON) -> JSON:
    """v3 added scratch_dir; a v2 attempt ran where it was asked to."""
    return {**payload, "scratch_dir": None}


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("TaskSubmitted", 1): _task_submitted_v1_to_v2,
    ("TaskSubmitted", 2): _task_submitted_v2_to_v3,
    ("TaskSubmitted", 3): _task_submitted_v3_to_v4,
    ("TaskSubmitted", 4): _task_submitted_v4_to_v5,
    ("TaskClaimed", 1): _task_claimed_v1_to_v2,
    ("WorkerRegistered", 1): _worker_registered_v1_to_v2,
    ("TaskCompleted", 1): _task_completed_v1_to_v2,
    ("TaskCancelled", 1): _task_cancelled_v1_to_v2,
    ("TaskCompleted", 2): _task_completed_v2_to_v3,
    ("TaskCancelled", 2): _task_cancelled_v2_to_v3,
}


def _converters(cls: type[Event]) -> dict[str, Callable[[Any], Any]]:
    """How each non-plain JSON field becomes its Python type again."""
    out: dict[str, Callable[[Any], Any]] = {}
    for field in dataclasses.fields(cls):
        kind = str(field.type)
        if kind.startswith("frozenset"):
            out[field.name] = _tag_list
        elif kind.startswith("tuple[tuple"):
            out[field.name] = lambda rows: tuple(tuple(row) for row in rows)
        elif kind.startswith("tuple["):
            out[field.name] = _flat_tuple
    return out


def _flat_tuple(value: Any) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return tuple(value)


def _tag_list(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValueError(f"expected a list of tags, got {type(value).__name__}")
    return frozenset(value)


_CONVERTERS = {name: _converters(cls) for name, cls in EVENT_TYPES.items()}
_FIELDS = {
    name: tuple(f.name for f in dataclasses.fields(cls)) for name, cls in EVENT_TYPES.items()
}


_SET_FIELDS = {
    name: frozenset(f.name for f in dataclasses.fields(cls) if str(f.type).startswith("frozenset"))
    for name, cls in EVENT_TYPES.items()
}


@lru_cache(maxsize=4096)  # tag sets repeat heavily: tasks of a batch mostly share theirs
def _sorted_tags(tags: frozenset[str]) -> list[str]:
    """A tag set as its payload list (shared: callers only serialize it, never change it)."""
    return sorted(tags)


_OMITTED = {
    name: {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.metadata.get("omit_default") and f.default is not dataclasses.MISSING
    }
    for name, cls in EVENT_TYPES.items()
}


def _payload_function(cls: type[Event], *, encode: bool) -> Callable[[Any], Any]:
    """The payload of a `cls` event as one dict display made from the class's fields: keys
    in sorted order, tag sets as sorted lists; with `encode`, its canonical JSON bytes
    (orjson keeps the keys' order, so these are the bytes OPT_SORT_KEYS would give), in
    which fields marked OMITTED_AT_DEFAULT are left out while they hold their default.

    Generated from the fields, the way dataclasses makes __init__, so that every event
    type has the one encoder and it is as fast as one written out by hand (a bulk submit
    encodes one TaskSubmitted per task). The source holds only the fields' names.
    """
    sets = _SET_FIELDS[cls.__name__]
    omitted = _OMITTED[cls.__name__] if encode else {}

    def display(names: list[str]) -> str:
        items = (f"{n!r}: {f'tags(e.{n})' if n in sets else f'e.{n}'}" for n in names)
        return "{" + ", ".join(items) + "}"

    names = sorted(_FIELDS[cls.__name__])
    wrap = "dumps({})" if encode else "{}"
    lines = [f"return {wrap.format(display(names))}"]
    if omitted:  # mostly all of them hold their default: one display without them
        # `is`: the defaults reach events as the very objects (a miss only costs the slow
        # path, which compares with ==)
        at_default = " and ".join(f"e.{n} is default_{n}" for n in sorted(omitted))
        kept = [n for n in names if n not in omitted]
        lines = [
            f"if {at_default}: return {wrap.format(display(kept))}",
            f"d = {display(names)}",
            *(f"if e.{n} == default_{n}: del d[{n!r}]" for n in sorted(omitted)),
            f"return {wrap.format('d')}",
        ]
    tags = _sorted_tags if encode else sorted  # a dict for callers gets lists of its own
    namespace: dict[str, Any] = {"dumps": orjson.dumps, "tags": tags}
    namespace.update({f"default_{name}": value for name, value in omitted.items()})
    source = "".join(f"    {line}\n" for line in lines)
    exec(f"def payload(e):\n{source}", namespace)
    function: Callable[[Any], Any] = namespace["payload"]
    function.__name__ = function.__qualname__ = (
        f"{'encode' if encode else 'payload'}_{cls.__name__}"
    )
    return function


_PAYLOADS = {cls: _payload_function(cls, encode=False) for cls in EVENT_TYPES.values()}
PAYLOAD_ENCODERS: dict[type[Event], Callable[[Any], bytes]] = {
    cls: _payload_function(cls, encode=True) for cls in EVENT_TYPES.values()
}


def to_payload(event: Event) -> JSON:
    """The event's fields as a JSON-ready dict (sets as sorted lists)."""
    payload: JSON = _PAYLOADS[type(event)](event)
    return payload


def encode(event: Event) -> tuple[str, int, str]:
    """(type, version, canonical JSON payload) for the log."""
    cls = type(event)
    return cls.__name__, cls.VERSION, PAYLOAD_ENCODERS[cls](event).decode()


def decode(type_name: str, version: int, payload: str | bytes) -> Event:
    """Rebuild an event from a log row, upcasting old versions.

    Raises:
        DatabaseRefused: unknown type, a version newer than this program, or a bad payload.
    """
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise DatabaseRefused(f"unknown event type {type_name!r} in the log")
    if version > cls.VERSION:
        raise DatabaseRefused(
            f"{type_name} v{version} is newer than this kickoff understands "
            f"(v{cls.VERSION}); upgrade kickoff"
        )
    try:
        data = orjson.loads(payload)
        while version < cls.VERSION:
            data = UPCASTERS[(type_name, version)](data)
            version += 1
        for name, convert in _CONVERTERS[type_name].items():
            if name in data:
                data[name] = convert(data[name])
        return cls(**data)
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
        raise DatabaseRefused(f"unreadable {type_name} v{version} payload: {exc}") from exc
