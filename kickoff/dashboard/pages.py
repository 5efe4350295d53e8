"""The dashboard's own routes: the page and its files, login and logout, the session's
CSRF token, the throughput series. Every answer carries SECURITY_HEADERS.

The page and its files hold no data and are served to anyone (a visitor without a session
sees how to get a login link); everything with data is behind a session (gate.check) or,
for minting a login code, the token.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kickoff import defaults
from kickoff.api import errors
from kickoff.api.parse import query_int
from kickoff.auth import same_token
from kickoff.dashboard import gate
from kickoff.dashboard.sessions import Sessions
from kickoff.dashboard.throughput import Throughput
from kickoff.errors import Unauthorized
from kickoff.service import Service

logger = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # the login code never travels in a Referer
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
MAX_CODE_CHARS = 128


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """The files of kickoff/dashboard/static, read once (package data: see pyproject.toml)."""
    found: dict[str, Asset] = {}
    for item in resources.files("kickoff.dashboard").joinpath("static").iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in CONTENT_TYPES:
            body = item.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            found[item.name] = Asset(body, CONTENT_TYPES[suffix], etag)
    return found


class SecurityHeaders:
    """Add SECURITY_HEADERS to every response of `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend((k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items())
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class Pages:
    """The dashboard's routes over one service (see the module docstring)."""

    def __init__(self, service: Service, sessions: Sessions, token: gate.TokenSource) -> None:
        self.service = service
        self.sessions = sessions
        self.token = token
        self.assets = load_assets()
        self.throughput = Throughput(service)
        self.app = Starlette(
            routes=[
                Route("/", self.index, methods=["GET", "HEAD"]),
                Route("/dashboard/static/{name}", self.asset, methods=["GET", "HEAD"]),
                Route("/favicon.ico", self.icon, methods=["GET", "HEAD"]),
                Route("/login", self.login, methods=["GET"]),
                Route("/dashboard/login-codes", self.new_code, methods=["POST"]),
                Route("/dashboard/session", self.session, methods=["GET"]),
                Route("/dashboard/logout", self.logout, methods=["POST"]),
                Route("/dashboard/api/throughput", self.series, methods=["GET"]),
            ],
            exception_handlers=dict(errors.HANDLERS),
        )
        self.asgi: ASGIApp = SecurityHeaders(self.app)

    def _serve(self, request: Request, name: str) -> Response:
        asset = self.assets.get(name)
        if asset is None:
            return errors.error_response(404, "not_found", "no such dashboard file")
        headers = {"etag": asset.etag, "cache-control": "no-cache"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.content_type, headers=headers)

    async def index(self, request: Request) -> Response:
        return self._serve(request, "index.html")

    async def icon(self, request: Request) -> Response:
        return self._serve(request, "icon.svg")

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        return self._serve(request, name if name != "index.html" else "")

    async def new_code(self, request: Request) -> Response:
        """POST /dashboard/login-codes with the token: a one-time login code."""
        scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
        token = self.token()
        if scheme.lower() != "bearer" or not same_token(given.strip(), token):
            raise Unauthorized("a login code needs the token (Authorization: Bearer)")
        code = self.sessions.new_code(token)
        logger.info("dashboard login code minted for client=%s", _client(request))
        return JSONResponse(
            {"code": code, "path": f"/login?code={code}", "expires_in_s": self.sessions.code_s},
            status_code=201,
            headers={"cache-control": "no-store"},
        )

    async def login(self, request: Request) -> Response:
        """GET /login?code=...: spend the code, set the session cookie, go to the page."""
        code = request.query_params.get("code", "")[:MAX_CODE_CHARS]
        opened = self.sessions.redeem(code, self.token()) if code else None
        if opened is None:
            logger.info("dashboard login refused client=%s", _client(request))
            return HTMLResponse(
                LOGIN_REFUSED, status_code=403, headers={"cache-control": "no-store"}
            )
        session_id, _ = opened
        logger.info("dashboard session opened client=%s", _client(request))
        # A page that moves on by itself rather than a redirect: a navigation that this
        # origin starts is same-site, so the SameSite=Strict cookie goes along even when
        # the link was opened from another site's page.
        response = HTMLResponse(LOGGED_IN, headers={"cache-control": "no-store"})
        response.set_cookie(
            gate.cookie_name(request.scope),
            session_id,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def session(self, request: Request) -> Response:
        """GET /dashboard/session: the session's CSRF token for the page's requests, null
        without a session (the page then shows how to log in)."""
        try:
            csrf = gate.check(request.scope, self.sessions, self.token(), csrf=False).csrf
        except Unauthorized:
            csrf = None
        return JSONResponse({"csrf": csrf}, headers={"cache-control": "no-store"})

    async def logout(self, request: Request) -> Response:
        gate.check(request.scope, self.sessions, self.token())
        for session_id in gate.session_ids(request.scope):
            self.sessions.end(session_id)
        response = JSONResponse({"ok": True})
        response.delete_cookie(gate.cookie_name(request.scope), path="/")
        return response

    async def series(self, request: Request) -> Response:
        """GET /dashboard/api/throughput?step=S&span=S: finished tasks per interval."""
        gate.check(request.scope, self.sessions, self.token())
        params = request.query_params
        step = query_int(params, "step", 10, low=1, high=3600)
        span = query_int(params, "span", 900, low=step, high=defaults.THROUGHPUT_WINDOW_S)
        return JSONResponse(await self.throughput.series(step_s=step, span_s=span))


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def _page(title: str, body: str, *, refresh: str | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="0; url={refresh}">' if refresh else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title>{meta}"
        '<link rel="icon" href="/dashboard/static/icon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/dashboard/static/style.css"></head>'
        f'<body class="plain"><main class="notice">{body}</main></body></html>'
    )


LOGGED_IN = _page(
    "kickoff: signed in",
    '<h1>Signed in</h1><p><a href="/">Open the dashboard</a></p>',
    refresh="/",
)
LOGIN_REFUSED = _page(
    "kickoff: login link refused",
    "<h1>This login link does not work</h1><p>A link works once, for a minute, and only "
    "until the server's token changes. Run <code>kickoff dashboard</code> for a new one.</p>",
)
