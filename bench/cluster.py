"""The cluster-scale figure of SPEC §15: one real `kickoff server`, many simulated workers.

Each simulated worker is what a remote `kickoff worker` is on the wire, without its
processes: it registers, long-polls a claim, reports each task done the moment it gets it
(a completion that claims the next task in the same round trip, as the real worker does),
and heartbeats on its own connection at the interval the server asked for. The figure is
the rate at which the server dispatches (claim + durable completion) and the server's CPU
per dispatched task, read from /proc. The load generator runs in this process with raw
HTTP/1.1 bytes (bench/_load.py): httpx would cost more CPU than the server under test.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench._load import Connection, request_bytes
from bench.http import HOST, Server, cpu_seconds, last_completion, server_in

WAIT_S = 30  # long-poll length a simulated worker asks for


@dataclass(frozen=True)
class Dispatched:
    """Tasks dispatched per second, and the CPU per task (ms) of the server and of the
    simulated workers (this process: when it is near 1 ms per ms, the load generator is the
    limit, not the server)."""

    rate: float
    server_ms: float
    client_ms: float


class Tally:
    """Tasks claimed across all simulated workers."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.claimed = 0


class SimulatedWorker:
    """One worker's protocol, one task at a time, no process run."""

    def __init__(self, server: Server, tags: list[str]) -> None:
        self.server = server
        self.tags = tags
        self.host = f"{HOST}:{server.port}"
        self.worker_id = ""
        self.interval_s = 5.0
        self.running: list[int] = []  # [task_id, attempt] of the task in hand, if any

    def _request(self, path: str, body: object) -> bytes:
        return request_bytes("POST", path, orjson.dumps(body), self.server.token, self.host)

    async def register(self, name: str) -> None:
        conn = await Connection(HOST, self.server.port).open()
        body = {"name": name, "tags": self.tags, "slots": 1}
        status, answer = await conn.send(self._request("/v1/workers", body))
        conn.close()
        if status != 201:
            raise RuntimeError(f"register: HTTP {status} {answer[:200]!r}")
        reply = orjson.loads(answer)
        self.worker_id, self.interval_s = reply["worker_id"], reply["heartbeat_interval_s"]

    async def work(self, tally: Tally) -> None:
        """Claim and complete until the tally has dispatched every task."""
        conn = await Connection(HOST, self.server.port).open()
        claim = {"max_tasks": 1, "wait_s": WAIT_S}
        claim_raw = self._request(f"/v1/workers/{self.worker_id}/claim", claim)
        raw = claim_raw
        try:
            while True:
                status, answer = await conn.send(raw)
                if status >= 300:
                    raise RuntimeError(f"claim/complete: HTTP {status} {answer[:200]!r}")
                self.running = []
                tasks = orjson.loads(answer).get("tasks", [])
                if not tasks:
                    if tally.claimed >= tally.total:
                        return
                    raw = claim_raw
                    continue
                task = tasks[0]
                self.running = [task["task_id"], task["attempt"]]
                tally.claimed += 1
                report: dict[str, object] = {
                    "worker_id": self.worker_id,
                    "attempt": task["attempt"],
                    "exit_code": 0,
                    "duration_s": 0.0,
                    "output_tail": "",
                }
                if tally.claimed < tally.total:
                    report["claim"] = claim
                raw = self._request(f"/v1/tasks/{task['task_id']}/complete", report)
        finally:
            conn.close()

    async def heartbeat(self, stop: asyncio.Event) -> None:
        conn = await Connection(HOST, self.server.port).open()
        path = f"/v1/workers/{self.worker_id}/heartbeat"
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                running = [self.running] if self.running else []
                status, _ = await conn.send(self._request(path, {"running": running}))
                if status >= 300:
                    raise RuntimeError(f"heartbeat: HTTP {status}") from None
        conn.close()


async def _until_succeeded(server: Server, tasks: int) -> None:
    """Poll the server's counts (every 50 ms: faster would cost the server CPU). A
    completion is durable before its answer, but a completion that also claims is answered
    only once the claim has a task or its long-poll ends."""
    conn = await Connection(HOST, server.port).open()
    raw = request_bytes("GET", "/v1/stats", b"", server.token, f"{HOST}:{server.port}")
    try:
        while True:
            status, answer = await conn.send(raw)
            if status == 200 and orjson.loads(answer)["succeeded"] >= tasks:
                return
            await asyncio.sleep(0.05)
    finally:
        conn.close()


async def _run(server: Server, workers: int, tasks: int) -> Dispatched:
    sims = [SimulatedWorker(server, ["cpu" if i % 2 else "gpu"]) for i in range(workers)]
    await asyncio.gather(*(sim.register(f"sim-{i}") for i, sim in enumerate(sims)))
    submitter = await Connection(HOST, server.port).open()
    for start in range(0, tasks, 10_000):
        n = min(10_000, tasks - start)
        batch = [{"command": "true", "require": ["cpu" if i % 2 else "gpu"]} for i in range(n)]
        body = orjson.dumps({"tasks": batch})
        status, _ = await submitter.send(
            request_bytes("POST", "/v1/tasks", body, server.token, f"{HOST}:{server.port}")
        )
        if status != 201:
            raise RuntimeError(f"submit: HTTP {status}")
    submitter.close()
    stop = asyncio.Event()
    beats = [asyncio.create_task(sim.heartbeat(stop)) for sim in sims]
    tally = Tally(tasks)
    cpu_before, client_before = cpu_seconds(server.proc.pid)[0], time.process_time()
    started = time.time()
    working = [asyncio.create_task(sim.work(tally)) for sim in sims]
    await _until_succeeded(server, tasks)
    cpu = cpu_seconds(server.proc.pid)[0] - cpu_before
    client = time.process_time() - client_before
    stop.set()
    for work in working:  # the rest are parked in a long-poll with nothing left to claim
        work.cancel()
    await asyncio.gather(*beats, *working, return_exceptions=True)
    for work in working:
        if not work.cancelled() and work.exception() is not None:
            raise RuntimeError("a simulated worker failed") from work.exception()
    with server.http() as http:
        finished = last_completion(http)
    return Dispatched(tasks / (finished - started), cpu * 1e3 / tasks, client * 1e3 / tasks)


def dispatch(workers: int = 100, tasks: int = 50_000) -> Dispatched:
    """Dispatch `tasks` tasks (half cpu, half gpu) to `workers` simulated workers."""
    with tempfile.TemporaryDirectory() as tmp, server_in(Path(tmp)) as server:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
            runner = asyncio.run
        return runner(_run(server, workers, tasks))
