"""The web dashboard: a page the server serves at `/` (static files in `static/`, no build
step, nothing loaded from elsewhere), its login by one-time codes and sessions, and the
gate that decides what a session may send to the API. See docs/dashboard.md.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from kickoff.dashboard.gate import Gate, TokenSource
from kickoff.dashboard.pages import Pages
from kickoff.dashboard.sessions import Sessions
from kickoff.service import Service


def mount(*, api: ASGIApp, token_auth: ASGIApp, service: Service, token: str | TokenSource) -> Gate:
    """The server's outermost layer: the dashboard's pages beside the API.

    `api` is the API without authentication, `token_auth` the same behind the token;
    `token` the token or a callable giving the current one.
    """
    current = token if callable(token) else (lambda: token)
    sessions = Sessions()
    pages = Pages(service, sessions, current)
    return Gate(pages=pages.asgi, api=api, token_auth=token_auth, sessions=sessions, token=current)
