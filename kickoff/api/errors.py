"""One error shape for every failure: `{"error": {"code", "message"}}`."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kickoff.errors import KickoffError

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "malformed_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def kickoff_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KickoffError)
    return error_response(exc.http_status, exc.code, exc.message)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if exc.status_code != 404 else f"no route {request.url.path}"
    return error_response(exc.status_code, code, str(message))


async def unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", "internal server error (see the server log)")
