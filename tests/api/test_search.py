"""Task search by command text and tag (`GET /v1/tasks?q=...&tag=...`): bounded windows
that, followed cursor by cursor, find exactly what a full scan finds."""

from __future__ import annotations

import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from kickoff.projections import queries, search
from tests.api.conftest import Api

WORDS = ["alpha", "Beta", "50%", "a_b", "x\\y", "gamma"]
TAGS = ["cpu", "gpu", "a_b", "big-mem"]


def submit_mix(api: Api, n: int) -> list[dict[str, object]]:
    tasks = [
        {
            "command": f"run {WORDS[i % len(WORDS)]} {i}",
            "require": [TAGS[i % len(TAGS)]] if i % 3 else [],
            "want": [TAGS[(i + 1) % len(TAGS)]] if i % 5 == 0 else [],
        }
        for i in range(n)
    ]
    response = api.client.post("/v1/tasks", json={"tasks": tasks})
    assert response.status_code == 201
    return tasks


def follow(conn: sqlite3.Connection, found: search.Search) -> list[int]:
    """Every match, request after request from the cursor, as the dashboard pages."""
    ids: list[int] = []
    for _ in range(1000):
        far, scanned = queries.run(conn, search.window(found))
        rows = [] if far is None else queries.run(conn, search.matches(found, far))
        page = search.page(found, far, scanned, rows)
        assert len(page["tasks"]) <= found.limit
        ids.extend(t["id"] for t in page["tasks"])
        cursor = page["next_before"] if found.descending else page["next_after"]
        if cursor is None:
            return ids
        key = "before_id" if found.descending else "after_id"
        found = search.Search(**{**_fields(found), key: cursor})
    raise AssertionError("the search never ended")


def _fields(found: search.Search) -> dict[str, object]:
    return {name: getattr(found, name) for name in search.Search.__dataclass_fields__}


def brute(tasks: list[dict[str, object]], text: str | None, tag: str | None) -> list[int]:
    def hit(task: dict[str, object]) -> bool:
        command = str(task["command"])
        tags = list(task["require"]) + list(task["want"])  # type: ignore[call-overload]
        return (not text or text.lower() in command.lower()) and (not tag or tag in tags)

    return [i + 1 for i, task in enumerate(tasks) if hit(task)]


def test_windows_followed_to_the_end_find_exactly_the_matches(api: Api) -> None:
    tasks = submit_mix(api, 300)
    conn = sqlite3.connect(api.db_path)

    @given(
        text=st.sampled_from([None, "alpha", "beta", "50%", "%", "_", "a_b", "x\\y", "1", "zzz"]),
        tag=st.sampled_from([None, *TAGS, "nope"]),
        scan=st.integers(1, 120),
        limit=st.integers(1, 40),
        descending=st.booleans(),
    )
    def check(text: str | None, tag: str | None, scan: int, limit: int, descending: bool) -> None:
        if text is None and tag is None:
            return
        found = search.Search(text=text, tag=tag, scan=scan, limit=limit, descending=descending)
        expected = brute(tasks, text, tag)
        assert follow(conn, found) == (expected[::-1] if descending else expected)

    check()


def test_one_state_walks_that_states_index(api: Api) -> None:
    submit_mix(api, 50)
    for task_id in (3, 9, 27):
        api.client.post(f"/v1/tasks/{task_id}/cancel")
    conn = sqlite3.connect(api.db_path)
    found = search.Search(text="run", states=["cancelled"], scan=2, limit=10)
    assert follow(conn, found) == [3, 9, 27]
    plan = " ".join(
        str(row[-1])
        for row in conn.execute(
            "EXPLAIN QUERY PLAN " + search.window(found).sql, search.window(found).params
        )
    )
    assert "tasks_state" in plan, plan


def test_the_api_searches_and_says_how_far(api: Api) -> None:
    submit_mix(api, 40)
    answer = api.client.get("/v1/tasks", params={"q": "ALPHA", "state": "all"}).json()
    assert [t["id"] for t in answer["tasks"]] == [1, 7, 13, 19, 25, 31, 37]
    assert answer["searched_to"] is None and answer["next_after"] is None
    assert answer["counts"]["pending"] == 40
    tagged = api.client.get("/v1/tasks", params={"tag": "gpu", "order": "desc", "limit": 2})
    assert [t["id"] for t in tagged.json()["tasks"]] == [38, 30]
    assert tagged.json()["next_before"] == 30


def test_bad_search_input_is_a_clear_422(api: Api) -> None:
    for params, word in (
        ({"tag": "no spaces<>"}, "tag"),
        ({"tag": "a b"}, "tag"),
        ({"q": "x" * 201}, "q"),
    ):
        response = api.client.get("/v1/tasks", params=params)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["message"].startswith(word)


def test_a_request_stops_at_its_window(api: Api) -> None:
    """Each request reads at most `scan` tasks: one that finds nothing says where it
    stopped, and the next one goes on from there."""
    submit_mix(api, 50)
    conn = sqlite3.connect(api.db_path)
    found = search.Search(text="zzz", scan=10, limit=5)
    far, scanned = queries.run(conn, search.window(found))
    page = search.page(found, far, scanned, queries.run(conn, search.matches(found, far)))
    assert (page["tasks"], page["next_after"], page["searched_to"]) == ([], 10, 10)
    down = search.Search(text="zzz", scan=10, limit=5, descending=True, before_id=41)
    far, scanned = queries.run(conn, search.window(down))
    page = search.page(down, far, scanned, queries.run(conn, search.matches(down, far)))
    assert (page["next_before"], page["searched_to"]) == (31, 31)
