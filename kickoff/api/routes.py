"""The /v1 handlers: parse -> service -> JSON. No rules here; those live in state/decide.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Match, Route

from kickoff import defaults
from kickoff.api import output, parse
from kickoff.api._service import svc
from kickoff.clock import from_text, to_text
from kickoff.errors import DatabaseRefused, InvalidInput, KickoffError, NotFound
from kickoff.projections import queries, search
from kickoff.service import Claimed, ClaimRefused, Service, why
from kickoff.service.output import check_running
from kickoff.state.task_state import LIVE_STATES, TaskState
from kickoff.store.output import Stored

logger = logging.getLogger(__name__)

STATES = [str(s) for s in TaskState]
LIVE = [str(s) for s in LIVE_STATES]


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def client_of(request: Request) -> str | None:
    return f"{request.client.host}" if request.client else None


async def submit(request: Request) -> Response:
    data = await parse.body(request)
    tasks = parse.submission(data)
    group = parse.group(data)
    ids, label = await svc(request).submit_to_group(
        tasks, submitted_by=client_of(request), group=group
    )
    answer: dict[str, Any] = {"ids": ids}
    if group is not None:
        answer["group"] = label
    return ORJSONResponse(answer, status_code=201)


def _group_id(service: Service, request: Request) -> int | None:
    """The `group` query parameter's group id, None without one (404 for no such group)."""
    name = request.query_params.get("group")
    return None if not name else service.find_group(name)


def _with_waits(service: Service, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each waiting task's `waiting_for`: the dependencies it still waits for (memory is
    ahead of the projections by at most the commit in flight)."""
    for task in tasks:
        task["waiting_for"] = service.waiting_for(task["id"]) if task["state"] == "waiting" else []
    return tasks


def _states(request: Request) -> list[str]:
    states = parse.query_list(request.query_params.getlist("state"))
    if "all" in states or request.query_params.get("all") in ("1", "true"):
        return []
    if not states:
        return LIVE
    bad = sorted(set(states) - set(STATES))
    if bad:
        raise InvalidInput(f"state: unknown {', '.join(bad)}; one of {', '.join(STATES)}, all")
    return states


async def list_tasks(request: Request) -> Response:
    params = request.query_params
    states = _states(request)
    limit = parse.query_int(params, "limit", defaults.DEFAULT_PAGE, low=1, high=defaults.MAX_PAGE)
    after = parse.query_int(params, "after", 0, low=0, high=1 << 40)
    descending = params.get("order") == "desc"
    before = parse.query_int(params, "before", 0, low=0, high=1 << 40) or None
    if params.get("q") or params.get("tag"):
        found = search.Search(
            text=parse.search_text(params.get("q")),
            tag=parse.search_tag(params.get("tag")),
            states=states,
            worker_id=params.get("worker"),
            after_id=after,
            before_id=before,
            descending=descending,
            limit=limit,
        )
        return ORJSONResponse(await _search(svc(request), found))
    service = svc(request)
    group_id = _group_id(service, request)
    query = queries.list_tasks(
        states=states,
        worker_id=params.get("worker"),
        group_id=group_id,
        after_id=after,
        limit=limit + 1,
        descending=descending,
        before_id=before,
    )
    tasks = _with_waits(service, await service.query(query))
    counts = await service.query(queries.counts(group_id=group_id))
    more = len(tasks) > limit
    tasks = tasks[:limit]
    return ORJSONResponse(
        {
            "tasks": tasks,
            "counts": counts,
            "next_after": tasks[-1]["id"] if more and not descending else None,
            "next_before": tasks[-1]["id"] if more and descending else None,
        }
    )


async def _search(service: Service, found: search.Search) -> dict[str, Any]:
    """A bounded search (projections/search.py): one window of ids, its matches."""
    far_id, scanned = await service.query(search.window(found))
    tasks = [] if far_id is None else await service.query(search.matches(found, far_id))
    counts = await service.query(queries.counts())
    return {**search.page(found, far_id, scanned, tasks), "counts": counts}


async def get_task(request: Request) -> Response:
    task_id = parse.task_id(request.path_params["task_id"])
    service = svc(request)
    task = _with_waits(service, [await service.get_task(task_id)])[0]
    try:
        task.update(await service.query(queries.task_setting(service.recorder, task_id)))
    except DatabaseRefused:  # a damaged submission: `kickoff verify` names it
        task.update({"cwd": None, "env": {}})
    return ORJSONResponse(task)


async def task_why(request: Request) -> Response:
    """Why the task waits, or where it ran (SPEC §11; state/why.py)."""
    task_id = parse.task_id(request.path_params["task_id"])
    explanation = await why.explain(svc(request), task_id)
    return ORJSONResponse(dataclasses.asdict(explanation))


async def get_group(request: Request) -> Response:
    service = svc(request)
    group_id = service.find_group(request.path_params["group"])
    group = await service.query(queries.get_group(group_id))
    counts = await service.query(queries.counts(group_id=group_id))
    return ORJSONResponse(
        {
            **group,
            "counts": {state: counts.get(state, 0) for state in STATES},
            "total": sum(counts.values()),
            "live": sum(counts.get(state, 0) for state in LIVE),
        }
    )


async def cancel_group(request: Request) -> Response:
    service = svc(request)
    name = request.path_params["group"]
    group_id = service.find_group(name)
    asked = await service.cancel_group(name, requested_by=client_of(request))
    label = service.state.groups[group_id].label
    return ORJSONResponse({"group": label, "cancelled": asked})


async def task_events(request: Request) -> Response:
    task_id = parse.task_id(request.path_params["task_id"])
    service = svc(request)
    await service.get_task(task_id)  # 404 for an unknown task
    events = await service.query(
        queries.list_events(service.recorder, task_id=task_id, limit=100_000)
    )
    if request.query_params.get("heartbeats", "1") not in ("0", "false"):
        events = await _with_heartbeats(service, task_id, events)
    return ORJSONResponse({"events": events})


async def _with_heartbeats(
    service: Service, task_id: int, events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Add the heartbeats of each worker while it ran this task (they name the task)."""
    extra: list[dict[str, Any]] = []
    for i, event in enumerate(events):
        if event["type"] != "TaskClaimed":
            continue
        end = next((e["seq"] for e in events[i + 1 :]), None)
        beats = await service.query(
            queries.list_events(
                service.recorder,
                after_seq=event["seq"],
                until_seq=None if end is None else end - 1,
                types=["WorkerHeartbeat"],
                worker_id=event["worker_id"],
                limit=100_000,
            )
        )
        extra.extend(b for b in beats if any(p[0] == task_id for p in b["data"]["running"]))
    return sorted(events + extra, key=lambda e: e["seq"])


async def _cancel_one(service: Service, task_id: int, by: str | None) -> dict[str, Any]:
    await service.cancel(task_id, requested_by=by)
    task = service.state.tasks.get(task_id)
    return {"id": task_id, "state": str(task.state) if task else "cancelled"}


async def cancel_task(request: Request) -> Response:
    task_id = parse.task_id(request.path_params["task_id"])
    return ORJSONResponse(await _cancel_one(svc(request), task_id, client_of(request)))


async def cancel_tasks(request: Request) -> Response:
    ids = parse.ids(await parse.body(request))
    results = []
    for task_id in ids:
        try:
            results.append(await _cancel_one(svc(request), task_id, client_of(request)))
        except KickoffError as exc:
            results.append({"id": task_id, "error": {"code": exc.code, "message": exc.message}})
    return ORJSONResponse({"results": results})


async def complete(request: Request) -> Response:
    """Report an attempt's end; with `"claim": {...}` also claim the next tasks (one round trip)."""
    task_id = parse.task_id(request.path_params["task_id"])
    data = await parse.body(request)
    then_claim = data.pop("claim", None) if isinstance(data, dict) else None
    rest = data.pop("output", None) if isinstance(data, dict) else None
    report = parse.completion(task_id, data)
    service = svc(request)
    stored = None
    if rest is not None:  # the attempt's last output: stored before anyone sees it ended
        offset, text = parse.output_rest(rest)
        check_running(service.state, task_id, report.attempt, report.worker_id)
        stored = service.output.append(task_id, report.attempt, offset, text)
    if then_claim is None:
        await service.complete(report)
        await _ended(service, report.task_id, report.attempt, stored)
        return ORJSONResponse({"ok": True})
    max_tasks, wait_s = parse.claim(then_claim)
    try:
        async with _hang_up(request, wait_s) as gone:
            claimed = await service.complete_and_claim(
                report, max_tasks=max_tasks, wait_s=wait_s, gone=gone
            )
    except ClaimRefused as exc:  # the completion counted; the claim could not be made
        await _ended(service, report.task_id, report.attempt, stored)
        error = {"code": exc.refused.code, "message": exc.refused.message}
        return ORJSONResponse({"ok": True, "tasks": [], "claim_error": error})
    await _ended(service, report.task_id, report.attempt, stored)
    return ORJSONResponse({"ok": True, "tasks": [_claimed_json(c) for c in claimed]})


async def _ended(
    service: Service, task_id: int, attempt: int, stored: asyncio.Future[Stored] | None
) -> None:
    """After a report: its output is stored (a refused chunk is only logged: the report
    counted), and whoever follows the attempt looks again."""
    if stored is not None:
        try:
            await stored
        except KickoffError as exc:
            logger.warning("output of task=%d attempt=%d: %s", task_id, attempt, exc.message)
    service.output.wake(task_id, attempt)


@contextlib.asynccontextmanager
async def _hang_up(
    request: Request, wait_s: float
) -> AsyncIterator[Callable[[], asyncio.Future[None]] | None]:
    """A function that starts watching for the client to disconnect (its body is already
    read) and returns a future that resolves then; None when the claim will not wait.
    The service calls it only if the claim has to wait: most find a task at once."""
    if wait_s <= 0:
        yield None
        return
    watching: list[asyncio.Future[None]] = []

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    def watch() -> asyncio.Future[None]:
        if not watching:
            watching.append(asyncio.ensure_future(disconnected()))
        return watching[0]

    try:
        yield watch
    finally:
        for task in watching:
            task.cancel()


def _claimed_json(c: Claimed) -> dict[str, Any]:
    claimed = {
        "task_id": c.task_id,
        "attempt": c.attempt,
        "command": c.command,
        "timeout_s": c.timeout_s,
        "array_index": c.array_index,
    }
    if c.cwd is not None:  # left out when unset, as in the task's submission
        claimed["cwd"] = c.cwd
    if c.env:
        claimed["env"] = dict(c.env)
    if c.resources:  # left out when it holds nothing
        claimed["resources"] = dict(c.resources)
        claimed["gpu_ids"] = list(c.gpu_ids)
    return claimed


async def register(request: Request) -> Response:
    reg = parse.registration(await parse.body(request))
    service = svc(request)
    worker_id = await service.register(
        name=reg.name,
        tags=reg.tags,
        slots=reg.slots,
        host=reg.host or client_of(request),
        resources=reg.resources,
        gpu_ids=reg.gpu_ids,
    )
    timeout = service.heartbeat_timeout_s
    return ORJSONResponse(
        {
            "worker_id": worker_id,
            "heartbeat_interval_s": min(defaults.HEARTBEAT_INTERVAL_S, timeout / 3),
            "heartbeat_timeout_s": timeout,
            "server_id": service.log_id[:16],  # which database: its log's first hash
        },
        status_code=201,
    )


def _with_free(service: Service, workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add what each live worker has free now (from the state: declared minus what its
    running tasks hold); None for a worker that is gone. A live worker's last_seen is
    when the server last heard from it (an idle one's heartbeats are not all events)."""
    heard = service.upkeep.heard
    for worker in workers:
        live = service.state.workers.get(worker["id"])
        if live is None:
            worker["resources_free"] = worker["gpu_ids_free"] = None
        else:
            worker["resources_free"] = dict(sorted(live.free.items()))
            worker["gpu_ids_free"] = live.free_gpu_ids()
            seen = heard.get(live.id)
            if seen is not None and seen > live.last_seen:
                worker["last_seen"] = to_text(seen)
    return workers


async def list_workers(request: Request) -> Response:
    gone = request.query_params.get("all") in ("1", "true")
    service = svc(request)
    workers = await service.query(queries.list_workers(include_gone=gone))
    return ORJSONResponse({"workers": _with_free(service, workers)})


async def get_worker(request: Request) -> Response:
    key = request.path_params["worker"]
    service = svc(request)
    worker = await service.query(queries.get_worker(key))
    if worker is None:
        raise NotFound(f"no worker {key[:80]!r}")
    return ORJSONResponse(_with_free(service, [worker])[0])


async def claim(request: Request) -> Response:
    worker_id = request.path_params["worker"]
    max_tasks, wait_s = parse.claim(await parse.body(request))
    async with _hang_up(request, wait_s) as gone:
        claimed = await svc(request).claim(worker_id, max_tasks=max_tasks, wait_s=wait_s, gone=gone)
    return ORJSONResponse({"tasks": [_claimed_json(c) for c in claimed]})


async def heartbeat(request: Request) -> Response:
    running = parse.heartbeat(await parse.body(request))
    stop = await svc(request).heartbeat(request.path_params["worker"], running)
    return ORJSONResponse({"cancel": stop})


async def change_tags(request: Request) -> Response:
    add, remove, replace = parse.tag_change(await parse.body(request))
    service = svc(request)
    worker_id = service.resolve_worker(request.path_params["worker"])
    tags = await service.change_tags(worker_id, add=add, remove=remove, replace=replace)
    return ORJSONResponse({"worker_id": worker_id, "tags": sorted(tags)})


async def deregister(request: Request) -> Response:
    await svc(request).stop_worker(request.path_params["worker"])
    return ORJSONResponse({"ok": True})


async def stats(request: Request) -> Response:
    service = svc(request)
    group_id = _group_id(service, request)
    counts = await service.query(queries.counts(group_id=group_id))
    now = service.clock()
    minute_ago = to_text(now - timedelta(seconds=60))
    finished = ("TaskCompleted", "TaskCancelled", "TaskFailed")
    done = await service.query(service.recorder.count(since=minute_ago, types=finished))
    first_at = await service.query(service.recorder.first_at())
    # the rate over the time the log actually covers: a server started 3 s ago that
    # finished 43 tasks did 14/s, not 43/60
    observed = 60.0 if first_at is None else (now - from_text(first_at)).total_seconds()
    window_s = round(min(60.0, max(observed, 1.0)), 3)
    workers = service.state.workers.values()
    return ORJSONResponse(
        {
            **{state: counts.get(state, 0) for state in STATES},
            "workers": {
                "alive": len(workers),
                "busy": sum(1 for w in workers if w.running),
                "slots": sum(w.slots for w in workers),
                "slots_used": sum(len(w.running) for w in workers),
            },
            "throughput": {
                "finished_last_minute": done,
                "window_s": window_s,
                "per_second": round(done / window_s, 3),
            },
            "last_seq": service.last_seq,
            **({} if group_id is None else {"group": _group_summary(service, group_id)}),
        }
    )


def _group_summary(service: Service, group_id: int) -> dict[str, Any]:
    group = service.state.groups[group_id]
    return {"name": group.label, "max_running": group.max_running, "running": group.running}


def _event_filters(request: Request) -> dict[str, Any]:
    params = request.query_params
    filters: dict[str, Any] = {
        "types": parse.query_list(params.getlist("type")),
        "worker_id": params.get("worker") or None,
    }
    if params.get("task"):
        filters["task_id"] = parse.task_id(params["task"])
    for name, key in (("since", "since"), ("until_time", "until")):
        if params.get(name):
            try:
                filters[key] = to_text(from_text(params[name]))
            except (ValueError, OverflowError):  # OverflowError: year 1 minus an offset
                raise InvalidInput(f"{name}: expected an ISO 8601 time") from None
    return filters


async def events(request: Request) -> Response:
    params = request.query_params
    after = parse.query_int(params, "after", 0, low=0, high=1 << 62)
    until = parse.query_int(params, "until", 0, low=0, high=1 << 62) or None
    limit = parse.query_int(
        params, "limit", defaults.DEFAULT_EVENTS_PAGE, low=1, high=defaults.MAX_PAGE
    )
    service = svc(request)
    found = await service.query(
        queries.list_events(
            service.recorder,
            after_seq=after,
            until_seq=until,
            limit=limit,
            **_event_filters(request),
        )
    )
    return ORJSONResponse({"events": found, "last_seq": service.last_seq})


def _matches(event: dict[str, Any], filters: dict[str, Any]) -> bool:
    if filters["types"] and event["type"] not in filters["types"]:
        return False
    if filters.get("task_id") is not None and event["task_id"] != filters["task_id"]:
        return False
    return filters["worker_id"] is None or event["worker_id"] == filters["worker_id"]


def _sse(event: dict[str, Any]) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event["seq"],
        event["type"].encode(),
        orjson.dumps(event),
    )


PAGE = 1000  # events per read of the log


def _stream_start(request: Request) -> int:
    """`after`, else a reconnecting client's Last-Event-ID; -1: live events only."""
    after = parse.query_int(request.query_params, "after", -1, low=-1, high=1 << 62)
    last_id = request.headers.get("last-event-id")
    if after < 0 and last_id:
        after = parse.query_int(
            {"Last-Event-ID": last_id}, "Last-Event-ID", -1, low=0, high=1 << 62
        )
    return after


async def event_stream(request: Request) -> Response:
    """Server-sent events: the log after `after` (or Last-Event-ID), then live events.

    A reader that falls behind catches up from the log by seq (service/subscriptions.py),
    so it misses nothing and the server keeps at most SUBSCRIBER_ROWS rows for it. The
    stream ends when the client leaves or the server stops.
    """
    service = svc(request)
    filters = _event_filters(request)
    after = _stream_start(request)

    async def stream() -> AsyncIterator[bytes]:
        with service.subscribers.subscribe() as live:
            sent = service.last_seq if after < 0 else after
            behind = after >= 0
            if not behind:
                yield b": live\n\n"
            while True:
                if behind or live.behind:  # read the log up to date, in pages
                    live.resume()
                    while True:
                        query = queries.list_events(
                            service.recorder, after_seq=sent, limit=PAGE, **filters
                        )
                        page = await service.query(query)
                        for event in page:
                            yield _sse(event)
                            sent = event["seq"]
                        if len(page) < PAGE:
                            break
                    if behind:
                        yield b": live\n\n"
                        behind = False
                rows = live.take()
                for row in rows:
                    if row.seq > sent:
                        event = queries.event_json(row)
                        if _matches(event, filters):
                            yield _sse(event)
                        sent = row.seq
                if not rows and not live.behind:
                    if live.ended:
                        yield b": the server is stopping\n\n"
                        return
                    if not await live.wait(defaults.STREAM_KEEP_ALIVE_S):
                        yield b": keep-alive\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def healthz(request: Request) -> Response:
    return ORJSONResponse({"ok": True})


async def metrics(request: Request) -> Response:
    service = svc(request)
    counts = await service.query(queries.counts())
    batches, records = service.writer_stats()
    workers = service.state.workers.values()
    lines = [
        "# HELP kickoff_tasks Tasks by state.",
        "# TYPE kickoff_tasks gauge",
        *(f'kickoff_tasks{{state="{s}"}} {counts.get(s, 0)}' for s in STATES),
        "# HELP kickoff_workers Live workers.",
        "# TYPE kickoff_workers gauge",
        f"kickoff_workers {len(workers)}",
        "# HELP kickoff_worker_slots Slots of live workers, and those in use.",
        "# TYPE kickoff_worker_slots gauge",
        f'kickoff_worker_slots{{use="total"}} {sum(w.slots for w in workers)}',
        f'kickoff_worker_slots{{use="busy"}} {sum(len(w.running) for w in workers)}',
        "# HELP kickoff_log_seq The last event seq.",
        "# TYPE kickoff_log_seq counter",
        f"kickoff_log_seq {service.last_seq}",
        "# HELP kickoff_commits_total Group commits written.",
        "# TYPE kickoff_commits_total counter",
        f"kickoff_commits_total {batches}",
        "# HELP kickoff_events_written_total Events written by this process.",
        "# TYPE kickoff_events_written_total counter",
        f"kickoff_events_written_total {records}",
        "# HELP kickoff_event_streams Open event streams (GET /v1/events/stream).",
        "# TYPE kickoff_event_streams gauge",
        f"kickoff_event_streams {len(service.subscribers)}",
        "# HELP kickoff_output_bytes Task output kept beside the database (all tasks).",
        "# TYPE kickoff_output_bytes gauge",
        f"kickoff_output_bytes {service.output.kept}",
        "# HELP kickoff_replay_seconds Time start-up took to load the state.",
        "# TYPE kickoff_replay_seconds gauge",
        f"kickoff_replay_seconds {service.start_up.seconds:.6f}",
    ]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


STANDBY_READS: list[Route] = []
"""The routes marked `read(...)` in ROUTES: a standby answers them from its warm state and
the shared projections (kickoff/leader.py); every other request it refuses (not_leader).
Not the task output (kept per server, beside its database, not shared) nor the event
stream (fed by this server's own commits)."""


def read(route: Route) -> Route:
    """Mark a route of ROUTES a read a standby answers."""
    STANDBY_READS.append(route)
    return route


def is_standby_read(scope: dict[str, Any]) -> bool:
    """Whether a request is one of STANDBY_READS."""
    return any(route.matches(scope)[0] is Match.FULL for route in STANDBY_READS)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    read(Route("/metrics", metrics, methods=["GET"])),
    Route("/v1/tasks", submit, methods=["POST"]),
    read(Route("/v1/tasks", list_tasks, methods=["GET"])),
    Route("/v1/tasks/cancel", cancel_tasks, methods=["POST"]),
    read(Route("/v1/tasks/{task_id}", get_task, methods=["GET"])),
    read(Route("/v1/tasks/{task_id}/events", task_events, methods=["GET"])),
    read(Route("/v1/tasks/{task_id}/why", task_why, methods=["GET"])),
    Route("/v1/tasks/{task_id}/cancel", cancel_task, methods=["POST"]),
    Route("/v1/tasks/{task_id}/complete", complete, methods=["POST"]),
    Route("/v1/tasks/{task_id}/output", output.post_output, methods=["POST"]),
    Route("/v1/tasks/{task_id}/output", output.get_output, methods=["GET"]),
    Route("/v1/workers", register, methods=["POST"]),
    read(Route("/v1/workers", list_workers, methods=["GET"])),
    read(Route("/v1/workers/{worker}", get_worker, methods=["GET"])),
    Route("/v1/workers/{worker}", deregister, methods=["DELETE"]),
    Route("/v1/workers/{worker}/claim", claim, methods=["POST"]),
    Route("/v1/workers/{worker}/heartbeat", heartbeat, methods=["POST"]),
    Route("/v1/workers/{worker}/tags", change_tags, methods=["POST"]),
    read(Route("/v1/groups/{group}", get_group, methods=["GET"])),
    Route("/v1/groups/{group}/cancel", cancel_group, methods=["POST"]),
    read(Route("/v1/stats", stats, methods=["GET"])),
    read(Route("/v1/events", events, methods=["GET"])),
    Route("/v1/events/stream", event_stream, methods=["GET"]),
]
HOT = frozenset({complete, output.post_output, claim, heartbeat})
"""The handlers of the requests every task costs: api/app.py's HotRoutes serves their
routes of ROUTES directly."""
