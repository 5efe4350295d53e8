"""The task parser: valid task objects become the NewTask they describe, anything else a
422 or 413 naming the field (in a batch, naming the item), never another exception."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kickoff import defaults
from kickoff.api import parse
from kickoff.errors import InvalidInput, KickoffError, TooLarge
from kickoff.state.decide import NewTask

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["cpu", "gpu", "a b", "x,y;z", "", " ", "é", "\x00", "\x1b[0m", "-"])
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=8
) | st.dictionaries(st.text(max_size=3), json_scalars, max_size=2)


VALID: dict[int, st.SearchStrategy[Any]] = {}  # id(mostly(...)) -> its valid half


def mostly(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid values three times in four, so that whole tasks are often valid."""
    mixed = st.integers(0, 3).flatmap(lambda i: valid if i else odd | json_values)
    VALID[id(mixed)] = valid
    return mixed


tags = mostly(
    st.none()
    | st.sampled_from(["cpu", "cpu gpu", "cpu,,gpu; x"])
    | st.lists(st.sampled_from(["cpu", "gpu", "a:b=c", "x" * 64]), max_size=4),
    st.sampled_from(["bad tag!", ""])
    | st.lists(st.sampled_from(["x" * 65, "a b", "", "ü", 3, None, ["cpu"]]), max_size=3)
    | st.lists(st.just("cpu"), min_size=129, max_size=130),
)
fields = {
    "command": mostly(
        st.sampled_from(["true", "x" * 65536]) | st.text(min_size=1, max_size=20),
        st.sampled_from(["", "a\x00b", "x" * 65537, "é" * 40000]),
    ),
    "require": tags,
    "want": tags,
    "priority": mostly(
        st.integers(defaults.MIN_PRIORITY, defaults.MAX_PRIORITY),
        st.sampled_from([defaults.MAX_PRIORITY + 1, True, 2.0, 2**64]),
    ),
    "max_attempts": mostly(
        st.integers(1, defaults.MAX_ATTEMPTS_LIMIT), st.sampled_from([0, 1001, False, 3.0])
    ),
    "timeout_s": mostly(
        st.none()
        | st.integers(1, 10**6)
        | st.floats(0.001, defaults.MAX_TIMEOUT_S)
        | st.just(defaults.MAX_TIMEOUT_S),
        st.sampled_from([0, 0.0009, float("nan"), float("inf"), True, 10**400, -1.0]),
    ),
    "idempotency_key": mostly(
        st.none() | st.text(min_size=1, max_size=8).filter(str.isprintable) | st.just("k" * 256),
        st.sampled_from(["", "a\tb", "x" * 257, "\x9b", "\x00", "a\u202eb", "\u200b", "\u2029"]),
    ),
}
task_objects = st.fixed_dictionaries(
    {"command": fields["command"]}, optional={k: v for k, v in fields.items() if k != "command"}
)
tasks = st.integers(0, 7).flatmap(
    lambda i: (
        task_objects
        if i > 2
        else st.fixed_dictionaries({}, optional={**fields, "surprise": json_values})
        if i
        else json_values
    )
)


valid_tasks = st.fixed_dictionaries(
    {"command": VALID[id(fields["command"])]},
    optional={k: VALID[id(v)] for k, v in fields.items() if k != "command"},
)


def described(value: dict[str, Any]) -> NewTask:
    """The NewTask a valid task object describes, by the API's documentation."""
    timeout = value.get("timeout_s")
    return NewTask(
        command=value["command"],
        require=described_tags(value.get("require")),
        want=described_tags(value.get("want")),
        priority=value.get("priority", 0),
        max_attempts=value.get("max_attempts", defaults.MAX_ATTEMPTS),
        timeout_s=None if timeout is None else float(timeout),
        idempotency_key=value.get("idempotency_key"),
    )


def described_tags(value: str | list[str] | None) -> frozenset[str]:
    words = [value] if isinstance(value, str) else value or []
    return frozenset(t for word in words for t in re.split(r"[\s,;]+", word) if t)


@given(valid_tasks)
def test_a_valid_task_is_the_new_task_it_describes(value: dict[str, Any]) -> None:
    task = parse.new_task(value)
    assert task == described(value)
    assert type(task) is NewTask and (task.timeout_s is None or type(task.timeout_s) is float)
    assert parse.submission({"tasks": [{"command": "true"}, value]}) == [
        NewTask(command="true"),
        task,
    ]


@given(tasks)
def test_any_value_is_a_new_task_or_an_error_naming_the_field(value: Any) -> None:
    try:
        task = parse.new_task(value)
    except (InvalidInput, TooLarge) as exc:
        assert exc.message.startswith("task")
        with pytest.raises(type(exc)) as in_batch:
            parse.submission({"tasks": [{"command": "true"}, value]})
        assert in_batch.value.message == "tasks[1]" + exc.message.removeprefix("task")
    else:
        assert isinstance(task, NewTask)
        assert parse.submission({"tasks": [value]}) == [task]


def test_a_task_with_every_field() -> None:
    value = {
        "command": "make -j4",
        "require": ["gpu", "cpu"],
        "want": "fast,big",
        "priority": -5,
        "max_attempts": 7,
        "timeout_s": 30,
        "idempotency_key": "job-1",
    }
    task = parse.new_task(value)
    assert task == NewTask(
        command="make -j4",
        require=frozenset({"cpu", "gpu"}),
        want=frozenset({"fast", "big"}),
        priority=-5,
        max_attempts=7,
        timeout_s=30.0,
        idempotency_key="job-1",
    )
    assert type(task.timeout_s) is float
    assert parse.submission({"tasks": [value, {"command": "true"}]}) == [
        task,
        NewTask(command="true"),
    ]


def test_every_new_task_field_has_one_rule() -> None:
    assert set(parse.TASK_RULES) == {f.name for f in dataclasses.fields(NewTask)}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"command": "t", "surprise": 1}, "tasks[1]: unknown field(s) 'surprise'"),
        ({"priority": 1}, "tasks[1].command: required"),
        ([], "tasks[1]: expected a JSON object"),
        ({"command": "é" * 40000}, "tasks[1].command: over 65536 bytes"),
        ({"command": "t", "want": ["a b", 3]}, "tasks[1].want: expected a list of tags"),
        ({"command": "t", "priority": True}, "tasks[1].priority: expected an integer"),
        ({"command": "t", "timeout_s": "1"}, "tasks[1].timeout_s: expected a number"),
    ],
)
def test_a_batch_names_the_item_and_the_field(value: Any, message: str) -> None:
    with pytest.raises(KickoffError) as refused:
        parse.submission({"tasks": [{"command": "true"}, value, {"command": "true"}]})
    assert refused.value.message == message
