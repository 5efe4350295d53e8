"""Every event type survives encode -> decode; payloads are canonical; bad rows are refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kickoff.errors import DatabaseRefused
from kickoff.events import codec
from kickoff.events import model as ev
from kickoff.events.model import EVENT_TYPES

ints = st.integers(-(2**63), 2**63 - 1)
floats = st.floats(allow_nan=False, allow_infinity=False)
texts = st.text(max_size=40)
tag_sets = st.frozensets(st.text(min_size=1, max_size=8), max_size=6)

# One strategy per field type spelling in model.py; a new spelling fails loudly below.
BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "int": ints,
    "str": texts,
    "str | None": st.none() | texts,
    "float": floats,
    "bool": st.booleans(),
    "frozenset[str]": tag_sets,
    "int | None": st.none() | ints,
    "float | None": st.none() | floats,
    "tuple[tuple[int, int], ...]": st.lists(st.tuples(ints, ints), max_size=5).map(tuple),
    "tuple[int, ...]": st.lists(ints, max_size=5).map(tuple),
    "tuple[tuple[str, str], ...]": st.lists(st.tuples(texts, texts), max_size=4).map(tuple),
    "tuple[tuple[str, int], ...]": st.lists(st.tuples(texts, ints), max_size=4).map(tuple),
    "tuple[int | str, ...] | None": st.none()
    | st.lists(ints | st.just("timeout"), max_size=4).map(tuple),
}


def strategy_for(cls: type[ev.Event]) -> st.SearchStrategy[ev.Event]:
    fields = {f.name: BY_TYPE[str(f.type)] for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


any_event = st.one_of([strategy_for(cls) for cls in EVENT_TYPES.values()])


def test_every_field_type_has_a_strategy() -> None:
    for cls in EVENT_TYPES.values():
        for f in dataclasses.fields(cls):
            assert str(f.type) in BY_TYPE, f"{cls.__name__}.{f.name}: {f.type}"


def test_registry_is_keyed_by_class_name_and_covers_the_spec() -> None:
    spec_types = {
        "TaskSubmitted",
        "TaskClaimed",
        "WorkerHeartbeat",
        "TaskCompleted",
        "TaskCancelRequested",
        "TaskCancelled",
        "TaskLeaseExpired",
        "TaskRequeued",
        "TaskFailed",
        "WorkerRegistered",
        "WorkerTagsChanged",
        "WorkerStopped",
        "WorkerLost",
        "ServerStarted",
    }
    assert spec_types <= set(EVENT_TYPES)
    assert all(cls.__name__ == name for name, cls in EVENT_TYPES.items())


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_round_trip_each_type(name: str) -> None:
    @given(strategy_for(EVENT_TYPES[name]))
    def round_trip(event: ev.Event) -> None:
        type_name, version, payload = codec.encode(event)
        assert (type_name, version) == (name, type(event).VERSION)
        back = codec.decode(type_name, version, payload)
        assert back == event
        assert type(back) is type(event)
        assert codec.encode(back) == (type_name, version, payload)

    round_trip()


@given(any_event)
def test_payload_is_canonical(event: ev.Event) -> None:
    _, _, payload = codec.encode(event)
    data = orjson.loads(payload)
    assert list(data) == sorted(data)
    assert list(data) == sorted(stored_payload(event))
    assert orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode() == payload  # compact
    for value in data.values():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            assert value == sorted(value)


def plain_payload(event: ev.Event) -> dict[str, Any]:
    """The payload by its definition: every field, tag sets as sorted lists."""
    return {
        f.name: sorted(value) if isinstance(value, frozenset) else value
        for f in dataclasses.fields(event)
        for value in [getattr(event, f.name)]
    }


def stored_payload(event: ev.Event) -> dict[str, Any]:
    """The plain payload without the fields left out of the log at their default."""
    return {
        name: value
        for f in dataclasses.fields(event)
        for name, value in plain_payload(event).items()
        if name == f.name and not (f.metadata.get("omit_default") and value == f.default)
    }


@given(any_event)
def test_the_generated_encoders_write_the_canonical_bytes(event: ev.Event) -> None:
    """Each type's generated encoder agrees byte for byte with sorting the plain payload
    dict (without the fields left out at their default): the hash chain covers these
    bytes. The payload handed to callers has every field."""
    cls = type(event)
    expected = orjson.dumps(stored_payload(event), option=orjson.OPT_SORT_KEYS)
    assert codec.PAYLOAD_ENCODERS[cls](event) == expected
    assert codec.encode(event) == (cls.__name__, cls.VERSION, expected.decode())
    assert codec.to_payload(event) == plain_payload(event)


def test_to_payload_gives_lists_of_its_own() -> None:
    event = ev.WorkerTagsChanged(worker_id="w1", tags=frozenset({"b", "a"}))
    codec.to_payload(event)["tags"].append("changed")
    assert codec.to_payload(event)["tags"] == ["a", "b"]
    assert codec.encode(event)[2] == '{"tags":["a","b"],"worker_id":"w1"}'


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_a_fast_constructor_makes_the_same_frozen_event(name: str) -> None:
    cls = EVENT_TYPES[name]
    construct = ev.fast_constructor(cls)

    @given(strategy_for(cls))
    def same(event: ev.Event) -> None:
        made = construct(*(getattr(event, f.name) for f in dataclasses.fields(cls)))
        assert made == event and type(made) is cls
        assert hash(made) == hash(event)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, dataclasses.fields(cls)[0].name, "changed")

    same()
    assert ev.task_submitted.__name__ == "fast_TaskSubmitted"


def test_a_fast_constructor_takes_every_field_and_only_dataclasses_with_slots() -> None:
    with pytest.raises(TypeError):
        ev.task_submitted(1, "true")
    with pytest.raises(TypeError, match="not a slotted dataclass"):
        ev.fast_constructor(dataclasses.dataclass(frozen=True)(type("Plain", (), {})))


def test_payload_does_not_depend_on_set_insertion_order() -> None:
    tags = [f"t{i}" for i in range(40)]
    one = ev.WorkerRegistered(worker_id="w1", name="n", tags=frozenset(tags))
    other = ev.WorkerRegistered(worker_id="w1", name="n", tags=frozenset(reversed(tags)))
    assert codec.encode(one) == codec.encode(other)


def test_payload_format_is_pinned() -> None:
    """The hash chain covers these bytes: changing the format breaks every old chain."""
    event = ev.TaskSubmitted(task_id=7, command="echo é", require=frozenset({"gpu", "cpu"}))
    assert codec.encode(event) == (
        "TaskSubmitted",
        5,  # v3's, v4's and v5's fields are left out at their default: the same bytes as v2
        '{"command":"echo é","idempotency_key":null,"max_attempts":3,"priority":0,'
        '"require":["cpu","gpu"],"submitted_by":null,"task_id":7,"timeout_s":null,"want":[]}',
    )


def test_task_submitted_v1_payload_is_upcast() -> None:
    v1 = (
        '{"command":"make","max_attempts":2,"priority":-1,"require":["cpu"],"task_id":3,'
        '"want":["fast"]}'
    )
    event = codec.decode("TaskSubmitted", 1, v1)
    assert event == ev.TaskSubmitted(
        task_id=3,
        command="make",
        require=frozenset({"cpu"}),
        want=frozenset({"fast"}),
        priority=-1,
        max_attempts=2,
        timeout_s=None,
        idempotency_key=None,
        submitted_by=None,
    )


def test_every_old_version_has_an_upcaster() -> None:
    for name, cls in EVENT_TYPES.items():
        for version in range(1, cls.VERSION):
            assert (name, version) in codec.UPCASTERS, f"{name} v{version} cannot be read"


def test_bytes_payload_decodes() -> None:
    _, _, payload = codec.encode(ev.WorkerLost(worker_id="w3"))
    assert codec.decode("WorkerLost", 1, payload.encode()) == ev.WorkerLost(worker_id="w3")


def test_unknown_type_is_refused() -> None:
    with pytest.raises(DatabaseRefused, match="unknown event type 'TaskExploded'"):
        codec.decode("TaskExploded", 1, "{}")


def test_newer_version_is_refused() -> None:
    _, _, payload = codec.encode(ev.TaskClaimed(task_id=1, worker_id="w1", attempt=1))
    with pytest.raises(DatabaseRefused, match=r"TaskClaimed v3 is newer .*upgrade kickoff"):
        codec.decode("TaskClaimed", 3, payload)


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "",
        b"\xff\xfe",
        "[]",
        "null",
        "42",
        '"text"',
        "{}",
        '{"task_id": 1, "worker_id": "w1"}',  # attempt missing
        '{"task_id": 1, "worker_id": "w1", "attempt": 1, "surprise": true}',
        '{"task_id": 1, "worker_id": "w1", "attempt": 1',  # cut short
    ],
)
def test_garbage_payload_is_refused(payload: str | bytes) -> None:
    with pytest.raises(DatabaseRefused, match="unreadable TaskClaimed"):
        codec.decode("TaskClaimed", 1, payload)


@pytest.mark.parametrize("payload", ["[]", "null", '{"command": "x"}', "nope"])
def test_garbage_v1_payload_is_refused_too(payload: str) -> None:
    with pytest.raises(DatabaseRefused):
        codec.decode("TaskSubmitted", 1, payload)


def test_non_list_tags_are_refused() -> None:
    with pytest.raises(DatabaseRefused):
        codec.decode("WorkerTagsChanged", 1, '{"tags": 5, "worker_id": "w1"}')


def test_fields_added_later_are_left_out_at_their_default() -> None:
    """A plain task's submission is as short as before the workflow fields existed."""
    plain = ev.TaskSubmitted(task_id=1, command="true")
    assert codec.encode(plain)[2] == (
        '{"command":"true","idempotency_key":null,"max_attempts":3,"priority":0,'
        '"require":[],"submitted_by":null,"task_id":1,"timeout_s":null,"want":[]}'
    )
    chained = ev.TaskSubmitted(task_id=3, command="true", after=(1, 2), retry_on=(3, "timeout"))
    assert '"after":[1,2]' in codec.encode(chained)[2]
    assert '"after_any"' not in codec.encode(chained)[2]
    assert codec.decode(*codec.encode(chained)) == chained
    placed = ev.TaskSubmitted(task_id=4, command="true", cwd="/srv", env=(("A", "1"),))
    assert '"cwd":"/srv","env":[["A","1"]]' in codec.encode(placed)[2]
    assert codec.decode(*codec.encode(placed)) == placed
    sized = ev.TaskSubmitted(task_id=5, command="true", resources=(("gpu", 2), ("mem", 1 << 34)))
    assert '"resources":[["gpu",2],["mem",17179869184]]' in codec.encode(sized)[2]
    assert codec.decode(*codec.encode(sized)) == sized
    plain_claim = ev.TaskClaimed(task_id=1, worker_id="w1", attempt=1)
    assert codec.encode(plain_claim)[2] == '{"attempt":1,"task_id":1,"worker_id":"w1"}'
    pinned = ev.TaskClaimed(
        task_id=1, worker_id="w1", attempt=1, resources=(("gpu", 2),), gpu_ids=(1, 3), ahead_of=7
    )
    assert codec.encode(pinned)[2] == (
        '{"ahead_of":7,"attempt":1,"gpu_ids":[1,3],"resources":[["gpu",2]],"task_id":1,'
        '"worker_id":"w1"}'
    )
    assert codec.decode(*codec.encode(pinned)) == pinned


@pytest.mark.parametrize(
    ("name", "version", "payload", "expected"),
    [
        (
            "TaskSubmitted",
            2,
            '{"command":"x","idempotency_key":null,"max_attempts":3,"priority":0,"require":[],'
            '"submitted_by":null,"task_id":1,"timeout_s":null,"want":[]}',
            ev.TaskSubmitted(task_id=1, command="x"),
        ),
        (
            "TaskSubmitted",
            3,
            '{"command":"x","idempotency_key":null,"max_attempts":3,"priority":0,"require":[],'
            '"retries":2,"submitted_by":null,"task_id":1,"timeout_s":null,"want":[]}',
            ev.TaskSubmitted(task_id=1, command="x", retries=2, cwd=None, env=()),
        ),
        (
            "TaskSubmitted",
            4,
            '{"command":"x","cwd":"/srv","idempotency_key":null,"max_attempts":3,"priority":0,'
            '"require":[],"submitted_by":null,"task_id":1,"timeout_s":null,"want":[]}',
            ev.TaskSubmitted(task_id=1, command="x", cwd="/srv", resources=()),
        ),
        (
            "TaskClaimed",
            1,
            '{"attempt":2,"task_id":1,"worker_id":"w3"}',
            ev.TaskClaimed(task_id=1, worker_id="w3", attempt=2, resources=(), gpu_ids=()),
        ),
        (
            "WorkerRegistered",
            1,
            '{"host":null,"name":"n","slots":2,"tags":["a"],"worker_id":"w1"}',
            ev.WorkerRegistered(
                worker_id="w1", name="n", tags=frozenset({"a"}), slots=2, resources=(), gpu_ids=()
            ),
        ),
        (
            "TaskCompleted",
            2,
            '{"attempt":1,"duration_s":1.5,"exit_code":3,"output_tail":"","retry_in_s":2.0,'
            '"task_id":2,"timed_out":false,"worker_id":"w1"}',
            ev.TaskCompleted(
                task_id=2, worker_id="w1", attempt=1, exit_code=3, duration_s=1.5, retry_in_s=2.0
            ),
        ),
        (
            "TaskCancelled",
            2,
            '{"attempt":1,"output_tail":"","reason":"dependency 3 failed","task_id":4,'
            '"worker_id":null}',
            ev.TaskCancelled(task_id=4, attempt=1, reason="dependency 3 failed"),
        ),
        (
            "TaskCompleted",
            1,
            '{"attempt":1,"duration_s":1.5,"exit_code":3,"output_tail":"","task_id":2,'
            '"timed_out":false,"worker_id":"w1"}',
            ev.TaskCompleted(task_id=2, worker_id="w1", attempt=1, exit_code=3, duration_s=1.5),
        ),
        (
            "TaskCancelled",
            1,
            '{"attempt":0,"output_tail":"","task_id":4,"worker_id":null}',
            ev.TaskCancelled(task_id=4, attempt=0),
        ),
    ],
)
def test_old_payloads_are_upcast(name: str, version: int, payload: str, expected: ev.Event) -> None:
    assert codec.decode(name, version, payload) == expected
