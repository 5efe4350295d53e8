"""Where a request finds its Service: one home for the lookup (`svc`) and for putting the
service on the app (`attach`), which routes.py, output.py and app.py share."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request

from kickoff.service import Service


def attach(app: Starlette, service: Service) -> None:
    """Make `service` the one every request to `app` finds."""
    app.state.service = service


def svc(request: Request) -> Service:
    """The Service of the app the request came to."""
    service: Service = request.app.state.service
    return service
