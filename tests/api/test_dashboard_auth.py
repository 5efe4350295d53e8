"""The dashboard's login, session cookie, CSRF token and what a session may do, against the
in-process app (the browser side is tests/browser/)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from kickoff.dashboard.gate import Gate
from kickoff.dashboard.pages import CSP
from tests.api.conftest import TOKEN, Api

COOKIE = "kickoff_session_80"  # the test client's server port is 80


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate_of(api: Api) -> Gate:
    gate = api.client.app
    assert isinstance(gate, Gate)
    return gate


def browser(api: Api) -> TestClient:
    """A client without the token, as a browser is; it keeps cookies. (It shares the
    fixture's event loop, where the service runs.)"""
    web = TestClient(api.client.app, raise_server_exceptions=False)
    web.portal = api.client.portal
    return web


def mint(api: Api) -> str:
    response = api.client.post("/dashboard/login-codes")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["path"] == f"/login?code={body['code']}"
    assert response.headers["cache-control"] == "no-store"
    return str(body["code"])


def login(api: Api) -> tuple[TestClient, str]:
    """A logged-in browser and its CSRF token."""
    web = browser(api)
    assert web.get(f"/login?code={mint(api)}").status_code == 200
    response = web.get("/dashboard/session", headers={"sec-fetch-site": "same-origin"})
    assert response.status_code == 200, response.text
    return web, str(response.json()["csrf"])


def same_origin(csrf: str, **extra: str) -> dict[str, str]:
    return {"x-kickoff-csrf": csrf, "sec-fetch-site": "same-origin", **extra}


def test_a_login_link_opens_an_httponly_samesite_strict_session_once(api: Api) -> None:
    web = browser(api)
    code = mint(api)
    response = web.get(f"/login?code={code}")
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes  # plain http: a Secure cookie would never come back
    assert code not in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    again = browser(api).get(f"/login?code={code}")
    assert again.status_code == 403
    assert "set-cookie" not in again.headers
    assert "kickoff dashboard" in again.text


def test_a_code_expires_and_a_wrong_one_opens_nothing(api: Api) -> None:
    clock = Monotonic()
    gate_of(api).sessions._monotonic = clock
    code = mint(api)
    clock.now += 61
    assert browser(api).get(f"/login?code={code}").status_code == 403
    for wrong in ("", "x", "A" * 43, "A" * 10_000):
        response = browser(api).get("/login", params={"code": wrong})
        assert response.status_code == 403 and "set-cookie" not in response.headers


def test_minting_a_code_needs_the_token_not_a_session(api: Api) -> None:
    web, csrf = login(api)
    assert web.post("/dashboard/login-codes", headers=same_origin(csrf)).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert browser(api).post("/dashboard/login-codes", headers=bad).status_code == 401


def test_the_session_answers_the_api_only_with_its_csrf_token(api: Api) -> None:
    task_id = api.submit(command="echo hi")
    web, csrf = login(api)
    assert web.get(f"/v1/tasks/{task_id}", headers=same_origin(csrf)).json()["id"] == task_id
    refused = [
        {},  # the cookie alone authorizes nothing, not even a read
        {"x-kickoff-csrf": "wrong"},
        {"x-kickoff-csrf": csrf + "x"},
        same_origin(csrf, **{"sec-fetch-site": "same-site"}),  # another port of this host
        same_origin(csrf, **{"sec-fetch-site": "cross-site"}),
        same_origin(csrf, origin="http://127.0.0.1:8000"),
        same_origin(csrf, origin="http://evil.example"),
    ]
    for headers in refused:
        response = web.get(f"/v1/tasks/{task_id}", headers=headers)
        assert response.status_code == 403, (headers, response.text)
        assert response.json()["error"]["code"] == "forbidden"
        assert csrf not in response.text
    own = same_origin(csrf, origin="http://testserver")
    assert web.get(f"/v1/tasks/{task_id}", headers=own).status_code == 200


def test_a_session_reads_and_cancels_and_nothing_else(api: Api) -> None:
    task_id = api.submit(command="sleep 100")
    worker = api.register("cpu")
    web, csrf = login(api)
    headers = same_origin(csrf, origin="http://testserver")
    before = api.client.get("/v1/stats").json()["last_seq"]
    forbidden: list[tuple[str, str, Any]] = [
        ("POST", "/v1/tasks", {"command": "rm -rf /"}),
        ("POST", "/v1/workers", {"name": "evil", "tags": ["cpu"]}),
        ("POST", f"/v1/workers/{worker}/claim", {"max_tasks": 1, "wait_s": 0}),
        ("POST", f"/v1/workers/{worker}/heartbeat", {"running": []}),
        ("POST", f"/v1/workers/{worker}/tags", {"add": ["gpu"]}),
        ("DELETE", f"/v1/workers/{worker}", None),
        ("POST", f"/v1/tasks/{task_id}/complete", {"worker_id": worker, "attempt": 1}),
        ("GET", "/metrics", None),
    ]
    for method, path, body in forbidden:
        response = web.request(method, path, json=body, headers=headers)
        assert response.status_code in (401, 403), (method, path, response.text)
    assert api.client.get("/v1/stats").json()["last_seq"] == before  # nothing was written
    assert web.get("/v1/workers", headers=headers).status_code == 200
    response = web.post(f"/v1/tasks/{task_id}/cancel", headers=headers)
    assert response.status_code == 200, response.text
    assert api.client.get(f"/v1/tasks/{task_id}").json()["state"] == "cancelled"


def test_a_session_cancels_a_group_only_with_its_csrf_token(api: Api) -> None:
    response = api.client.post(
        "/v1/tasks", json={"tasks": [{"command": "sleep 100"}] * 2, "group": {"name": "shot12"}}
    )
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    web, csrf = login(api)
    before = api.client.get("/v1/stats").json()["last_seq"]
    for headers in ({}, {"sec-fetch-site": "same-origin"}, same_origin("wrong")):
        refused = web.post("/v1/groups/shot12/cancel", headers=headers)
        assert refused.status_code == 403, refused.text
    assert web.post("/v1/groups/shot12/x/cancel", headers=same_origin(csrf)).status_code == 403
    assert api.client.get("/v1/stats").json()["last_seq"] == before  # nothing was written
    response = web.post("/v1/groups/shot12/cancel", headers=same_origin(csrf))
    assert response.status_code == 200, response.text
    assert response.json() == {"group": "shot12", "cancelled": 2}
    assert {api.client.get(f"/v1/tasks/{i}").json()["state"] for i in ids} == {"cancelled"}


def test_the_token_works_as_before_and_a_cookie_never_rescues_a_wrong_one(api: Api) -> None:
    web, csrf = login(api)
    assert web.get("/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    wrong = same_origin(csrf, Authorization="Bearer wrong")
    assert web.get("/v1/stats", headers=wrong).status_code == 401


def test_logout_ends_the_session(api: Api) -> None:
    web, csrf = login(api)
    assert web.post("/dashboard/logout").status_code == 403  # CSRF-protected too
    response = web.post("/dashboard/logout", headers=same_origin(csrf))
    assert response.status_code == 200
    assert f'{COOKIE}=""' in response.headers["set-cookie"]
    assert len(gate_of(api).sessions) == 0
    assert web.get("/dashboard/session").json() == {"csrf": None}
    assert web.get("/v1/stats", headers=same_origin(csrf)).status_code in (401, 403)


def test_the_session_token_is_not_given_to_another_site(api: Api) -> None:
    web, _ = login(api)
    for site in ("cross-site", "same-site"):
        response = web.get("/dashboard/session", headers={"sec-fetch-site": site})
        assert response.status_code == 403
        assert "csrf" not in response.json()
    assert browser(api).get("/dashboard/session").json() == {"csrf": None}  # no cookie


def test_an_idle_session_ends(api: Api) -> None:
    clock = Monotonic()
    gate_of(api).sessions._monotonic = clock
    web, csrf = login(api)
    clock.now += 8 * 3600 - 1
    assert web.get("/v1/stats", headers=same_origin(csrf)).status_code == 200
    clock.now += 8 * 3600
    assert web.get("/v1/stats", headers=same_origin(csrf)).status_code == 401


@pytest.mark.parametrize("path", ["/", "/login?code=x", "/dashboard/static/app.js"])
def test_every_page_has_a_strict_content_security_policy(api: Api, path: str) -> None:
    response = browser(api).get(path)
    assert response.headers["content-security-policy"] == CSP
    assert "default-src 'self'" in CSP and "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert "frame-ancestors 'none'" in CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_the_page_and_its_files_hold_no_data_and_nothing_else_is_served(api: Api) -> None:
    web = browser(api)
    index = web.get("/")
    assert index.status_code == 200 and "<script" in index.text
    assert "<script>" not in index.text  # no inline script: the CSP would refuse it
    assert web.get("/dashboard/static/app.js").headers["content-type"].startswith("text/javascript")
    etag = web.get("/dashboard/static/style.css").headers["etag"]
    cached = web.get("/dashboard/static/style.css", headers={"if-none-match": etag})
    assert cached.status_code == 304
    for path in (
        "/dashboard/static/nope.js",
        "/dashboard/static/..%2Fpages.py",
        "/dashboard/static/../pages.py",
        "/dashboard/static/index.html",
        "/dashboard/nothing",
    ):
        assert web.get(path).status_code == 404, path
    assert web.get("/v1/stats").status_code == 401  # and the API still wants the token
