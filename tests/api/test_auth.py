"""Token authentication: every route but /healthz refuses a missing or wrong token; the
token files are private; rotation works on a running app; the token never shows up in an
answer or a log line."""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from kickoff import auth
from kickoff.api.app import OPEN_PATHS, create_app
from kickoff.api.routes import ROUTES
from kickoff.errors import DatabaseRefused, InvalidInput
from kickoff.service import Service
from tests.api.conftest import TOKEN, Api
from tests.conftest import wait_until


def endpoints() -> list[tuple[str, str]]:
    """(method, path) of every route in the app's table, path parameters filled in.

    Read from ROUTES, so a route added later is checked without editing this file.
    """
    found = []
    for route in ROUTES:
        assert isinstance(route, Route)
        path = re.sub(r"\{task_id\}", "1", route.path)
        path = re.sub(r"\{worker\}", "w1", path)
        path = re.sub(r"\{group\}", "g1", path)
        assert "{" not in path, f"fill in the path parameters of {route.path}"
        for method in sorted(route.methods or ()):
            found.append((method, path))
    return found


PROTECTED = [(m, p) for m, p in endpoints() if p not in OPEN_PATHS]


@pytest.fixture
def anonymous(api: Api) -> Iterator[TestClient]:
    """The api's client (same app, same event loop), sending no token."""
    saved = api.client.headers.pop("Authorization")
    yield api.client
    api.client.headers["Authorization"] = saved


def assert_refused(response_status: int, body: dict[str, object] | None, given: str) -> None:
    assert response_status == 401
    if body is not None:  # HEAD answers carry no body
        error = body["error"]
        assert isinstance(error, dict) and error["code"] == "unauthorized"
        assert TOKEN not in str(error["message"])
        assert not given or given not in str(error["message"])


def test_the_route_table_is_not_empty_and_every_route_is_covered() -> None:
    assert len(PROTECTED) >= 18
    assert {p for _, p in endpoints()} >= {"/healthz", "/v1/tasks", "/v1/events/stream"}


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_route_refuses_a_missing_token(anonymous: TestClient, method: str, path: str) -> None:
    response = anonymous.request(method, path, json={"command": "true"})
    assert_refused(response.status_code, None if method == "HEAD" else response.json(), "")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-token-given",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",  # right token, wrong scheme
        f"{TOKEN}",  # no scheme
        "Bearer ",
    ],
)
def test_every_route_refuses_a_wrong_token(
    anonymous: TestClient, method: str, path: str, header: str
) -> None:
    response = anonymous.request(
        method, path, json={"command": "true"}, headers={"Authorization": header}
    )
    assert_refused(
        response.status_code, None if method == "HEAD" else response.json(), header.split()[-1]
    )


def test_refused_requests_change_nothing(api: Api, anonymous: TestClient) -> None:
    before = api.service.last_seq
    for method, path in PROTECTED:
        anonymous.request(method, path, json={"command": "true"})
        anonymous.request(method, path, json={}, headers={"Authorization": "Bearer nope"})
    assert api.service.last_seq == before
    assert api.service.state.counts["pending"] == 0  # type: ignore[index]


def test_unknown_paths_need_a_token_too(anonymous: TestClient) -> None:
    """No route enumeration without the token: 401, not 404/405."""
    for method, path in [("GET", "/nope"), ("POST", "/v1/secret"), ("PUT", "/v1/tasks")]:
        assert anonymous.request(method, path).status_code == 401


def test_healthz_is_open(anonymous: TestClient) -> None:
    assert anonymous.get("/healthz").json() == {"ok": True}
    assert anonymous.head("/healthz").status_code == 200


def test_the_right_token_is_accepted_whatever_the_scheme_case(api: Api) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = api.client.get("/v1/stats", headers={"Authorization": f"{scheme} {TOKEN}"})
        assert response.status_code == 200


def test_a_websocket_without_token_is_closed(anonymous: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as caught, anonymous.websocket_connect("/v1/events"):
        pass
    assert caught.value.code == 1008


def test_same_token_compares_exactly() -> None:
    assert auth.same_token("abc", "abc")
    for other in ("abd", "ab", "abcd", "", "ABC", "abc\x00"):
        assert not auth.same_token(other, "abc")
    assert not auth.same_token("\udcff", "abc")  # a header's odd bytes do not raise


# -- token files ---------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def test_token_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    os.umask(0o022)
    db = tmp_path / "data" / "kickoff.db"
    token = auth.load_or_create_token(db)
    path = auth.token_path(db)
    assert path == tmp_path / "data" / "kickoff.db.token"
    assert mode(path) == 0o600
    assert path.read_text() == token + "\n"
    assert len(token) >= 40 and auth.TOKEN_RE.fullmatch(token)
    assert auth.load_or_create_token(db) == token
    rotated = auth.load_or_create_token(db, rotate=True)
    assert rotated != token and mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir() if "tmp" in p.name] == []


def test_a_token_file_open_to_others_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "kickoff.db"
    path = auth.token_path(db)
    path.write_text("a" * 43 + "\n")
    path.chmod(0o644)
    assert auth.load_or_create_token(db) == "a" * 43
    assert mode(path) == 0o600


@pytest.mark.parametrize("content", ["", "short", "has space in it 12345", "é" * 20, "x" * 600])
def test_a_broken_token_file_is_refused_with_a_clear_message(tmp_path: Path, content: str) -> None:
    db = tmp_path / "kickoff.db"
    auth.token_path(db).write_text(content)
    with pytest.raises(DatabaseRefused, match="does not hold a valid token") as caught:
        auth.load_or_create_token(db)
    assert "kickoff token --rotate" in caught.value.message


def test_an_unwritable_token_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DatabaseRefused, match=r"token file .*: Not a directory"):
        auth.load_or_create_token(blocker / "kickoff.db")  # its "directory" is a file
    with pytest.raises(DatabaseRefused, match=r"cannot write the token file"):
        auth.write_token_file(blocker / "kickoff.db.token", "t" * 43)


def test_the_client_config_names_every_local_address(config_home: Path) -> None:
    auth.remember_token(4242, "t" * 43)
    path = config_home / "kickoff" / "tokens.json"
    assert mode(path) == 0o600
    for name in ("127.0.0.1:4242", "localhost:4242", f"{socket.gethostname()}:4242"):
        assert auth.find_token(name) == "t" * 43
    assert auth.find_token("127.0.0.1:4243") is None
    auth.remember_token(4243, "u" * 43, host="10.1.2.3")
    assert auth.find_token("10.1.2.3:4243") == "u" * 43
    assert auth.find_token("localhost:4242") == "t" * 43  # other ports kept
    assert mode(path) == 0o600


def test_rotate_replaces_the_file_and_the_remembered_entries(
    tmp_path: Path, config_home: Path
) -> None:
    db = tmp_path / "kickoff.db"
    old = auth.load_or_create_token(db)
    auth.remember_token(3355, old)
    auth.remember_token(4000, "other-server-token-0123456789")
    new = auth.rotate(db)
    assert new != old and auth.read_token_file(auth.token_path(db)) == new
    assert auth.find_token("localhost:3355") == new
    assert auth.find_token("localhost:4000") == "other-server-token-0123456789"
    assert old not in (config_home / "kickoff" / "tokens.json").read_text()


def test_a_broken_config_is_ignored_by_clients_and_rewritten(config_home: Path) -> None:
    path = config_home / "kickoff" / "tokens.json"
    path.parent.mkdir(parents=True)
    path.write_text("[1, 2")
    assert auth.find_token("localhost:3355") is None
    auth.remember_token(3355, "v" * 43)
    assert auth.find_token("localhost:3355") == "v" * 43


# -- rotation on a running app, and no token in the logs -------------------------


@pytest.fixture
def rotating(tmp_path: Path, config_home: Path) -> Iterator[tuple[TestClient, Path, str]]:
    db = tmp_path / "rot.db"
    token = auth.load_or_create_token(db)
    app = create_app(Service(db), token=token, token_file=auth.token_path(db))
    with TestClient(app) as client:
        yield client, db, token


def test_a_rotated_token_takes_effect_without_a_restart(
    rotating: tuple[TestClient, Path, str],
) -> None:
    client, db, old = rotating

    def status(token: str) -> int:
        return client.get("/v1/stats", headers={"Authorization": f"Bearer {token}"}).status_code

    assert status(old) == 200
    new = auth.rotate(db)
    wait_until(lambda: status(new) == 200, timeout=5, what="the new token to be accepted")
    assert status(old) == 401


def test_a_broken_token_file_keeps_the_running_token(
    rotating: tuple[TestClient, Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, db, token = rotating
    auth.token_path(db).write_text("not a token\n")
    caplog.set_level(logging.WARNING)
    headers = {"Authorization": f"Bearer {token}"}

    def still_accepted_after_a_reload() -> bool:
        assert client.get("/v1/stats", headers=headers).status_code == 200
        return "keeping the current token" in caplog.text

    wait_until(still_accepted_after_a_reload, timeout=5)
    assert token not in caplog.text


def test_the_token_is_never_logged_nor_echoed(
    rotating: tuple[TestClient, Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, db, token = rotating
    caplog.set_level(logging.DEBUG)
    bodies = []
    for header in (f"Bearer {token}", f"Bearer {token[:-2]}", "Bearer guess", f"Basic {token}"):
        headers = {"Authorization": header}
        for method, path in [(m, p) for m, p in endpoints() if "stream" not in p]:
            if method == "HEAD":
                continue
            bodies.append(client.request(method, path, headers=headers, content=b"{bad").text)
            bodies.append(client.request(method, path, headers=headers, json={"x": 1}).text)
    new = auth.rotate(db)
    wait_until(
        lambda: (
            client.get("/v1/stats", headers={"Authorization": f"Bearer {new}"}).status_code == 200
        ),
        timeout=5,
    )
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    for secret in (token, new, token[:-2]):
        assert secret not in logged
        assert all(secret not in body for body in bodies)


# -- server addresses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("host", "host:3355"),
        ("host:1234", "host:1234"),
        ("http://host:1234/", "host:1234"),
        ("HTTP://host", "host:3355"),
        ("[::1]:4000", "::1:4000"),
        ("::1", "::1:3355"),
    ],
)
def test_server_addresses(given: str, expected: str) -> None:
    assert auth.normalize_server(given) == expected


@pytest.mark.parametrize("given", ["https://host", "HTTPS://host:443", " https://host/"])
def test_an_https_address_is_refused_not_downgraded(given: str) -> None:
    """Dropping the "s" would send the token in clear text where the user expects TLS."""
    with pytest.raises(InvalidInput, match="plain HTTP") as caught:
        auth.normalize_server(given)
    assert "ssh -L" in caught.value.message
