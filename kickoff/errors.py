"""The KickoffError hierarchy: each error knows its slug, HTTP status and CLI exit code.

The API turns them into `{"error": {"code", "message"}}`; the client turns that body back
into the same class; the CLI prints the message and exits with `exit_code`.

The mappings are not here: api/errors.py (HTTP), client.py (answers back to errors), cli
(exit codes).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is for the type checker: its import slows `kickoff new`
if TYPE_CHECKING:
    from typing import ClassVar


class KickoffError(Exception):
    """Base of every error kickoff expects and reports to a person."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(KickoffError):
    """A well-formed value that breaks a rule (tag grammar, priority range, ...)."""

    code = "invalid_input"
    http_status = 422
    exit_code = 2


class MalformedRequest(InvalidInput):
    """The request body is not the JSON it should be."""

    code = "malformed_request"
    http_status = 400


class Unauthorized(KickoffError):
    """The token is missing or wrong."""

    code = "unauthorized"
    http_status = 401
    exit_code = 5


class Forbidden(KickoffError):
    """Authenticated, but not allowed to do this (a dashboard session that is not the token)."""

    code = "forbidden"
    http_status = 403
    exit_code = 5


class NotFound(KickoffError):
    """No such task, worker or route."""

    code = "not_found"
    http_status = 404
    exit_code = 4


class Conflict(KickoffError):
    """The request contradicts the current state."""

    code = "conflict"
    http_status = 409
    exit_code = 1


class StaleAttempt(Conflict):
    """A report from an attempt that is no longer the task's current one."""

    code = "stale_attempt"


class IllegalTransition(Conflict):
    """The task's state does not allow this (cancel of a finished task, ...)."""

    code = "illegal_transition"


class TooLarge(KickoffError):
    """A body, batch or command over its limit."""

    code = "too_large"
    http_status = 413
    exit_code = 2


class Unavailable(KickoffError):
    """The server cannot take writes right now (storage failure, shutting down)."""

    code = "unavailable"
    http_status = 503
    exit_code = 1


class NotLeader(Unavailable):
    """This server is a standby (or lost its lease): the leader takes writes."""

    code = "not_leader"


class ServerUnreachable(KickoffError):
    """Client side: could not connect to the server, or it did not answer in time."""

    code = "server_unreachable"
    http_status = 503
    exit_code = 3


class CannotListen(KickoffError):
    """Server side: the port is in use, or the address cannot be listened on."""

    code = "cannot_listen"
    http_status = 500
    exit_code = 6


class DatabaseRefused(KickoffError):
    """Not a kickoff database, a newer schema, a broken chain, or unreadable storage."""

    code = "database_refused"
    http_status = 500
    exit_code = 1


ERRORS_BY_CODE: dict[str, type[KickoffError]] = {
    cls.code: cls
    for cls in (
        KickoffError,
        InvalidInput,
        MalformedRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        StaleAttempt,
        IllegalTransition,
        TooLarge,
        Unavailable,
        NotLeader,
        ServerUnreachable,
        CannotListen,
        DatabaseRefused,
    )
}
