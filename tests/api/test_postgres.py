"""The app on a database of the session's throw-away PostgreSQL cluster: what lives on
this machine beside such a database (its tasks' output) goes to the data directory, made
if missing. (KICKOFF_TEST_POSTGRES=1 runs every API test on PostgreSQL.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from kickoff.api.app import create_app
from kickoff.service import Service
from kickoff.store.output import output_path
from tests.api.conftest import TOKEN


def test_a_task_s_output_is_kept_in_a_data_directory_made_for_it(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "nothing-here-yet"))
    service = Service(pg_url)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(service, token=TOKEN), headers=headers) as client:
        task_id = client.post("/v1/tasks", json={"command": "echo hi"}).json()["ids"][0]
        worker = client.post("/v1/workers", json={"name": "w", "tags": []}).json()["worker_id"]
        claimed = client.post(f"/v1/workers/{worker}/claim", json={"max_tasks": 1, "wait_s": 0})
        assert claimed.json()["tasks"][0]["task_id"] == task_id
        sent = client.post(
            f"/v1/tasks/{task_id}/output",
            params={"worker": worker, "attempt": 1, "offset": 0},
            content=b"hi\n",
        )
        assert sent.status_code == 200, sent.text
        assert client.get(f"/v1/tasks/{task_id}/output").content == b"hi\n"
    assert output_path(pg_url).parent == tmp_path / "nothing-here-yet" / "kickoff"
    assert output_path(pg_url).exists()
