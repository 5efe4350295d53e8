"""One error shape for every failure: `{"error": {"code", "message"}}`.

Messages say what was wrong; they quote at most a short piece of the request and never
the token.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from kickoff.errors import KickoffError, Unavailable

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "malformed_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}
MAX_QUOTED = 200  # characters of a request path quoted back in a message


def error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def kickoff_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KickoffError)
    if exc.http_status >= 500:
        logger.error("%s %s: %s", request.method, request.url.path[:MAX_QUOTED], exc.message)
    return error_response(exc.http_status, exc.code, exc.message)


async def http_error(request: Request, exc: Exception) -> Response:
    """starlette's own: no route (404), wrong method (405, with its Allow header)."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    if exc.status_code == 404:
        message = f"no route {request.url.path[:MAX_QUOTED]}"
    elif exc.status_code == 405:
        message = f"{request.method[:20]} is not allowed on {request.url.path[:MAX_QUOTED]}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def storage_error(request: Request, exc: Exception) -> Response:
    """A database error outside the writer (a read failed): 503, the details in the log."""
    assert isinstance(exc, sqlite3.Error)
    logger.error("storage error on %s %s: %s", request.method, request.url.path[:MAX_QUOTED], exc)
    damaged = isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc)
    hint = " (the database is damaged: run `kickoff verify`)" if damaged else ""
    return error_response(
        Unavailable.http_status, Unavailable.code, f"cannot read the database{hint}; try again"
    )


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up before its request body arrived: nothing to answer, no error."""
    logger.debug(
        "client hung up during %s %s; nothing done", request.method, request.url.path[:MAX_QUOTED]
    )
    return error_response(400, "malformed_request", "the request body did not arrive")


async def unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path[:MAX_QUOTED])
    return error_response(500, "internal", "internal server error (see the server log)")


Handler = Callable[[Request, Exception], Awaitable[Response]]

# Exception class -> its handler; the most specific class of an exception's MRO wins.
HANDLERS: dict[type[Exception], Handler] = {
    KickoffError: kickoff_error,
    HTTPException: http_error,
    sqlite3.Error: storage_error,
    ClientDisconnect: client_gone,
    Exception: unexpected_error,
}


async def response_for(request: Request, exc: Exception) -> Response:
    """The error response for an exception, chosen as starlette chooses from HANDLERS."""
    for cls in type(exc).__mro__:
        handler = HANDLERS.get(cls)
        if handler is not None:
            return await handler(request, exc)
    raise exc  # a BaseException that is not an Exception: not ours to answer
