"""The parser's inline path for plain tasks takes exactly what the field-by-field one takes."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kickoff import defaults
from kickoff.api import parse
from kickoff.errors import KickoffError
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


def mostly(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid values three times in four, so that whole tasks are often valid."""
    return st.integers(0, 3).flatmap(lambda i: valid if i else odd | json_values)


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


def slow(value: Any) -> NewTask | type[KickoffError]:
    try:
        return parse._new_task(value, parse._field_names("task"))
    except KickoffError as exc:
        return type(exc)


@given(tasks)
def test_the_inline_path_agrees_with_the_checked_one(value: Any) -> None:
    fast = parse._plain_task(value)
    expected = slow(value)
    if fast is not None:
        assert fast == expected
    elif isinstance(expected, NewTask):
        assert not expected.command.isascii()  # the one valid case left to the long way
    if isinstance(expected, NewTask):
        assert parse.new_task(value) == expected


def test_plain_tasks_take_the_inline_path() -> None:
    value = {
        "command": "make -j4",
        "require": ["gpu", "cpu"],
        "want": "fast,big",
        "priority": -5,
        "max_attempts": 7,
        "timeout_s": 30,
        "idempotency_key": "job-1",
    }
    task = parse._plain_task(value)
    assert task == NewTask(
        command="make -j4",
        require=frozenset({"cpu", "gpu"}),
        want=frozenset({"fast", "big"}),
        priority=-5,
        max_attempts=7,
        timeout_s=30.0,
        idempotency_key="job-1",
    )
    assert task is not None and type(task.timeout_s) is float
    assert parse.submission({"tasks": [value, {"command": "true"}]}) == [
        task,
        NewTask(command="true"),
    ]
