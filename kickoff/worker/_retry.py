"""The worker's one retry loop: a request tried again, with capped exponential back-off,
while the server cannot be reached or cannot write (and, for a report, while it answers
anything but a refusal); every other answer goes to the caller."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from kickoff import defaults
from kickoff.errors import KickoffError, ServerUnreachable, Unavailable

logger = logging.getLogger(__name__)

RETRYABLE = (ServerUnreachable, Unavailable)


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
        content: bytes | None = None,
    ) -> Any: ...

    async def aclose(self) -> None: ...


class GaveUp(Exception):
    """`give_up()` said to stop trying (say, the report's registration was lost)."""


class Backoff:
    """Exponential back-off with jitter: first_s, doubling, capped at max_s."""

    def __init__(
        self, *, first_s: float = defaults.BACKOFF_FIRST_S, max_s: float = defaults.BACKOFF_MAX_S
    ) -> None:
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


def unreachable(exc: KickoffError) -> bool:
    """The default: retry only while the server cannot be reached or cannot write."""
    return isinstance(exc, RETRYABLE)


def short(message: str) -> str:
    return message.split(";")[0]  # drop the "start one with ..." advice meant for the CLI


async def call(
    client: Requester,
    method: str,
    path: str,
    *,
    what: str,
    max_delay_s: float = defaults.BACKOFF_MAX_S,
    json: Any = None,
    params: dict[str, Any] | None = None,
    timeout_s: float | None = None,
    retry: Callable[[KickoffError], bool] = unreachable,
    give_up: Callable[[], bool] | None = None,
    on_maybe_sent: Callable[[], None] | None = None,
    on_send: Callable[[], None] | None = None,
) -> Any:
    """The answer, once a try gets one that `retry` does not want tried again.

    `on_maybe_sent()` is called when a try failed after it may have reached the server
    (its effect, say a claim, may have happened with the answer lost); `on_send()` before
    every try but the first; `give_up()` before each of them.

    Raises:
        KickoffError: an error answer `retry` refuses to try again.
        GaveUp: give_up() turned true.
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
    warned_at = -defaults.WARN_EVERY_S
    while True:
        try:
            answer = await client.request(method, path, **kwargs)
        except KickoffError as exc:
            if not retry(exc):
                raise
            if on_maybe_sent is not None and not surely_not_sent(exc):
                on_maybe_sent()
            failures += 1
            if backoff is None:
                backoff = Backoff(max_s=min(defaults.BACKOFF_MAX_S, max_delay_s))
            delay = backoff.delay()
            now = time.monotonic()
            quiet = now - warned_at < defaults.WARN_EVERY_S
            warned_at = warned_at if quiet else now
            (logger.debug if quiet else logger.warning)(
                "%s failed: %s; retrying in %.2fs", what, short(exc.message), delay
            )
            await asyncio.sleep(delay)
            if give_up is not None and give_up():
                raise GaveUp(what) from None
            if on_send is not None:
                on_send()
            continue
        if failures:
            logger.info("%s went through after %d retries", what, failures)
        return answer
