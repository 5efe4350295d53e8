"""Pure helpers of the output: ages, durations, exit codes, command strings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kickoff.cli import _terminal, _wait, _words
from kickoff.cli._submit import command_string as _command_string

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def iso(delta_s: float) -> str:
    return (NOW - timedelta(seconds=delta_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "just now"),
        (3, "3s ago"),
        (59, "59s ago"),
        (60, "1m ago"),
        (119 * 60, "119m ago"),
        (2 * 3600, "2h ago"),
        (47 * 3600, "47h ago"),
        (3 * 86400, "3d ago"),
        (-2, "just now"),
        (-60, "in 1m"),
    ],
)
def test_ago(seconds: float, text: str) -> None:
    assert _words.ago(iso(seconds), NOW) == text


def test_ago_without_a_time() -> None:
    assert _words.ago(None, NOW) == "-"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.123, "0.12s"), (12.34, "12.3s"), (245, "4m05s"), (7380, "2h03m")],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert _words.duration(seconds) == text


def test_one_line_escapes_control_characters() -> None:
    assert _terminal.one_line("a\tb\nc") == "a\\tb\\nc"
    assert _terminal.one_line("abcdef", 4) == "abc…"


def test_summary_of_an_event_payload() -> None:
    data = {"task_id": 3, "attempt": 1, "exit_code": 0, "tags": ["a", "b"], "reason": None}
    assert _words.summary(data, skip=("task_id",)) == "attempt=1 exit_code=0 tags=a b"


def test_a_summary_leaves_out_what_says_nothing() -> None:
    data = {"priority": 0, "retries": 0, "retry_delay_s": 0.0, "timed_out": False, "after": []}
    assert _words.summary({**data, "max_attempts": 3, "exit_code": 0}) == (
        "max_attempts=3 exit_code=0"
    )


@pytest.mark.parametrize(
    ("task", "code"),
    [
        ({"state": "succeeded", "exit_code": 0}, 0),
        ({"state": "failed", "exit_code": 3}, 3),
        ({"state": "failed", "exit_code": None}, 1),  # timed out, attempts used up
        ({"state": "failed", "exit_code": -9}, 137),  # killed by SIGKILL
        ({"state": "failed", "exit_code": 256}, 1),
        ({"state": "cancelled", "exit_code": None}, 1),
        ({"state": "cancelled", "exit_code": -15}, 1),
    ],
)
def test_exit_code_of_a_waited_task(task: dict[str, object], code: int) -> None:
    assert _wait.exit_code(task) == code


@pytest.mark.parametrize(
    ("words", "command"),
    [
        (["./run.sh"], "./run.sh"),
        (
            ["echo hi > out.txt && cat out.txt"],
            "echo hi > out.txt && cat out.txt",
        ),  # one word: shell text
        (["ls", "-la", "my dir"], "ls -la 'my dir'"),  # several: each stays one word
        (["python", "-c", "print(1)"], "python -c 'print(1)'"),
    ],
)
def test_command_string(words: list[str], command: str) -> None:
    assert _command_string(words) == command


def _waiting_on_a_retry(retry_at: str) -> dict[str, object]:
    return {
        "id": 7,
        "state": "waiting",
        "command": "make",
        "require": [],
        "want": [],
        "priority": 0,
        "attempt": 1,
        "max_attempts": 1,
        "retries": 2,
        "retries_left": 1,
        "worker": None,
        "exit_code": 3,
        "submitted_at": "2026-01-01T11:59:00.000000Z",
        "started_at": None,
        "finished_at": None,
        "retry_at": retry_at,
    }


@pytest.mark.parametrize(
    ("retry_at", "shown"),
    [
        ("2026-01-01T12:00:10.250000Z", "retry at 12:00:10"),
        ("2026-01-02T00:00:05.000000Z", "retry at 01-02 00:00:05"),  # not today: with the day
    ],
)
def test_status_shows_a_retry_as_a_clock_time_and_info_the_full_time(
    retry_at: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from freezegun import freeze_time

    from kickoff.cli import _view_tasks

    task = _waiting_on_a_retry(retry_at)
    with freeze_time(NOW):
        _view_tasks.status({"tasks": [task], "counts": {"waiting": 1}}, ["waiting"])
        _, row = capsys.readouterr().out.splitlines()
        assert row.split("\t")[4] == shown
        _view_tasks.info(task, [])
    assert f"waits for: retry at {retry_at}\n" in capsys.readouterr().out
