"""The dashboard's figures: its first page against a server with a big database, and a
drain with one dashboard open beside the same drain without.

`Dashboard` does what the page does (kickoff/dashboard/static/): log in with a one-time
code, ask for the session's CSRF token, open the event stream, then load the overview; while
open, it reads every event and refreshes as the page does (the task list at most once a
second, the workers every 2 s, the chart every 5 s, each only after events).
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import http

# The overview's first requests, in the page's order (after the session and the stream).
FIRST_PAGE = (
    "/v1/tasks?order=desc&limit=50",
    "/v1/workers",
    "/v1/tasks?state=running&state=cancelling&limit=1000&order=desc",
    "/dashboard/api/throughput?step=10&span=900",
)
STATIC = ("/", "/dashboard/static/app.js", "/dashboard/static/style.css")
REFRESH_S = {"list": 1.0, "workers": 2.0, "chart": 5.0}


class Dashboard:
    """A logged-in browser session, as httpx."""

    def __init__(self, server: http.Server) -> None:
        with server.http() as token_client:
            path = token_client.post("/dashboard/login-codes").json()["path"]
        self.http = httpx.Client(base_url=server.url, timeout=60)
        self.http.get(path).raise_for_status()
        csrf = self.http.get("/dashboard/session").json()["csrf"]
        self.http.headers["X-Kickoff-CSRF"] = csrf
        self.events = 0
        self._stop = threading.Event()

    def get(self, path: str) -> None:
        self.http.get(path).raise_for_status()

    def first_page(self) -> float:
        """Seconds until everything the first render needs has arrived."""
        started = time.perf_counter()
        for path in STATIC:
            self.get(path)
        self.get("/dashboard/session")
        with self.http.stream("GET", "/v1/events/stream") as stream:
            for line in stream.iter_lines():
                if line == ": live":
                    break
            with ThreadPoolExecutor(len(FIRST_PAGE)) as pool:  # the page asks at once
                list(pool.map(self.get, FIRST_PAGE))
        return time.perf_counter() - started

    def _read_stream(self) -> None:
        with self.http.stream("GET", "/v1/events/stream", timeout=None) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    self.events += 1
                if self._stop.is_set():
                    return

    def _refresh(self) -> None:
        last = dict.fromkeys(REFRESH_S, 0.0)
        seen = 0
        paths = {"list": FIRST_PAGE[:1], "workers": FIRST_PAGE[1:3], "chart": FIRST_PAGE[3:]}
        while not self._stop.wait(0.1):
            if self.events == seen:
                continue  # no event, no request: the page does not poll
            seen = self.events
            now = time.monotonic()
            for name, every in REFRESH_S.items():
                if now - last[name] >= every:
                    last[name] = now
                    for path in paths[name]:
                        self.get(path)

    @contextlib.contextmanager
    def open(self) -> Iterator[None]:
        threads = [
            threading.Thread(target=f, daemon=True) for f in (self._read_stream, self._refresh)
        ]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self.http.close()


@contextlib.contextmanager
def dashboard_open(server: http.Server) -> Iterator[None]:
    with Dashboard(server).open():
        yield


def first_page(db: Path, runs: int) -> list[float]:
    """The first page against a server on `db`, once per run (a fresh login each time)."""
    with tempfile.TemporaryDirectory() as tmp:
        server, _ = http.start_server(Path(tmp), db)
        try:
            return [Dashboard(server).first_page() for _ in range(runs)]
        finally:
            http.stop(server.proc)


def search_page(db: Path, text: str) -> float:
    """A text search as the page makes it: up to 10 bounded windows to fill a page."""
    with tempfile.TemporaryDirectory() as tmp:
        server, _ = http.start_server(Path(tmp), db)
        try:
            page = Dashboard(server)
            started = time.perf_counter()
            before = ""
            found = 0
            for _ in range(10):
                answer = page.http.get(
                    f"/v1/tasks?order=desc&limit={50 - found}&q={text}{before}"
                ).json()
                found += len(answer["tasks"])
                if not answer["next_before"] or found >= 50:
                    break
                before = f"&before={answer['next_before']}"
            return time.perf_counter() - started
        finally:
            http.stop(server.proc)


@dataclass
class DrainPair:
    alone: float
    watched: float


def drain_pair(tasks: int, runs: int) -> DrainPair:
    """Medians of drains without and with a dashboard open, interleaved run by run."""
    alone, watched = [], []
    for _ in range(runs):
        alone.append(http.drain(tasks).rate)
        watched.append(http.drain(tasks, watch=dashboard_open).rate)
    return DrainPair(statistics.median(alone), statistics.median(watched))
