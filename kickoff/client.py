"""The HTTP client shared by the CLI (sync) and the worker (async).

Error bodies map back to the KickoffError with the same code; connection failures and
timeouts become ServerUnreachable naming the address tried.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import httpx

from kickoff import auth, defaults
from kickoff.errors import ERRORS_BY_CODE, KickoffError, ServerUnreachable

DEFAULT_TIMEOUT_S = defaults.CLIENT_TIMEOUT_S  # the name worker/_http.py imports


def base_url(server: str) -> str:
    host, _, port = auth.normalize_server(server).rpartition(":")
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def resolve_token(server: str, token: str | None) -> str | None:
    """--token, else $KICKOFF_TOKEN, else the token this user's config has for the server."""
    return (
        token or os.environ.get("KICKOFF_TOKEN") or auth.find_token(auth.normalize_server(server))
    )


def error_from(response: httpx.Response) -> KickoffError:
    """The KickoffError an error response stands for."""
    try:
        body = response.json()["error"]
        code, message = str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "error", f"HTTP {response.status_code}: {response.text[:200]}"
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        cls = next(
            (c for c in ERRORS_BY_CODE.values() if c.http_status == response.status_code),
            KickoffError,
        )
    return cls(message)


@contextlib.contextmanager
def map_exceptions(server: str) -> Iterator[None]:
    """Translate httpx's transport errors into ServerUnreachable."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ServerUnreachable(f"kickoff server at {server} did not answer in time") from exc
    except httpx.TransportError as exc:
        raise ServerUnreachable(
            f"cannot reach a kickoff server at {server} ({exc.__class__.__name__}); "
            "start one with `kickoff server` (or `kickoff up`), or pass --server HOST:PORT"
        ) from exc


def _check(response: httpx.Response) -> Any:
    if response.is_error:
        raise error_from(response)
    return response.json()


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _settings(
    server: str | None, token: str | None, timeout_s: float
) -> tuple[str, dict[str, Any]]:
    """The normalized address, and what both httpx clients are built with."""
    address = auth.normalize_server(server)
    headers = _headers(resolve_token(address, token))
    return address, {"base_url": base_url(address), "headers": headers, "timeout": timeout_s}


def _present(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters without the ones left unset."""
    return {k: v for k, v in params.items() if v is not None}


class Client:
    """Synchronous client, for the command line."""

    def __init__(
        self,
        server: str | None = None,
        *,
        token: str | None = None,
        timeout_s: float = defaults.CLIENT_TIMEOUT_S,
    ) -> None:
        self.server, settings = _settings(server, token, timeout_s)
        self.http = httpx.Client(**settings)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with map_exceptions(self.server):
            return _check(self.http.request(method, path, **kwargs))

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=_present(params))

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def stream_lines(self, path: str, **params: Any) -> Iterator[str]:
        """Lines of a streaming response (server-sent events)."""
        clean = _present(params)
        with (
            map_exceptions(self.server),
            self.http.stream(
                "GET", path, params=clean, timeout=httpx.Timeout(10.0, read=None)
            ) as response,
        ):
            if response.is_error:
                response.read()
                raise error_from(response)
            yield from response.iter_lines()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """Asynchronous client (the worker's hot path uses kickoff/worker/_http.py; its tests
    drive the worker loop through this one with httpx's MockTransport)."""

    def __init__(
        self,
        server: str | None = None,
        *,
        token: str | None = None,
        timeout_s: float = defaults.CLIENT_TIMEOUT_S,
    ) -> None:
        self.server, settings = _settings(server, token, timeout_s)
        self.http = httpx.AsyncClient(**settings)

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with map_exceptions(self.server):
            return _check(await self.http.request(method, path, **kwargs))

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=_present(params))

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return await self.request("POST", path, json=body, **kwargs)

    async def aclose(self) -> None:
        await self.http.aclose()
