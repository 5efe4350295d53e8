"""Every limit and rule on input, at its edge: the last value allowed passes, the first one
past it gets a clear 4xx naming the field, and a refused request writes nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from kickoff import defaults
from tests.api.conftest import Api

KIB = 1024


def on_disk(api: Api) -> tuple[int, int]:
    """(the log's last seq, rows in tasks), read from the file, not from the server."""
    conn = sqlite3.connect(api.db_path)
    try:
        row = conn.execute("SELECT max(seq), (SELECT count(*) FROM tasks) FROM events").fetchone()
    finally:
        conn.close()
    return int(row[0]), int(row[1])


def refused(api: Api, method: str, path: str, status: int, field: str = "", **kwargs: Any) -> str:
    """Send a request that must be refused with `status`; nothing may be written."""
    before = (on_disk(api), api.service.last_seq)
    response = api.client.request(method, path, **kwargs)
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    assert field in error["message"], error
    assert (on_disk(api), api.service.last_seq) == before
    return str(error["message"])


def submit(api: Api, **task: Any) -> Any:
    return api.client.post("/v1/tasks", json=task)


# -- commands ---------------------------------------------------------------------


def test_a_command_of_64_kib_passes_and_one_byte_more_is_413(api: Api) -> None:
    limit = defaults.MAX_COMMAND_BYTES
    assert limit == 64 * KIB
    assert submit(api, command="x" * limit).status_code == 201
    assert submit(api, command="é" * (limit // 2)).status_code == 201  # 2 bytes each
    refused(api, "POST", "/v1/tasks", 413, "task.command", json={"command": "x" * (limit + 1)})
    message = refused(
        api, "POST", "/v1/tasks", 413, "task.command", json={"command": "é" * (limit // 2 + 1)}
    )
    assert "bytes" in message


@pytest.mark.parametrize(
    ("command", "status"),
    [("", 422), (None, 422), (5, 422), (["ls", "-l"], 422), ("a\x00b", 422)],
)
def test_a_command_must_be_a_non_empty_string_without_nul(
    api: Api, command: Any, status: int
) -> None:
    refused(api, "POST", "/v1/tasks", status, "command", json={"command": command})


def test_a_command_is_kept_byte_for_byte(api: Api) -> None:
    command = "printf '%s\\n' \"$HOME\" `id` $(id); echo ü\ttab\nline2 && true || false; \\x1b"
    task_id = api.submit(command=command)
    assert api.client.get(f"/v1/tasks/{task_id}").json()["command"] == command


# -- tags -------------------------------------------------------------------------


def test_tag_grammar(api: Api) -> None:
    every_char = "AZaz09_.:=+/-"
    task_id = api.submit(command="t", require=[every_char, "x" * 64], want="a,b;c d")
    task = api.client.get(f"/v1/tasks/{task_id}").json()
    assert task["require"] == sorted([every_char, "x" * 64])
    assert task["want"] == ["a", "b", "c", "d"]
    for bad in ["x" * 65, "é", "a*", "gpu!", "\x1b[0m", "a\x00", "'", '"', "$(id)"]:
        refused(
            api, "POST", "/v1/tasks", 422, "task.require", json={"command": "t", "require": [bad]}
        )


@pytest.mark.parametrize("field", ["require", "want"])
def test_at_most_32_require_and_32_want_tags(api: Api, field: str) -> None:
    tags = [f"t{i}" for i in range(defaults.MAX_TASK_TAGS)]
    assert submit(api, command="t", **{field: tags}).status_code == 201
    too_many = {"command": "t", field: [*tags, "one-more"]}
    refused(api, "POST", "/v1/tasks", 422, f"task.{field}", json=too_many)
    as_text = {"command": "t", field: " ".join([*tags, "one-more"])}
    refused(api, "POST", "/v1/tasks", 422, f"task.{field}", json=as_text)


def test_at_most_256_tags_per_worker_at_registration(api: Api) -> None:
    tags = [f"t{i}" for i in range(defaults.MAX_WORKER_TAGS)]
    api.register(*tags)
    body = {"name": "w", "tags": [*tags, "one-more"]}
    refused(api, "POST", "/v1/workers", 422, "tags", json=body)


def test_at_most_256_tags_per_worker_after_a_change(api: Api) -> None:
    """Adding to the tags a worker has must not pass the limit either (decide checks the
    resulting set; the parser only sees the request)."""
    full = [f"t{i}" for i in range(defaults.MAX_WORKER_TAGS - 1)]
    worker = api.register(*full)
    ok = api.client.post(f"/v1/workers/{worker}/tags", json={"add": ["last"]})
    assert ok.status_code == 200 and len(ok.json()["tags"]) == defaults.MAX_WORKER_TAGS
    message = refused(
        api, "POST", f"/v1/workers/{worker}/tags", 422, "257 tags", json={"add": ["over"]}
    )
    assert str(defaults.MAX_WORKER_TAGS) in message
    swap = {"add": ["new"], "remove": ["last"]}  # same count: allowed
    assert api.client.post(f"/v1/workers/{worker}/tags", json=swap).status_code == 200
    refused(
        api,
        "POST",
        f"/v1/workers/{worker}/tags",
        422,
        "tags",
        json={"set": full, "add": ["a", "b"]},
    )
    assert len(api.service.state.workers[worker].tags) == defaults.MAX_WORKER_TAGS


# -- numbers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("priority", [-1_000_000, 0, 1_000_000], [-1_000_001, 1_000_001, 1.5, True, "1", None]),
        ("max_attempts", [1, 1000], [0, 1001, -1, 2.0, False, "3", None]),
        ("timeout_s", [0.001, 1, 2.5, 365 * 24 * 3600, None], [0, -1, 0.0001, 4e7, "1", True]),
    ],
)
def test_number_ranges(api: Api, field: str, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        assert submit(api, command="t", **{field: value}).status_code == 201, value
    for value in bad:
        refused(api, "POST", "/v1/tasks", 422, f"task.{field}", json={"command": "t", field: value})


def test_huge_numbers_in_json_are_refused_not_crashing(api: Api) -> None:
    for raw in [
        b'{"command": "t", "priority": 1e400}',
        b'{"command": "t", "priority": 99999999999999999999999}',
    ]:
        response = api.client.post("/v1/tasks", content=raw)
        assert response.status_code in (400, 422), response.text


def test_idempotency_key(api: Api) -> None:
    key = "k" * defaults.MAX_IDEMPOTENCY_KEY_CHARS
    first = submit(api, command="t", idempotency_key=key).json()["ids"]
    assert submit(api, command="t", idempotency_key=key).json()["ids"] == first
    too_long = {"command": "t", "idempotency_key": key + "k"}
    refused(api, "POST", "/v1/tasks", 413, "idempotency_key", json=too_long)
    refused(
        api,
        "POST",
        "/v1/tasks",
        422,
        "idempotency_key",
        json={"command": "t", "idempotency_key": "a\x1b[2J"},
    )
    message = refused(
        api,
        "POST",
        "/v1/tasks",
        422,
        "idempotency_key",
        json={"command": "t", "idempotency_key": "job\u202e7"},
    )
    assert "U+202E" in message


@pytest.mark.parametrize(
    "change",
    [
        {"command": "rm -rf build"},
        {"require": ["gpu"]},
        {"want": "fast"},
        {"priority": 5},
        {"max_attempts": 1},
        {"timeout_s": 60},
    ],
)
def test_a_known_idempotency_key_with_another_request_is_409(
    api: Api, change: dict[str, Any]
) -> None:
    task = {"command": "make test", "require": "cpu", "idempotency_key": "job-7"}
    (first,) = submit(api, **task).json()["ids"]
    message = refused(api, "POST", "/v1/tasks", 409, "'job-7'", json={**task, **change})
    assert f"task {first}" in message
    batch = {"tasks": [{"command": "other"}, {**task, **change}]}
    refused(api, "POST", "/v1/tasks", 409, "'job-7'", json=batch)  # and nothing of the batch
    assert submit(api, **task, want=[]).json()["ids"] == [first]  # a retry: the same id


# -- batches ----------------------------------------------------------------------


@pytest.fixture
def big_batch() -> Iterator[list[dict[str, Any]]]:
    yield [{"command": f"echo {i}", "require": ["cpu"], "priority": i % 7} for i in range(10_000)]


def test_a_batch_of_10000_passes_and_10001_is_413(
    api: Api, big_batch: list[dict[str, Any]]
) -> None:
    response = api.client.post("/v1/tasks", json={"tasks": big_batch})
    assert response.status_code == 201
    assert len(response.json()["ids"]) == 10_000
    refused(api, "POST", "/v1/tasks", 413, "tasks", json={"tasks": [*big_batch, {"command": "x"}]})


@pytest.mark.parametrize(
    "bad",
    [{"command": ""}, {"command": "x", "priority": 10**7}, {"command": "x", "nope": 1}, "ls", None],
)
def test_a_batch_is_all_or_nothing(api: Api, big_batch: list[dict[str, Any]], bad: Any) -> None:
    """A bad 9,999th task: nothing of the batch is written, on disk or in memory."""
    api.submit(command="before")
    tasks_before = len(api.service.state.tasks)
    big_batch[9998] = bad
    message = refused(api, "POST", "/v1/tasks", 422, "tasks[9998]", json={"tasks": big_batch})
    assert "tasks[9998]" in message
    assert len(api.service.state.tasks) == tasks_before
    # and the ids go on where they were: nothing was used up
    assert api.submit(command="after") == 2


@pytest.mark.parametrize(
    "body", [{"tasks": []}, {"tasks": "x"}, {"tasks": [1]}, {"tasks": [], "command": "x"}]
)
def test_malformed_batches(api: Api, body: Any) -> None:
    refused(api, "POST", "/v1/tasks", 422, "", json=body)


# -- bodies -----------------------------------------------------------------------


def chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b" " * n


def test_body_limits(api: Api) -> None:
    big = defaults.MAX_BODY_BYTES
    small = defaults.MAX_SMALL_BODY_BYTES
    assert big >= 32 * 1024 * 1024 and small >= 256 * KIB
    # declared too large: refused before a byte is read
    refused(
        api,
        "POST",
        "/v1/tasks",
        413,
        "limit",
        content=b"{}",
        headers={"Content-Length": str(big + 1)},
    )
    # streamed (chunked, no length): refused once past the limit
    refused(api, "POST", "/v1/tasks", 413, "limit", content=chunks(big + 1))
    for path in ["/v1/workers", "/v1/tasks/cancel", "/v1/workers/w1/claim", "/v1/tasks/1/complete"]:
        refused(api, "POST", path, 413, "limit", content=chunks(small + 1))
    refused(
        api,
        "POST",
        "/v1/workers",
        400,
        "Content-Length",
        content=b"{}",
        headers={"Content-Length": "12x"},
    )


@pytest.mark.parametrize(
    "raw", [b"{", b"\xff\xfe", b'{"command": "\\ud800"}', b"[" * 5000, b"NaN", b'{"a": 1,}']
)
def test_bodies_that_are_not_json_are_400(api: Api, raw: bytes) -> None:
    refused(api, "POST", "/v1/tasks", 400, "not valid JSON", content=raw)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/tasks", {"command": "t", "Command": "u"}, "'Command'"),
        ("/v1/tasks", {"tasks": [{"command": "t"}], "extra": 1}, "'extra'"),
        ("/v1/tasks", {"tasks": [{"command": "t", "tries": 3}]}, "tasks[0]"),
        ("/v1/workers", {"name": "w", "cores": 4}, "'cores'"),
        ("/v1/workers/{w}/claim", {"max_tasks": 1, "timeout": 1}, "'timeout'"),
        ("/v1/workers/{w}/heartbeat", {"running": [], "load": 1}, "'load'"),
        ("/v1/workers/{w}/tags", {"add": ["a"], "delete": ["b"]}, "'delete'"),
        ("/v1/tasks/cancel", {"ids": [1], "force": True}, "'force'"),
        (
            "/v1/tasks/1/complete",
            {"worker_id": "{w}", "attempt": 1, "exit_code": 0, "rc": 0},
            "'rc'",
        ),
    ],
)
def test_unknown_fields_are_refused(api: Api, path: str, body: dict[str, Any], field: str) -> None:
    worker = api.register()
    api.submit(command="t")
    api.claim(worker)
    path = path.replace("{w}", worker)
    body = {k: (worker if v == "{w}" else v) for k, v in body.items()}
    message = refused(api, "POST", path, 422, field, json=body)
    assert "unknown field" in message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": "\x1b]0;pwned\x07"}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"name": "w", "slots": 0}, "slots"),
        ({"name": "w", "slots": 1025}, "slots"),
        ({"name": "w", "host": "\x1b[2J"}, "host"),
        ({"name": "evil\u202egpj.exe"}, "name"),  # a bidi override: shows as "exe.jpg"
        ({"name": "w\u200b"}, "name"),  # a zero-width space
        ({"name": "w", "host": "box\u2066"}, "host"),
        ({"name": "w", "host": "a\u2028b"}, "host"),  # a line separator
        ({"name": "w", "tags": "gpu!"}, "tags"),
    ],
)
def test_registration_rules(api: Api, body: dict[str, Any], field: str) -> None:
    status = 413 if len(str(body.get("name", ""))) > 128 else 422
    refused(api, "POST", "/v1/workers", status, field, json=body)


def test_worker_side_bodies(api: Api) -> None:
    worker = api.register(slots=2)
    task_id = api.submit(command="t")
    claim = f"/v1/workers/{worker}/claim"
    refused(api, "POST", claim, 422, "max_tasks", json={"max_tasks": 0})
    refused(api, "POST", claim, 422, "wait_s", json={"wait_s": -1})
    refused(api, "POST", claim, 422, "wait_s", json={"wait_s": 1e9})
    beat = f"/v1/workers/{worker}/heartbeat"
    refused(
        api, "POST", beat, 422, "running", json={"running": [[1, 1]] * (defaults.MAX_SLOTS + 1)}
    )
    refused(api, "POST", beat, 422, "running[0]", json={"running": [[task_id]]})
    refused(api, "POST", beat, 422, "running[0][0]", json={"running": [["1", 1]]})
    api.claim(worker)
    done = f"/v1/tasks/{task_id}/complete"
    base = {"worker_id": worker, "attempt": 1, "exit_code": 0}
    refused(api, "POST", done, 422, "exit_code", json={**base, "exit_code": 1 << 40})
    refused(api, "POST", done, 422, "attempt", json={**base, "attempt": 0})
    refused(api, "POST", done, 422, "timed_out", json={**base, "timed_out": "yes"})
    refused(api, "POST", done, 413, "output_tail", json={**base, "output_tail": "x" * 20_000})
    refused(api, "POST", done, 422, "exit_code", json={"worker_id": worker, "attempt": 1})
    refused(api, "POST", done, 422, "max_tasks", json={**base, "claim": {"max_tasks": 0}})
    assert api.service.state.tasks[task_id].state == "running"  # none of it counted
    tail = "y" * 10_000
    assert api.client.post(done, json={**base, "output_tail": tail}).status_code == 200
    kept = api.client.get(f"/v1/tasks/{task_id}").json()["output_tail"]
    assert kept == tail[-defaults.OUTPUT_TAIL_BYTES :]


def test_cancel_many_limits(api: Api) -> None:
    refused(api, "POST", "/v1/tasks/cancel", 422, "ids", json={"ids": []})
    refused(
        api, "POST", "/v1/tasks/cancel", 413, "ids", json={"ids": [1] * (defaults.MAX_BATCH + 1)}
    )
    refused(api, "POST", "/v1/tasks/cancel", 422, "ids[1]", json={"ids": [1, "2"]})


# -- ids and query strings ----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["0", "-1", "abc", "1.0", "1e3", "%C2%B2", "%D9%A3", "%20" + "1", "1099511627776", "9" * 100],
)
def test_task_ids_in_paths(api: Api, text: str) -> None:
    for method, suffix in [("GET", ""), ("GET", "/events"), ("POST", "/cancel")]:
        refused(api, method, f"/v1/tasks/{text}{suffix}", 422, "task id")


def test_unknown_ids_are_404_and_finished_ones_409(api: Api) -> None:
    refused(api, "GET", "/v1/tasks/424242", 404, "no task 424242")
    refused(api, "POST", "/v1/tasks/424242/cancel", 404, "no task")
    refused(api, "POST", "/v1/workers/nobody/claim", 404, "no worker", json={})
    refused(api, "POST", "/v1/workers/" + "w9" * 3000 + "/heartbeat", 404, "no worker", json={})
    refused(api, "GET", "/v1/workers/nobody", 404, "no worker")
    task_id = api.submit(command="t")
    assert api.client.post(f"/v1/tasks/{task_id}/cancel").status_code == 200
    refused(api, "POST", f"/v1/tasks/{task_id}/cancel", 409, "finished")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=abc", "limit"),
        ("limit=1_0", "limit"),
        ("limit=%C2%B2", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("after=-1", "after"),
        ("before=x", "before"),
        ("state=bogus", "state"),
        ("state=pending,nope", "state"),
    ],
)
def test_task_list_queries(api: Api, query: str, field: str) -> None:
    refused(api, "GET", f"/v1/tasks?{query}", 422, field)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("since=0001-01-01T00:00:00%2B01:00", "since"),  # overflows when made UTC
        ("until_time=9999-12-31T23:59:59-01:00", "until_time"),
        ("task=abc", "task id"),
        ("after=x", "after"),
        ("after=-2", "after"),
    ],
)
def test_event_queries(api: Api, query: str, field: str) -> None:
    refused(api, "GET", f"/v1/events?{query}", 422, field)
    refused(api, "GET", f"/v1/events/stream?{query}", 422, field)
    refused(api, "GET", "/v1/events?limit=0", 422, "limit")
