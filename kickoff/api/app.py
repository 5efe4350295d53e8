"""create_app(): the starlette application around one Service, with token auth."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from kickoff.api import errors
from kickoff.api.routes import ROUTES
from kickoff.auth import same_token
from kickoff.errors import KickoffError
from kickoff.service import Service

OPEN_PATHS = frozenset({"/healthz"})


class TokenAuth:
    """Refuse every request but /healthz without `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value.decode("latin-1")
                break
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not same_token(token.strip(), self.token):
            message = "missing token" if not given else "wrong token"
            response = errors.error_response(
                401, "unauthorized", f"{message}: pass --token or set KICKOFF_TOKEN"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(service: Service, *, token: str, manage_service: bool = True) -> ASGIApp:
    """The ASGI app. With manage_service, the app's lifespan starts and stops the service."""

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
        exception_handlers={
            KickoffError: errors.kickoff_error,
            HTTPException: errors.http_error,
            Exception: errors.unexpected_error,
        },
    )
    app.state.service = service
    return TokenAuth(app, token)
