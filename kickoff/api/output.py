"""The output routes: a worker sends an attempt's bytes (`POST /v1/tasks/{id}/output`, the
body is the bytes themselves), anyone reads them by byte offset or follows them live
(`GET /v1/tasks/{id}/output?attempt=N&offset=B[&follow=1]`: a chunked answer that ends
with the attempt). What a read says about the attempt is in its `X-Kickoff-*` headers.

Keeping the bytes is service/output.py's and store/output.py's: no SQL here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from kickoff import defaults
from kickoff.api import parse
from kickoff.api._service import svc
from kickoff.errors import InvalidInput, NotFound
from kickoff.service import Service
from kickoff.service.output import attempt_over, check_running
from kickoff.store.output import Stored

MAX_READ = 16 * 1024 * 1024  # bytes one GET may ask for
FOLLOW_LOOK_S = 0.5  # a follower looks whether its attempt ended at least this often
BYTES = "application/octet-stream"


async def post_output(request: Request) -> Response:
    """Store bytes of the running attempt at `offset`; answers what is stored."""
    task_id = parse.task_id(request.path_params["task_id"])
    params = request.query_params
    attempt = parse.query_int(params, "attempt", 0, low=1, high=defaults.MAX_ATTEMPTS_LIMIT)
    offset = parse.query_int(params, "offset", -1, low=0, high=1 << 50)
    worker_id = parse.string(
        params.get("worker"), field="worker", max_chars=defaults.MAX_NAME_CHARS
    )
    if attempt == 0 or offset < 0:
        raise InvalidInput("attempt, offset: required")
    service = svc(request)
    check_running(service.state, task_id, attempt, worker_id)
    data = await request.body()
    stored = await service.output.append(task_id, attempt, offset, data)
    return _stored_answer(service, stored)


def _stored_answer(service: Service, stored: Stored) -> Response:
    body = {
        "size": stored.size,
        "total": stored.total,
        "capped": stored.size >= service.output.cap,
    }
    return Response(orjson.dumps(body), media_type="application/json")


def _latest_attempt(service: Service, task: dict[str, Any]) -> int:
    """The task's latest attempt (memory is ahead of the projection by a commit)."""
    live = service.state.tasks.get(task["id"])
    known: int = task["attempt"]
    return max(known, live.attempt if live is not None else 0)


def _headers(
    service: Service, attempt: int, start: int, size: int, stored: Stored
) -> dict[str, str]:
    return {
        "X-Kickoff-Attempt": str(attempt),
        "X-Kickoff-Offset": str(start),
        "X-Kickoff-Next-Offset": str(start + size),
        "X-Kickoff-Size": str(stored.size),
        "X-Kickoff-Total": str(stored.total),
        "X-Kickoff-Cap": str(service.output.cap),
        "Cache-Control": "no-store",
    }


async def get_output(request: Request) -> Response:
    """An attempt's output from `offset` (negative: from the end), or followed live."""
    task_id = parse.task_id(request.path_params["task_id"])
    service = svc(request)
    task = await service.get_task(task_id)
    latest = _latest_attempt(service, task)
    params = request.query_params
    attempt = parse.query_int(params, "attempt", latest, low=0, high=defaults.MAX_ATTEMPTS_LIMIT)
    if attempt > latest:
        raise NotFound(f"task {task_id} has no attempt {attempt} (its latest is {latest})")
    offset = parse.query_int(params, "offset", 0, low=-(1 << 50), high=1 << 50)
    limit = parse.query_int(params, "limit", defaults.OUTPUT_READ_BYTES, low=1, high=MAX_READ)
    output = service.output
    over = attempt == 0 or attempt_over(service.state, task_id, attempt)
    if over:  # what it sent before it ended is all stored first
        await output.settled(task_id, attempt)
    start, data, stored = await output.read(task_id, attempt, offset, limit)
    headers = _headers(service, attempt, start, len(data), stored)
    headers["X-Kickoff-Running"] = "0" if over else "1"
    if params.get("follow") not in ("1", "true"):
        return Response(data, media_type=BYTES, headers=headers)
    del headers["X-Kickoff-Next-Offset"], headers["X-Kickoff-Size"], headers["X-Kickoff-Total"]
    headers["X-Accel-Buffering"] = "no"
    return StreamingResponse(
        _follow(service, task_id, attempt, start, data, over), media_type=BYTES, headers=headers
    )


async def _follow(
    service: Service, task_id: int, attempt: int, position: int, first: bytes, over: bool
) -> AsyncIterator[bytes]:
    """The bytes from `position` on as they arrive, until the attempt ended and all it
    sent was passed on (or the server stops)."""
    output = service.output
    if first:
        yield first
        position += len(first)
    while True:
        waiter = output.watch(task_id, attempt)
        try:
            if not over:
                over = attempt_over(service.state, task_id, attempt)
                if over:
                    await output.settled(task_id, attempt)
            _, data, _ = await output.read(task_id, attempt, position, defaults.OUTPUT_CHUNK_BYTES)
            if data:
                yield data
                position += len(data)
                continue
            if over or service.shutting_down:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), FOLLOW_LOOK_S)
        finally:
            output.unwatch(task_id, attempt, waiter)
