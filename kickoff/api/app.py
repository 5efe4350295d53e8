"""create_app(): the starlette application around one Service, with token auth and body
limits in front of every route.

Order of the layers, outermost first: the dashboard's gate (its pages, and what a
browser session may send to the API: kickoff/dashboard/gate.py), TokenAuth (401 before
anything else is looked at, so an unauthenticated caller learns nothing, not even which
paths exist), BodyLimit (413
before a byte too many is buffered), HotRoutes (the workers' per-task requests), then
starlette's routing and error handlers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kickoff import dashboard, defaults
from kickoff.api import errors, routes
from kickoff.api._service import attach
from kickoff.api.routes import ROUTES
from kickoff.auth import TokenFile, same_token
from kickoff.errors import TooLarge
from kickoff.service import Service

OPEN_PATHS = frozenset({"/healthz"})
# Only a submit may carry a big body (a batch of up to MAX_BATCH tasks); every other
# request body is small, so a smaller bound keeps a careless or hostile client cheap.
LARGE_BODY_PATHS = frozenset({"/v1/tasks"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class TokenAuth:
    """Refuse every request but /healthz without `Authorization: Bearer <token>`.

    `token` is the token itself or a callable giving the current one (see TokenFile).
    The 401 message says what is missing, never what was given or expected.
    """

    def __init__(self, app: ASGIApp, token: str | Callable[[], str]) -> None:
        self.app = app
        self._token = token if callable(token) else (lambda: token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or (scope["type"] == "http" and scope["path"] in OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"authorization")
        scheme, _, token = (given or "").strip().partition(" ")
        if scheme.lower() == "bearer" and same_token(token.strip(), self._token()):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket (none are served): close it, policy violation
            await send({"type": "websocket.close", "code": 1008})
            return
        message = "missing token" if not given else "wrong token"
        response = errors.error_response(
            401,
            "unauthorized",
            f"{message}: pass --token or set KICKOFF_TOKEN "
            "(the server prints it at start-up; `kickoff token` on the server's machine shows it)",
            headers={"WWW-Authenticate": 'Bearer realm="kickoff"'},
        )
        await response(scope, receive, send)


class BodyLimit:
    """413 for a request body over its limit: by Content-Length before reading, or while
    reading a chunked body, so nothing over the limit is ever held in memory."""

    def __init__(self, app: ASGIApp, *, large: int, small: int) -> None:
        self.app = app
        self.large = large
        self.small = small

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.large if scope["path"] in LARGE_BODY_PATHS else self.small
        declared = _header(scope, b"content-length")
        if declared is not None and not (declared.isascii() and declared.strip().isdigit()):
            response = errors.error_response(
                400, "malformed_request", "Content-Length is not a number"
            )
            await response(scope, receive, send)
            return
        if declared is not None and int(declared) > limit:
            response = errors.error_response(
                413,
                TooLarge.code,
                f"request body of {int(declared)} bytes is over the {limit} byte limit",
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLarge(f"request body is over the {limit} byte limit")
            return message

        await self.app(scope, limited, send)


Handler = Callable[[Request], Awaitable[Response]]


def hot_routes() -> dict[tuple[str, str], tuple[str, Handler]]:
    """(collection, action) of `POST /v1/<collection>/{key}/<action>` -> (path parameter,
    handler), for the routes of ROUTES whose handler is in routes.HOT."""
    table: dict[tuple[str, str], tuple[str, Handler]] = {}
    for route in ROUTES:
        if route.endpoint in routes.HOT and "POST" in (route.methods or ()):
            _, version, collection, key, action = route.path.split("/")
            assert version == "v1" and key.startswith("{") and key.endswith("}"), route.path
            table[(collection, action)] = (key[1:-1], route.endpoint)
    return table


HOT_ROUTES = hot_routes()


class HotRoutes:
    """The requests every task costs (routes.HOT: complete, output, claim, heartbeat) go
    straight to their handlers: one split instead of starlette's route scan and middleware
    layers, which cost about as much CPU as the handler. Same handlers, same error
    responses (errors.HANDLERS, as starlette is configured); everything else goes to `app`.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            if len(parts) == 5 and parts[1] == "v1" and parts[3]:
                hot = HOT_ROUTES.get((parts[2], parts[4]))
                if hot is not None:
                    name, handler = hot
                    scope["app"] = self.app
                    scope["path_params"] = {name: parts[3]}
                    request = Request(scope, receive)
                    try:
                        response = await handler(request)
                    except Exception as exc:
                        response = await errors.response_for(request, exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(
    service: Service,
    *,
    token: str,
    token_file: Path | None = None,
    manage_service: bool = True,
    max_body_bytes: int = defaults.MAX_BODY_BYTES,
    max_small_body_bytes: int = defaults.MAX_SMALL_BODY_BYTES,
) -> ASGIApp:
    """The ASGI app. With manage_service, the app's lifespan starts and stops the service.

    With token_file, a changed file replaces the token on the fly (a rotation).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_service:
            await service.start()
        try:
            yield
        finally:
            if manage_service:
                await service.stop()

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers=dict(errors.HANDLERS),
    )
    attach(app, service)
    limited = BodyLimit(HotRoutes(app), large=max_body_bytes, small=max_small_body_bytes)
    current: str | Callable[[], str] = token
    if token_file is not None:
        current = TokenFile(token_file, token).current
    return dashboard.mount(
        api=limited, token_auth=TokenAuth(limited, current), service=service, token=current
    )
