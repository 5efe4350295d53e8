"""An in-process app on a temporary database, driven by starlette's TestClient."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from kickoff.api.app import create_app
from kickoff.service import Service

TOKEN = "test-token-not-secret"


class FakeClock:
    """An injected clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Api:
    client: TestClient
    service: Service
    clock: FakeClock
    db_path: Path

    def submit(self, **task: object) -> int:
        response = self.client.post("/v1/tasks", json=task)
        assert response.status_code == 201, response.text
        return int(response.json()["ids"][0])

    def register(self, *tags: str, slots: int = 1, name: str = "w") -> str:
        response = self.client.post(
            "/v1/workers", json={"name": name, "tags": list(tags), "slots": slots}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["worker_id"])

    def claim(self, worker_id: str, max_tasks: int = 1) -> list[dict[str, object]]:
        response = self.client.post(
            f"/v1/workers/{worker_id}/claim", json={"max_tasks": max_tasks, "wait_s": 0}
        )
        assert response.status_code == 200, response.text
        return list(response.json()["tasks"])


@pytest.fixture
def api(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Api]:
    """The app on a file; with KICKOFF_TEST_POSTGRES=1, on a database of the session's
    throw-away PostgreSQL cluster instead (every API test on PostgreSQL, on demand)."""
    clock = FakeClock()
    db_path: Any = tmp_path / "api.db"
    if os.environ.get("KICKOFF_TEST_POSTGRES"):
        db_path = request.getfixturevalue("pg_url")
    service = Service(db_path, clock=clock, heartbeat_timeout_s=30, expire_every_s=0.02)
    app = create_app(service, token=TOKEN)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield Api(client, service, clock, db_path)
