"""Requests that ride out a server restart: retried with capped exponential back-off while
the server cannot be reached or cannot write; every other answer goes to the caller."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from kickoff.errors import KickoffError, ServerUnreachable, Unavailable

logger = logging.getLogger(__name__)

RETRYABLE = (ServerUnreachable, Unavailable)
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
WARN_EVERY_S = 30.0  # while a request keeps failing, say so this often


class Requester(Protocol):
    """What the worker needs of a client: `kickoff.client.AsyncClient` or `LeanClient`."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any: ...

    async def aclose(self) -> None: ...


class Backoff:
    """Exponential back-off with jitter: first_s, doubling, capped at max_s."""

    def __init__(self, *, first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.next_s = first_s

    def delay(self) -> float:
        delay, self.next_s = self.next_s, min(self.max_s, self.next_s * 2)
        return delay * random.uniform(0.75, 1.0)

    def reset(self) -> None:
        self.next_s = self.first_s


def surely_not_sent(exc: KickoffError) -> bool:
    """True when the request cannot have reached the server (the connection never opened)."""
    return isinstance(exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout)


def refused(exc: BaseException) -> bool:
    """True when the connection was refused: nothing listens at the server's address."""
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return True
        cause = cause.__cause__
    return False


def short(message: str) -> str:
    return message.split(";")[0]  # drop the "start one with ..." advice meant for the CLI


async def call(
    client: Requester,
    method: str,
    path: str,
    *,
    what: str,
    max_delay_s: float = BACKOFF_MAX_S,
    json: Any = None,
    params: dict[str, Any] | None = None,
    timeout_s: float | None = None,
    on_maybe_sent: Callable[[], None] | None = None,
    on_send: Callable[[], None] | None = None,
) -> Any:
    """The answer. `on_maybe_sent()` is called when a try failed after it may have reached
    the server (its effect, say a claim, may have happened with the answer lost);
    `on_send()` before every try but the first.

    Raises:
        KickoffError: any error answer other than unreachable/unavailable.
    """
    backoff: Backoff | None = None  # made on the first failure (most calls have none)
    kwargs: dict[str, Any] = {}
    if json is not None:
        kwargs["json"] = json
    if params is not None:
        kwargs["params"] = params
    if timeout_s is not None:
        kwargs["timeout"] = timeout_s
    failures = 0
    warned_at = -WARN_EVERY_S
    while True:
        try:
            answer = await client.request(method, path, **kwargs)
        except RETRYABLE as exc:
            if on_maybe_sent is not None and not surely_not_sent(exc):
                on_maybe_sent()
            failures += 1
            if backoff is None:
                backoff = Backoff(max_s=min(BACKOFF_MAX_S, max_delay_s))
            delay = backoff.delay()
            now = time.monotonic()
            quiet = now - warned_at < WARN_EVERY_S
            warned_at = warned_at if quiet else now
            (logger.debug if quiet else logger.warning)(
                "%s failed: %s; retrying in %.2fs", what, short(exc.message), delay
            )
            await asyncio.sleep(delay)
            if on_send is not None:
                on_send()
            continue
        if failures:
            logger.info("%s went through after %d retries", what, failures)
        return answer
