"""One shape for every error: `{"error": {"code", "message"}}` with the class's status.

Each KickoffError class the API can raise is triggered for real; every class (those only
raised elsewhere too) goes through the app's handler; the client maps each body back to
the same class. Like datasette's tests/test_error_shape.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kickoff import client as kclient
from kickoff import errors
from kickoff.errors import ERRORS_BY_CODE, KickoffError
from tests.api.conftest import TOKEN, Api


def all_error_classes() -> list[type[KickoffError]]:
    """The hierarchy in kickoff/errors.py: what may travel over HTTP. (Classes a command
    keeps to itself, like the CLI's WaitTimedOut, live next to it and never do.)"""
    found, todo = [], [KickoffError]
    while todo:
        cls = todo.pop()
        if cls.__module__ == errors.__name__:
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


def assert_shape(response: Any, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert sorted(error) == ["code", "message"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"].strip()
    assert "Traceback" not in error["message"] and TOKEN not in error["message"]
    return dict(error)


def round_trip(response: Any) -> KickoffError:
    """What kickoff's own client makes of the answer."""
    return kclient.error_from(
        httpx.Response(
            response.status_code,
            content=response.content,
            headers={"content-type": "application/json"},
        )
    )


# -- each class, triggered for real -----------------------------------------------


def fill_disk(api: Api) -> None:
    conn = api.service.recording.db.conn
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")


def malformed(api: Api) -> Any:
    return api.client.post("/v1/tasks", content=b'{"command": ')


def invalid(api: Api) -> Any:
    return api.client.post("/v1/tasks", json={"command": "x", "priority": 10**9})


def unauthorized(api: Api) -> Any:
    return api.client.get("/v1/stats", headers={"Authorization": "Bearer nope"})


def forbidden(api: Api) -> Any:
    from tests.api.test_dashboard_auth import login, same_origin

    web, csrf = login(api)  # a dashboard session may read and cancel, not submit
    return web.post("/v1/tasks", json={"command": "x"}, headers=same_origin(csrf))


def not_found(api: Api) -> Any:
    return api.client.get("/v1/tasks/777")


def stale(api: Api) -> Any:
    worker = api.register()
    task_id = api.submit(command="x")
    api.claim(worker)
    body = {"worker_id": worker, "attempt": 2, "exit_code": 0}
    return api.client.post(f"/v1/tasks/{task_id}/complete", json=body)


def illegal(api: Api) -> Any:
    task_id = api.submit(command="x")
    api.client.post(f"/v1/tasks/{task_id}/cancel")
    return api.client.post(f"/v1/tasks/{task_id}/cancel")


def too_large(api: Api) -> Any:
    return api.client.post("/v1/tasks", json={"command": "x" * (64 * 1024 + 1)})


def unavailable(api: Api) -> Any:
    api.submit(command="x")
    fill_disk(api)
    return api.client.post("/v1/tasks", json={"tasks": [{"command": "y" * 4000}] * 300})


REAL_TRIGGERS: dict[type[KickoffError], tuple[Callable[[Api], Any], int]] = {
    errors.MalformedRequest: (malformed, 400),
    errors.InvalidInput: (invalid, 422),
    errors.Unauthorized: (unauthorized, 401),
    errors.Forbidden: (forbidden, 403),
    errors.NotFound: (not_found, 404),
    errors.StaleAttempt: (stale, 409),
    errors.IllegalTransition: (illegal, 409),
    errors.TooLarge: (too_large, 413),
    errors.Unavailable: (unavailable, 503),
}
# Raised elsewhere than in a request: by the client (ServerUnreachable), at start-up
# (DatabaseRefused, CannotListen), by a standby's gate before the app (NotLeader:
# tests/e2e/test_failover.py), or only as a base class (KickoffError, Conflict). They
# still get the same shape if they ever reach the handler: see the test below.
NOT_FROM_A_REQUEST = {
    errors.KickoffError,
    errors.Conflict,
    errors.ServerUnreachable,
    errors.DatabaseRefused,
    errors.CannotListen,
    errors.NotLeader,
}


def test_every_class_is_either_triggered_or_known_not_to_come_from_a_request() -> None:
    classes = set(all_error_classes())
    assert classes == set(REAL_TRIGGERS) | NOT_FROM_A_REQUEST, (
        "a new KickoffError class: add a real trigger here (or say why it has none)"
    )


def test_every_class_has_a_code_the_client_knows() -> None:
    for cls in all_error_classes():
        assert ERRORS_BY_CODE[cls.code] is cls, cls


def _name(cls: object) -> str:
    return str(getattr(cls, "__name__", cls))


@pytest.mark.parametrize("cls", sorted(REAL_TRIGGERS, key=_name), ids=_name)
def test_each_error_for_real(api: Api, cls: type[KickoffError]) -> None:
    trigger, status = REAL_TRIGGERS[cls]
    assert status == cls.http_status
    response = trigger(api)
    assert_shape(response, status, cls.code)
    assert type(round_trip(response)) is cls


@pytest.mark.parametrize("cls", all_error_classes(), ids=_name)
def test_each_class_through_the_handler(
    api: Api, monkeypatch: pytest.MonkeyPatch, cls: type[KickoffError]
) -> None:
    async def fail(task_id: int) -> dict[str, Any]:
        raise cls(f"something about task {task_id}")

    monkeypatch.setattr(api.service, "get_task", fail)
    response = api.client.get("/v1/tasks/5")
    error = assert_shape(response, cls.http_status, cls.code)
    assert error["message"] == "something about task 5"


# -- starlette's own errors, and the unexpected -------------------------------------


def test_no_route_and_wrong_method(api: Api) -> None:
    assert_shape(api.client.get("/v2/tasks"), 404, "not_found")
    response = api.client.put("/v1/tasks")
    assert_shape(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]  # starlette names the first route that matched


def test_missing_token_shape(api: Api) -> None:
    saved = api.client.headers.pop("Authorization")
    try:
        error = assert_shape(
            api.client.post("/v1/tasks", json={"command": "x"}), 401, "unauthorized"
        )
    finally:
        api.client.headers["Authorization"] = saved
    assert "--token" in error["message"] and "KICKOFF_TOKEN" in error["message"]


def test_a_bug_is_a_generic_500_with_the_details_only_in_the_log(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def bug(task_id: int) -> dict[str, Any]:
        raise ZeroDivisionError("secret detail")

    monkeypatch.setattr(api.service, "get_task", bug)
    with pytest.raises(ZeroDivisionError):  # the test client re-raises what the server logged
        api.client.get("/v1/tasks/5")
    assert "secret detail" in caplog.text


def test_a_bug_answer_says_nothing_inside(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    async def bug(task_id: int) -> dict[str, Any]:
        raise ZeroDivisionError("secret detail")

    monkeypatch.setattr(api.service, "get_task", bug)
    quiet = TestClient(
        api.client.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    response = quiet.get("/v1/tasks/5")  # never reaches the service's loop: no lifespan needed
    error = assert_shape(response, 500, "internal")
    assert "secret" not in error["message"]


def test_a_failed_read_of_the_database_is_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    async def broken(query: object) -> object:
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(api.service.reads, "query", broken)
    error = assert_shape(api.client.get("/v1/tasks/1"), 503, "unavailable")
    assert "kickoff verify" in error["message"]
