"""A broken or hostile server's answers are refused field by field, never run."""

from __future__ import annotations

from typing import Any

import pytest

from kickoff import defaults
from kickoff.errors import IllegalTransition, KickoffError, NotFound, Unavailable
from kickoff.worker import replies
from kickoff.worker.process import Assignment
from kickoff.worker.replies import BadReply, Refused


def test_a_good_claim_answer() -> None:
    answer = {"tasks": [{"task_id": 3, "attempt": 1, "command": "echo hi", "timeout_s": 2}]}
    items, problems = replies.claimed(answer, limit=1)
    assert items == [Assignment(task_id=3, attempt=1, command="echo hi", timeout_s=2.0)]
    assert problems == []


@pytest.mark.parametrize(
    "answer",
    [None, [], "tasks", {"tasks": None}, {"tasks": {"task_id": 1}}, {"nope": []}, 42],
)
def test_claim_answers_without_a_task_list_start_nothing(answer: Any) -> None:
    items, problems = replies.claimed(answer, limit=4)
    assert items == [] and problems


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "echo hi",
        {"task_id": "1", "attempt": 1, "command": "true"},
        {"task_id": 1.0, "attempt": 1, "command": "true"},
        {"task_id": True, "attempt": 1, "command": "true"},
        {"task_id": 0, "attempt": 1, "command": "true"},
        {"task_id": -5, "attempt": 1, "command": "true"},
        {"task_id": 1 << 60, "attempt": 1, "command": "true"},
        {"task_id": 1, "attempt": None, "command": "true"},
        {"task_id": 1, "attempt": 10**9, "command": "true"},
        {"attempt": 1, "command": "true"},
    ],
)
def test_tasks_without_usable_ids_are_skipped(raw: Any) -> None:
    with pytest.raises(BadReply):
        replies.assignment(raw)
    items, problems = replies.claimed({"tasks": [raw]}, limit=1)
    assert items == [] and len(problems) == 1


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"command": ["rm", "-rf", "/"]}, "not a string"),
        ({"command": {"sh": "x"}}, "not a string"),
        ({"command": None}, "not a string"),
        ({"command": 42}, "not a string"),
        ({"command": "x" * (defaults.MAX_COMMAND_BYTES + 1)}, "byte limit"),
        ({"command": "é" * (defaults.MAX_COMMAND_BYTES // 2 + 1)}, "byte limit"),
        ({"command": "true\0rm -rf /"}, "NUL"),
        ({"command": "\ud800"}, "UTF-8"),
        ({"command": "true", "timeout_s": "10"}, "timeout_s"),
        ({"command": "true", "timeout_s": -1}, "timeout_s"),
        ({"command": "true", "timeout_s": 0}, "timeout_s"),
        ({"command": "true", "timeout_s": float("nan")}, "timeout_s"),
        ({"command": "true", "timeout_s": True}, "timeout_s"),
    ],
)
def test_tasks_with_bad_commands_or_timeouts_are_refused_with_a_reason(
    fields: dict[str, Any], reason: str
) -> None:
    item = replies.assignment({"task_id": 9, "attempt": 2, **fields})
    assert isinstance(item, Refused)
    assert (item.task_id, item.attempt) == (9, 2)
    assert reason in item.reason


def test_a_command_of_exactly_the_limit_is_accepted() -> None:
    command = "x" * defaults.MAX_COMMAND_BYTES
    item = replies.assignment({"task_id": 1, "attempt": 1, "command": command})
    assert isinstance(item, Assignment) and item.command == command


def test_huge_timeouts_are_capped() -> None:
    item = replies.assignment({"task_id": 1, "attempt": 1, "command": "true", "timeout_s": 1e300})
    assert isinstance(item, Assignment) and item.timeout_s == defaults.MAX_TIMEOUT_S


def test_more_tasks_than_asked_and_duplicates_are_dropped() -> None:
    task = {"task_id": 1, "attempt": 1, "command": "true"}
    items, problems = replies.claimed({"tasks": [task, task, {**task, "task_id": 2}]}, limit=2)
    assert [i.task_id for i in items] == [1]
    assert any("asked for 2" in p for p in problems)
    assert any("twice" in p for p in problems)


@pytest.mark.parametrize(
    "worker_id", [None, 5, "", "../tasks", "w1/claim", "w1?x=1", "a b", ".", "..", "x" * 200]
)
def test_worker_ids_that_are_unsafe_in_a_url_are_refused(worker_id: Any) -> None:
    with pytest.raises(BadReply):
        replies.registration({"worker_id": worker_id, "heartbeat_timeout_s": 3})


def test_a_bad_reply_is_a_kickoff_error() -> None:
    """So that `kickoff worker` prints one `error:` line for it, never a traceback."""
    with pytest.raises(KickoffError, match="not a valid worker id"):
        replies.registration({"worker_id": "../../etc/passwd", "heartbeat_timeout_s": 3})


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"ok": True, "tasks": []}, None),
        ({"claim_error": {"code": "illegal_transition", "message": "lost"}}, IllegalTransition),
        ({"claim_error": {"code": "not_found", "message": "no worker w1"}}, NotFound),
        ({"claim_error": {"code": "unavailable", "message": "later"}}, Unavailable),
        ({"claim_error": {"code": "made_up", "message": "?"}}, KickoffError),
        ({"claim_error": {"code": "made_up"}}, KickoffError),
        ({"claim_error": {"code": 409, "message": "x"}}, None),
        ({"claim_error": "illegal_transition"}, None),
        ({"claim_error": None}, None),
        ([{"claim_error": {"code": "not_found"}}], None),
        (None, None),
    ],
)
def test_claim_errors(answer: Any, expected: type[KickoffError] | None) -> None:
    error = replies.claim_error(answer)
    assert (None if error is None else type(error)) is expected


def test_a_claim_error_message_is_capped() -> None:
    answer = {"claim_error": {"code": "not_found", "message": "x" * 100_000}}
    error = replies.claim_error(answer)
    assert error is not None and len(error.message) == replies.MAX_MESSAGE_CHARS


def test_the_heartbeat_interval_derives_from_the_server_s_timeout() -> None:
    def interval(**answer: Any) -> float:
        full = {"worker_id": "w1", "server_id": "00ff00ff00ff00ff", **answer}
        return replies.registration(full).heartbeat_interval_s

    assert interval(heartbeat_timeout_s=30) == defaults.HEARTBEAT_INTERVAL_S
    assert interval(heartbeat_timeout_s=3) == 1.0  # fits three times into the timeout
    assert interval(heartbeat_timeout_s=3, heartbeat_interval_s=5) == 1.0  # whatever it says
    assert interval(heartbeat_timeout_s=30, heartbeat_interval_s=2) == 2.0
    assert interval(heartbeat_timeout_s=30, heartbeat_interval_s="x") == 5.0
    assert interval(heartbeat_timeout_s=30, heartbeat_interval_s=1e-9) == replies.MIN_INTERVAL_S
    assert interval(heartbeat_timeout_s=1e9, heartbeat_interval_s=1e9) == 5.0
    with pytest.raises(BadReply, match="heartbeat_timeout_s"):
        replies.registration({"worker_id": "w1", "heartbeat_interval_s": 1})


@pytest.mark.parametrize("server_id", [None, 5, "", "abc", "../../x", "ABCDEF0123456789", "a" * 65])
def test_a_server_id_names_a_directory_so_only_hex_digits_pass(server_id: Any) -> None:
    with pytest.raises(BadReply, match="server_id"):
        replies.registration({"worker_id": "w1", "heartbeat_timeout_s": 3, "server_id": server_id})
    ok = {"worker_id": "w1", "heartbeat_timeout_s": 3, "server_id": "0123456789abcdef"}
    assert replies.registration(ok).server_id == "0123456789abcdef"
    with pytest.raises(BadReply):
        replies.registration(["w1"])


@pytest.mark.parametrize(
    ("answer", "ids"),
    [
        ({"cancel": [1, 2]}, [1, 2]),
        ({"cancel": [1, "2", None, True, -3, 2.0, [4]]}, [1]),
        ({"cancel": "1"}, []),
        ({}, []),
        (None, []),
        ([1], []),
    ],
)
def test_cancel_ids(answer: Any, ids: list[int]) -> None:
    assert replies.cancel_ids(answer) == ids


G = 1 << 30


def claimed(task_id: int, *, gpu_ids: tuple[int, ...] = (), **amounts: int) -> Assignment:
    return Assignment(
        task_id=task_id,
        attempt=1,
        command="true",
        resources=tuple(sorted(amounts.items())),
        gpu_ids=gpu_ids,
    )


RUNNING = [claimed(1, gpu=1, mem=G, gpu_ids=(2,))]  # on a worker of gpu=4,mem=4G: devices 0-3


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        (claimed(5, gpu=1, gpu_ids=(7,)), "gpu_ids names device 7, not one of this worker's"),
        (claimed(5, gpu=1, gpu_ids=(2,)), "gpu_ids names device 2, which task 1 holds"),
        (
            claimed(5, gpu=5, gpu_ids=(0, 1, 3, 4, 5)),
            "device 4, not one of this worker's (0,1,2,3)",
        ),
        (claimed(5, gpu=4, gpu_ids=(0, 1, 2, 3)), "gpu=4, and only 3 of this worker's gpu"),
        (claimed(5, mem=8 * G), "mem=8G, over this worker's mem=4G"),
        (claimed(5, mem=4 * G), "mem=4G, and only 3G of this worker's mem is free"),
        (claimed(5, disk=1), "disk=1, over this worker's disk=0"),
    ],
)
def test_a_claim_of_what_this_worker_has_not_free_is_refused(task: Assignment, reason: str) -> None:
    refused = replies.misfit(
        task, declared=(("gpu", 4), ("mem", 4 * G)), devices=(0, 1, 2, 3), running=RUNNING
    )
    assert isinstance(refused, Refused) and (refused.task_id, refused.attempt) == (5, 1)
    assert reason in refused.reason


def test_a_claim_of_what_is_free_fits() -> None:
    task = claimed(5, gpu=3, mem=3 * G, gpu_ids=(3, 0, 1))
    fits = replies.misfit(
        task, declared=(("gpu", 4), ("mem", 4 * G)), devices=(0, 1, 2, 3), running=RUNNING
    )
    assert fits is None
    assert replies.misfit(claimed(6), declared=(), devices=(), running=RUNNING) is None
