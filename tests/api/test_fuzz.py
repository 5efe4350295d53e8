"""Thousands of malformed requests against the app in-process: none may answer 5xx, and
none may change anything (the log's last seq, the tasks on disk and in memory).

Every generated request is invalid *by construction*, so "nothing changed" is exact:
- a body sent to a route that reads it carries at least one defect: a field with a value
  that its rule must refuse, a member of a batch that is bad, bytes that are not JSON, or
  JSON that is not an object. The other fields are random (valid or not), so every
  validator gets exercised, in whatever order the parser checks them;
- paths of routes that act without reading a body (cancel, deregister) only name tasks and
  workers that are unknown, finished or gone;
- the event stream only gets a query it must refuse (else it would stream forever);
- everything else is random: methods, paths, query strings, invalid UTF-8, huge values.

`KICKOFF_FUZZ_EXAMPLES` raises the example count (e.g. for a nightly run).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kickoff import defaults
from kickoff.api.routes import ROUTES
from tests.api.conftest import Api

EXAMPLES = int(os.environ.get("KICKOFF_FUZZ_EXAMPLES", "1500"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the state is the same before every example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

LIVE_WORKER_NAME = "fuzz-live-worker-7f3a"


@dataclass
class World:
    """The state every example starts from, and must leave unchanged."""

    api: Api
    pending: int
    running: int
    done: int
    cancelled: int
    worker: str  # alive, running `running`
    gone: str  # stopped

    @property
    def live_tasks(self) -> set[int]:
        return {self.pending, self.running}

    def fingerprint(self) -> tuple[Any, ...]:
        service = self.api.service
        conn = sqlite3.connect(self.api.db_path)
        try:
            disk = conn.execute(
                "SELECT max(seq), (SELECT count(*) FROM tasks) FROM events"
            ).fetchone()
        finally:
            conn.close()
        return (
            service.last_seq,
            disk,
            dict(service.state.counts),
            {t.id: (t.state, t.attempt, t.worker_id) for t in service.state.tasks.values()},
            {w.id: (w.tags, frozenset(w.running)) for w in service.state.workers.values()},
        )


@pytest.fixture
def world(api: Api) -> Iterator[World]:
    pending = api.submit(command="stays pending", require=["never-matched"])
    running = api.submit(command="runs")
    done = api.submit(command="finishes")
    cancelled = api.submit(command="cancelled", require=["never-matched"])
    worker = api.register("cpu", slots=2, name=LIVE_WORKER_NAME)
    claimed = [t["task_id"] for t in api.claim(worker, max_tasks=2)]
    assert claimed == [running, done]
    body = {"worker_id": worker, "attempt": 1, "exit_code": 0}
    assert api.client.post(f"/v1/tasks/{done}/complete", json=body).status_code == 200
    assert api.client.post(f"/v1/tasks/{cancelled}/cancel").status_code == 200
    gone = api.register(name="gone")
    assert api.client.delete(f"/v1/workers/{gone}").status_code == 200
    yield World(api, pending, running, done, cancelled, worker, gone)


def dump(value: Any) -> bytes:
    """JSON as any client may send it (orjson itself refuses integers past 64 bits)."""
    return json.dumps(value).encode()


# -- building blocks ------------------------------------------------------------

BIG_INTS = st.sampled_from(
    [-(1 << 63), -(1 << 40), -1, 0, 1 << 31, 1 << 40, 1 << 62, (1 << 64) - 1]
)
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=8).map(lambda s: s * 1000),
    st.sampled_from(
        ["", " ", "\x00", "\x1b[2J", "٣", "²", "1e3", "0x10", "+1", "-0", "1_000", "NaN"]
    ),
)
ANY_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | ODD_TEXT,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=12,
)
SCALARS = st.one_of(st.booleans(), st.integers(), st.floats())  # never null, never a string
NOT_A_LIST: st.SearchStrategy[Any] = st.one_of(st.none(), SCALARS, st.just({}), st.just({"a": 1}))
NOT_A_STRING: st.SearchStrategy[Any] = st.one_of(NOT_A_LIST, st.lists(st.integers(), max_size=2))
NOT_A_STRING_NOR_NULL: st.SearchStrategy[Any] = st.one_of(
    SCALARS, st.just({}), st.lists(st.integers(), min_size=1, max_size=2)
)
NOT_AN_INT: st.SearchStrategy[Any] = st.one_of(
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    ODD_TEXT,
    st.lists(st.integers(), max_size=2),
    st.just({}),
)
_TAG_OK = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:=+/-")
_SEPARATOR = re.compile(r"[\s,;]")


def _has_a_bad_char(text: str) -> bool:
    return any(c not in _TAG_OK and not _SEPARATOR.match(c) for c in text)


BAD_TAG = st.one_of(
    st.sampled_from(["x" * 65, "a\x00b", "é", "*", "gpu!", "a|b", "\x1b", "ß", "'"]),
    st.text(min_size=1, max_size=5).filter(_has_a_bad_char),
)
GOOD_TAGS = st.lists(st.from_regex(r"[A-Za-z0-9_.:=+/\-]{1,8}", fullmatch=True), max_size=3)


def bad_tags(limit: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        NOT_A_STRING_NOR_NULL,
        st.lists(BAD_TAG, min_size=1, max_size=3),
        st.just([f"t{i}" for i in range(limit + 1)]),  # one tag too many
        st.just(" ".join(f"t{i}" for i in range(limit + 1))),
    )


def bad_int(low: int, high: int) -> st.SearchStrategy[Any]:
    """Never an integer in low..high (null too: present but null is refused)."""
    out_of_range = st.one_of(
        st.just(low - 1), st.just(high + 1), BIG_INTS.filter(lambda v: not low <= v <= high)
    )
    return st.one_of(NOT_AN_INT, out_of_range, st.none())


def bad_string(
    max_chars: int, *, plain: bool = False, nullable: bool = False
) -> st.SearchStrategy[Any]:
    cases = [
        NOT_A_STRING_NOR_NULL if nullable else NOT_A_STRING,
        st.just("x" * (max_chars + 1)),
        st.text(max_size=5).map(lambda s: s + "\x00"),
    ]
    if not nullable:
        cases.append(st.just(""))
    if plain:
        cases.append(st.sampled_from(["\x1b[31mred", "a\nb", "\x7f", "\x9b"]))
    return st.one_of(*cases)


# field -> (a value that may or may not be valid, a value that must be refused)
TASK_FIELDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "command": (
        st.text(max_size=30) | ANY_JSON,
        st.one_of(
            bad_string(defaults.MAX_COMMAND_BYTES),
            st.just("é" * (defaults.MAX_COMMAND_BYTES // 2 + 1)),  # fits in chars, not in bytes
        ),
    ),
    "require": (GOOD_TAGS | ANY_JSON, bad_tags(defaults.MAX_TASK_TAGS)),
    "want": (GOOD_TAGS | ANY_JSON, bad_tags(defaults.MAX_TASK_TAGS)),
    "priority": (
        st.integers(-5, 5) | ANY_JSON,
        bad_int(defaults.MIN_PRIORITY, defaults.MAX_PRIORITY),
    ),
    "max_attempts": (st.integers(1, 5) | ANY_JSON, bad_int(1, defaults.MAX_ATTEMPTS_LIMIT)),
    "timeout_s": (
        st.floats(0.5, 100) | ANY_JSON,
        st.one_of(
            st.sampled_from([0, -1, 0.0, 1e-9, defaults.MAX_TIMEOUT_S * 2, 1e308]),
            NOT_AN_INT.filter(
                lambda v: not isinstance(v, float) or not 0.001 <= v <= defaults.MAX_TIMEOUT_S
            ),
        ),
    ),
    "idempotency_key": (
        st.none() | st.text(max_size=10) | ANY_JSON,
        bad_string(defaults.MAX_IDEMPOTENCY_KEY_CHARS, plain=True, nullable=True),
    ),
}
REGISTER_FIELDS = {
    "name": (st.text(max_size=10) | ANY_JSON, bad_string(defaults.MAX_NAME_CHARS, plain=True)),
    "tags": (GOOD_TAGS | ANY_JSON, bad_tags(defaults.MAX_WORKER_TAGS)),
    "slots": (st.integers(1, 4) | ANY_JSON, bad_int(1, defaults.MAX_SLOTS)),
    "host": (
        st.none() | st.text(max_size=10) | ANY_JSON,
        bad_string(defaults.MAX_NAME_CHARS, plain=True, nullable=True),
    ),
}
CLAIM_FIELDS = {
    "max_tasks": (st.integers(1, 3) | ANY_JSON, bad_int(1, defaults.MAX_SLOTS)),
    "wait_s": (
        st.just(0) | ANY_JSON,
        st.one_of(
            st.sampled_from([-1, -0.5, 1e9, 1e308]),
            NOT_AN_INT.filter(lambda v: not isinstance(v, float)),
            st.none(),
        ),
    ),
}
HEARTBEAT_FIELDS = {
    "running": (
        st.lists(st.tuples(st.integers(1, 5), st.integers(1, 3)).map(list), max_size=3) | ANY_JSON,
        st.one_of(
            NOT_A_LIST,
            st.lists(
                st.one_of(
                    NOT_AN_INT,
                    st.lists(st.integers(), min_size=3, max_size=3),
                    st.just([0, 1]),
                    st.just([1, 0]),
                ),
                min_size=1,
                max_size=3,
            ),
            st.just([[1, 1]] * (defaults.MAX_SLOTS + 1)),
            st.just("running"),
        ),
    ),
}
COMPLETE_FIELDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "worker_id": (st.text(max_size=10) | ANY_JSON, bad_string(defaults.MAX_NAME_CHARS)),
    "attempt": (st.integers(1, 3) | ANY_JSON, bad_int(1, defaults.MAX_ATTEMPTS_LIMIT)),
    "exit_code": (st.integers(-2, 2) | ANY_JSON, bad_int(-(1 << 31), 1 << 31)),
    "duration_s": (
        st.floats(0, 10) | ANY_JSON,
        st.one_of(
            st.sampled_from([-1, 1e11, 1e308]),
            NOT_AN_INT.filter(lambda v: not isinstance(v, float)),
        ),
    ),
    "output_tail": (
        st.text(max_size=20) | ANY_JSON,
        bad_string(4 * defaults.OUTPUT_TAIL_BYTES, nullable=True).filter(lambda v: v != ""),
    ),
    "timed_out": (st.booleans() | ANY_JSON, st.one_of(st.integers(), ODD_TEXT, st.none())),
    "cancelled": (st.booleans() | ANY_JSON, st.one_of(st.integers(), ODD_TEXT, st.none())),
    "claim": (
        st.none() | st.just({}) | ANY_JSON,
        st.one_of(
            st.one_of(SCALARS, st.lists(st.integers(), max_size=2)),
            st.just({"max_tasks": 0}),
            st.just({"nope": 1}),
        ),
    ),
}
TAG_CHANGE_FIELDS = {
    "add": (GOOD_TAGS | ANY_JSON, bad_tags(defaults.MAX_WORKER_TAGS)),
    "remove": (GOOD_TAGS | ANY_JSON, bad_tags(defaults.MAX_WORKER_TAGS)),
    "set": (st.none() | GOOD_TAGS | ANY_JSON, bad_tags(defaults.MAX_WORKER_TAGS)),
}
IDS_FIELDS = {
    "ids": (
        st.lists(st.integers(), max_size=3) | ANY_JSON,
        st.one_of(
            st.just([]),
            NOT_A_LIST,
            st.lists(
                st.one_of(NOT_AN_INT, st.just(0), st.just(-3), st.just(1 << 41)),
                min_size=1,
                max_size=3,
            ),
            st.just([1] * (defaults.MAX_BATCH + 1)),
        ),
    ),
}
UNKNOWN_KEY = st.text(min_size=1, max_size=12).filter(
    lambda k: (
        k
        not in {
            *TASK_FIELDS,
            *REGISTER_FIELDS,
            *CLAIM_FIELDS,
            *HEARTBEAT_FIELDS,
            *COMPLETE_FIELDS,
            *TAG_CHANGE_FIELDS,
            *IDS_FIELDS,
            "tasks",
        }
    )
)


@st.composite
def defective_object(
    draw: st.DrawFn, fields: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]
) -> dict[str, Any]:
    """A JSON object with random fields and at least one that must be refused."""
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=len(fields)))
    body = {name: draw(fields[name][0]) for name in chosen}
    if draw(st.booleans()):
        body[draw(UNKNOWN_KEY)] = draw(ANY_JSON)
    else:
        bad = draw(st.sampled_from(sorted(fields)))
        body[bad] = draw(fields[bad][1])
    return body


@st.composite
def defective_batch(draw: st.DrawFn) -> dict[str, Any]:
    """`{"tasks": [...]}` with good tasks around one bad one (or a bad list)."""
    if draw(st.integers(0, 9)) == 0:
        return {"tasks": draw(st.one_of(st.just([]), NOT_A_LIST))}
    good = st.fixed_dictionaries(
        {"command": st.text(min_size=1, max_size=10).filter(lambda s: "\x00" not in s)}
    )
    tasks = draw(st.lists(good, max_size=5))
    tasks.insert(draw(st.integers(0, len(tasks))), draw(defective_object(TASK_FIELDS)))
    return {"tasks": tasks}


def not_a_json_object(raw: bytes) -> bool:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return bool(raw.strip())  # an empty body counts as {}
    return not isinstance(value, dict)


RAW_INVALID = st.one_of(
    st.binary(max_size=200).filter(not_a_json_object),
    st.sampled_from(
        [
            b"{",
            b"[1,",
            b'{"a":}',
            b"\xff\xfe{}",
            b'{"command": "\\ud800"}',
            b"[" * 2000,
            b"nul",
            b"1e999",
            b'{"x": 1e400}',
            b"\xef\xbb\xbf{}",
        ]
    ).filter(not_a_json_object),
    ANY_JSON.filter(lambda v: not isinstance(v, dict)).map(dump),
)


def body_for(
    fields: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] | None,
) -> st.SearchStrategy[bytes]:
    if fields is None:  # a submit: one task, or a batch
        objects = st.one_of(defective_object(TASK_FIELDS), defective_batch())
    else:
        objects = defective_object(fields)
    return st.one_of(objects.map(dump), RAW_INVALID)


BODIES = {
    "/v1/tasks": body_for(None),
    "/v1/tasks/cancel": body_for(IDS_FIELDS),
    "/v1/tasks/{task_id}/complete": body_for(COMPLETE_FIELDS),
    "/v1/workers": body_for(REGISTER_FIELDS),
    "/v1/workers/{worker}/claim": body_for(CLAIM_FIELDS),
    "/v1/workers/{worker}/heartbeat": body_for(HEARTBEAT_FIELDS),
    "/v1/workers/{worker}/tags": body_for(TAG_CHANGE_FIELDS),
}
ACT_WITHOUT_BODY = {"/v1/tasks/{task_id}/cancel", "/v1/workers/{worker}"}
STREAM = "/v1/events/stream"

METHODS = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    st.from_regex(r"[A-Z]{1,10}", fullmatch=True),
)
PERCENT_BYTES = st.binary(min_size=1, max_size=6).map(lambda b: "".join(f"%{x:02X}" for x in b))
SEGMENT = st.one_of(
    ODD_TEXT.map(lambda s: quote(s[:300], safe="")),
    PERCENT_BYTES,
    st.sampled_from(
        ["0", "-1", "99999999", "1099511627776", "9" * 50, "w0", "w99", "w", "1.5", "..", "%2F"]
    ),
).map(lambda s: s or "x")
QUERY_KEYS = st.sampled_from(
    [
        "state",
        "limit",
        "after",
        "before",
        "order",
        "worker",
        "all",
        "type",
        "task",
        "since",
        "until",
        "until_time",
        "heartbeats",
        "x",
    ]
)
QUERY_VALUES = st.one_of(
    ODD_TEXT.map(lambda s: quote(s[:500], safe="")),
    PERCENT_BYTES,
    BIG_INTS.map(str),
    st.sampled_from(
        [
            "all",
            "pending,bogus",
            "desc",
            "1",
            "true",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2026-13-01",
            "TaskSubmitted",
        ]
    ),
)
QUERY = st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=5).map(
    lambda kv: "&".join(f"{k}={v}" for k, v in kv)
)


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    body: bytes | None
    content_type: str | None


@st.composite
def requests(draw: st.DrawFn, world: World) -> Request:
    # Mostly a route with one of its own methods (most bodies are checked only there),
    # weighted towards the routes that read a body; sometimes anything at all.
    route = draw(st.sampled_from([*ROUTES, *[r for r in ROUTES if r.path in BODIES] * 2, None]))
    template = "<random>" if route is None else route.path
    own_methods = sorted(route.methods or ()) if route is not None else ["GET"]
    method = draw(st.sampled_from(own_methods)) if draw(st.integers(0, 4)) else draw(METHODS)
    body: bytes | None = None
    if template == "<random>":
        path = "/" + "/".join(draw(st.lists(SEGMENT, max_size=4)))
        body = draw(st.none() | st.binary(max_size=100))
    else:
        live = template not in ACT_WITHOUT_BODY and draw(st.booleans())
        task_ids = [world.pending, world.running] if live else [world.done, world.cancelled]
        workers = [world.worker, LIVE_WORKER_NAME] if live else [world.gone]
        task = draw(st.sampled_from(task_ids).map(str) | SEGMENT)
        worker = draw(st.sampled_from(workers) | SEGMENT)
        if not live and (  # a random segment must not name a live task or worker by chance
            unquote(worker) in {world.worker, LIVE_WORKER_NAME}
            or unquote(task).lstrip("0") in {str(t) for t in world.live_tasks}
        ):
            task, worker = str(world.done), world.gone
        path = template.replace("{task_id}", task).replace("{worker}", worker)
        if template in BODIES:
            body = draw(BODIES[template])
        elif draw(st.booleans()):
            body = draw(st.binary(max_size=50) | ANY_JSON.map(dump))
    query = draw(QUERY)
    if template == STREAM:  # must be refused, else it streams forever
        query = (
            (query + "&" if query else "")
            + "after="
            + draw(st.sampled_from(["x", "-5", "1.5", "٣", str(1 << 63)]))
        )
    content_type = draw(
        st.none()
        | st.sampled_from(
            [
                "application/json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
            ]
        )
    )
    return Request(method, path + ("?" + query if query else ""), body, content_type)


READS = {"GET", "HEAD"}


def _error_code(content: bytes) -> str:
    try:
        return str(orjson.loads(content)["error"]["code"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "-"


HARMLESS_200 = {"/v1/tasks/cancel"}  # per-id errors for finished or unknown ids: 200, no change


def check_answer(request: Request, status: int, content: bytes, headers: Any) -> None:
    assert status < 500, (request, status, content[:500])
    if status >= 400 and request.method != "HEAD":
        body = orjson.loads(content)
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message"}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@FUZZ
@given(data=st.data())
def test_malformed_requests_never_fail_the_server_nor_change_anything(
    world: World, data: st.DataObject
) -> None:
    before = world.fingerprint()
    request = data.draw(requests(world))
    headers = {"content-type": request.content_type} if request.content_type else {}
    response = world.api.client.request(
        request.method, request.url, content=request.body, headers=headers
    )
    check_answer(request, response.status_code, response.content, response.headers)
    event(f"{response.status_code} {_error_code(response.content)}")
    if request.method not in READS and response.status_code < 300:
        assert request.url.split("?")[0] in HARMLESS_200, (request, response.text[:300])
    assert world.fingerprint() == before, request


@settings(FUZZ, max_examples=max(1, EXAMPLES // 3))
@given(
    header=st.one_of(
        st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=80).map(
            lambda s: "Bearer " + s
        ),
        st.sampled_from(
            ["Bearer", "Bearer  ", "bearer\t", "Basic dXNlcjpwYXNz", "Bearer " + "a" * 10_000]
        ),
    ),
    method=METHODS,
    path=st.sampled_from([route.path for route in ROUTES if route.path != "/healthz"]),
)
def test_random_authorization_headers_get_401_never_5xx(
    world: World, header: str, method: str, path: str
) -> None:
    before = world.fingerprint()
    client = world.api.client
    saved = client.headers.pop("Authorization")
    try:
        headers = {"authorization": header.encode("latin-1")} if header else {}
        url = path.replace("{task_id}", "1").replace("{worker}", "w1")
        response = client.request(method, url, headers=headers)  # type: ignore[arg-type]
    finally:
        client.headers["Authorization"] = saved
    assert response.status_code == 401, (header, response.status_code)
    assert world.fingerprint() == before
