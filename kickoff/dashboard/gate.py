"""Who may send what: the dashboard's pages, its session-authorized API calls, and the
token-authorized API as before.

A request with an `Authorization` header is the token's business (TokenAuth), whatever
cookies it carries. A request without one but with the dashboard's session cookie reaches
the API only if all of these hold (`check`):

- the cookie names a live session (sessions.py);
- `Sec-Fetch-Site`, when the browser sends it, is `same-origin`, and `Origin`, when sent,
  is this server's own: a page of another site, or of another port of this host (cookies
  do not tell ports apart, and SameSite counts every port of a host as the same site),
  is refused before anything is read;
- the `X-Kickoff-CSRF` header holds that session's CSRF token (a synchronizer token, kept
  on the server, compared in constant time). Another origin can neither read the token
  nor send a custom header without a CORS preflight, which this server never grants;
- the request is one the dashboard makes (SESSION_ALLOWED): reading, and cancelling
  tasks and groups. A session can never submit, act as a worker, change tags or mint login codes:
  those need the token.

Every method is checked, reads too, so a cookie alone never authorizes anything on /v1.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from kickoff.api import errors
from kickoff.dashboard.sessions import Session, Sessions
from kickoff.errors import Forbidden, KickoffError, Unauthorized

TokenSource = Callable[[], str]  # the server's current token (it may be rotated)
CSRF_HEADER = b"x-kickoff-csrf"
COOKIE_PREFIX = "kickoff_session_"
MAX_COOKIE_VALUES = 4  # of the session cookie's name, tried in turn (see session_ids)
PAGE_PATHS = ("/", "/login", "/favicon.ico")
PAGE_PREFIX = "/dashboard/"

# (method, path) pairs a dashboard session may send to the API
SESSION_ALLOWED: tuple[tuple[frozenset[str], re.Pattern[str]], ...] = (
    (frozenset({"GET", "HEAD"}), re.compile(r"/v1/[^\x00]*")),
    (frozenset({"POST"}), re.compile(r"/v1/tasks/[0-9]+/cancel")),
    (frozenset({"POST"}), re.compile(r"/v1/tasks/cancel")),
    (frozenset({"POST"}), re.compile(r"/v1/groups/[^/\x00]+/cancel")),
)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def cookie_name(scope: Scope) -> str:
    """The session cookie's name: one per server port, so that two servers on one host
    (cookies ignore the port) do not overwrite each other's sessions."""
    server = scope.get("server")
    return f"{COOKIE_PREFIX}{server[1]}" if server and server[1] else COOKIE_PREFIX.rstrip("_")


def session_ids(scope: Scope) -> list[str]:
    """The values of the session cookie. There may be several: another port of this host
    may set a cookie of the same name with another path, and the browser sends both."""
    name = cookie_name(scope)
    found: list[str] = []
    for key, value in scope["headers"]:
        if key != b"cookie":
            continue
        for part in bytes(value).decode("latin-1").split(";"):
            key_text, _, text = part.strip().partition("=")
            if key_text == name and text and len(found) < MAX_COOKIE_VALUES:
                found.append(text)
    return found


def own_origin(scope: Scope) -> str:
    return f"{scope.get('scheme', 'http')}://{header(scope, b'host') or ''}"


def check(scope: Scope, sessions: Sessions, token: str, *, csrf: bool = True) -> Session:
    """The session a browser request stands for.

    Raises:
        Unauthorized: no live session.
        Forbidden: from another site or origin, or (with `csrf`) without the session's
            CSRF token.
    """
    session = next(
        (s for s in (sessions.find(i, token) for i in session_ids(scope)) if s is not None), None
    )
    if session is None:
        raise Unauthorized(
            "no dashboard session, or it ended: run `kickoff dashboard` for a login link"
        )
    site = header(scope, b"sec-fetch-site")
    origin = header(scope, b"origin")
    if (site is not None and site != "same-origin") or (
        origin is not None and origin != own_origin(scope)
    ):
        raise Forbidden("a dashboard session works only from the dashboard's own pages")
    if csrf and not session.csrf_ok(header(scope, CSRF_HEADER)):
        raise Forbidden("missing or wrong X-Kickoff-CSRF header (reload the dashboard)")
    return session


def allowed(method: str, path: str) -> bool:
    """Whether a dashboard session may send this request to the API."""
    return any(method in methods and rule.fullmatch(path) for methods, rule in SESSION_ALLOWED)


class Gate:
    """The outermost layer: pages to `pages`, session requests to `api` once checked,
    everything else to `token_auth` (see the module docstring)."""

    def __init__(
        self,
        *,
        pages: ASGIApp,
        api: ASGIApp,
        token_auth: ASGIApp,
        sessions: Sessions,
        token: TokenSource,
    ) -> None:
        self.pages = pages
        self.api = api
        self.token_auth = token_auth
        self.sessions = sessions
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.token_auth(scope, receive, send)
            return
        path: str = scope["path"]
        if path in PAGE_PATHS or path.startswith(PAGE_PREFIX):
            await self.pages(scope, receive, send)
        elif header(scope, b"authorization") is None and session_ids(scope):
            await self._by_session(scope, receive, send)
        else:
            await self.token_auth(scope, receive, send)

    async def _by_session(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            check(scope, self.sessions, self.token())
            if not allowed(scope["method"], scope["path"]):
                raise Forbidden(
                    "a dashboard session may read and cancel; "
                    "anything else needs the token (Authorization: Bearer)"
                )
        except KickoffError as exc:
            response = errors.error_response(exc.http_status, exc.code, exc.message)
            await response(scope, receive, send)
            return
        await self.api(scope, receive, send)
