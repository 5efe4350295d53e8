"""`new`'s workflow words: ids, exit codes, array specs, groups; and how `new` reads them."""

from __future__ import annotations

import pytest

from kickoff.cli import _workflow
from kickoff.cli._syntax import parse_new
from kickoff.errors import InvalidInput


@pytest.mark.parametrize(
    ("spec", "indices", "cap"),
    [
        ("1-5", [1, 2, 3, 4, 5], None),
        ("0-99:33", [0, 33, 66, 99], None),
        ("1,5,7", [1, 5, 7], None),
        ("1-3,10,20-24:2", [1, 2, 3, 10, 20, 22, 24], None),
        ("7", [7], None),
        ("1-240%20", list(range(1, 241)), 20),
    ],
)
def test_array_forms(spec: str, indices: list[int], cap: int | None) -> None:
    assert _workflow.array_indices(spec) == (indices, cap)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("5-1", "5-1 is an empty range"),
        ("1-4:0", "is an empty range"),
        ("1-", "expected N, N-M or N-M:STEP"),
        ("a-b", "'a' is not an index"),
        ("-3", "expected N, N-M or N-M:STEP"),
        ("1,1", "an index appears twice"),
        ("1-2%x", "after % comes how many may run at once"),
        ("0-100000", "more than 100,000 tasks in one array"),
    ],
)
def test_bad_array_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        _workflow.array_indices(spec)


def test_ids_and_codes() -> None:
    assert _workflow.task_ids(["12,13", "12", "14"], "--after") == [12, 13, 14]
    with pytest.raises(InvalidInput, match="'x' is not a task id"):
        _workflow.task_ids(["x"], "--after")
    with pytest.raises(InvalidInput, match="'0' is not a task id"):
        _workflow.task_ids(["0"], "--after")
    assert _workflow.retry_codes(["75", "timeout,3"]) == [75, "timeout", 3]
    assert _workflow.retry_codes(None) is None
    with pytest.raises(InvalidInput, match="'often' is not an exit code or `timeout`"):
        _workflow.retry_codes(["often"])


def test_groups() -> None:
    assert _workflow.group_request(None, None, always=False) is None
    assert _workflow.group_request(None, None, always=True) == {}
    assert _workflow.group_request("shot12", 20, always=False) == {
        "name": "shot12",
        "max_running": 20,
    }


def test_list_options_of_new_take_their_words_like_tags() -> None:
    words = parse_new(["--after", "3", "4", "--retry-on", "75", "timeout", "--", "make"])
    assert words.options == (
        ("after", "3"),
        ("after", "4"),
        ("retry-on", "75"),
        ("retry-on", "timeout"),
    )
    assert words.command == ("make",)
    seed = parse_new(["./render.sh", "-array", "1-4", "-max-running", "2", "-group", "shot"])
    assert seed.command == ("./render.sh",)
    assert seed.options == (("array", "1-4"), ("max-running", "2"), ("group", "shot"))
    with pytest.raises(InvalidInput, match="3 make are all values of --after"):
        parse_new(["--after", "3", "make"])
