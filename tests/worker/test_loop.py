"""The worker loop against a scripted server (an httpx MockTransport): outbox retries,
hostile answers, lost registrations, cancels, Ctrl-C. Real processes run the tasks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from kickoff.client import AsyncClient
from kickoff.errors import KickoffError
from kickoff.worker.worker import Worker, WorkerConfig


def error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": f"{code} (test)"}})


@dataclass
class FakeServer:
    """Just enough of the API; tests replace `on_*` hooks to misbehave."""

    tasks: list[Any] = field(default_factory=list)
    completions: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    heartbeats: list[tuple[str, list[list[int]]]] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    deregistered: list[str] = field(default_factory=list)
    tag_sets: list[list[str]] = field(default_factory=list)
    claims: int = 0
    assigned: list[dict[str, Any]] = field(default_factory=list)  # GET /v1/tasks answers this
    listed: list[dict[str, str]] = field(default_factory=list)
    combined_claims: int = 0
    cancel: set[int] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    down: bool = False
    interval_s: float = 0.05
    timeout_s: float = 30.0
    on_complete: Callable[[int, dict[str, Any]], httpx.Response | None] | None = None
    new_task: asyncio.Event = field(default_factory=asyncio.Event)
    outputs: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    output_cap: int = 1 << 30

    def add(self, *tasks: Any) -> None:
        self.tasks.extend(tasks)
        self.new_task.set()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:  # nothing listens: the connection is refused
            raise httpx.ConnectError("down", request=request) from ConnectionRefusedError()
        parts = request.url.path.strip("/").split("/")[1:]
        if parts[0] == "tasks" and parts[2:] == ["output"]:  # the bytes themselves, not JSON
            self.outputs.append((int(parts[1]), dict(request.url.params), request.content))
            total = int(request.url.params["offset"]) + len(request.content)
            size = min(total, self.output_cap)
            capped = size >= self.output_cap
            return httpx.Response(200, json={"size": size, "total": total, "capped": capped})
        body = json.loads(request.content) if request.content else {}
        if parts == ["workers"] and request.method == "POST":
            self.registrations.append(body)
            worker_id = f"w{len(self.registrations)}"
            return httpx.Response(
                201,
                json={
                    "worker_id": worker_id,
                    "heartbeat_interval_s": self.interval_s,
                    "heartbeat_timeout_s": self.timeout_s,
                    "server_id": "5e1f0000cafe0001",
                },
            )
        if parts[0] == "workers" and parts[1] in self.lost:
            return error(409, "illegal_transition")
        if parts[0] == "workers" and request.method == "DELETE":
            self.deregistered.append(parts[1])
            return httpx.Response(200, json={"ok": True})
        if parts[0] == "workers" and parts[2] == "claim":
            return await self.claim(body)
        if parts[0] == "workers" and parts[2] == "heartbeat":
            self.heartbeats.append((parts[1], body["running"]))
            ids = {t for t, _ in body["running"]}
            return httpx.Response(200, json={"cancel": sorted(ids & self.cancel)})
        if parts[0] == "workers" and parts[2] == "tags":
            self.tag_sets.append(body["set"])
            return httpx.Response(200, json={"worker_id": parts[1], "tags": body["set"]})
        if parts == ["tasks"] and request.method == "GET":
            self.listed.append(dict(request.url.params))
            return httpx.Response(200, json={"tasks": self.assigned})
        if parts[0] == "tasks" and parts[2] == "complete":
            then_claim = body.pop("claim", None)
            if self.on_complete is not None:
                answer = self.on_complete(int(parts[1]), body)
                if answer is not None:
                    return answer
            self.completions.append((int(parts[1]), body))
            if then_claim is None:
                return httpx.Response(200, json={"ok": True})
            self.combined_claims += 1
            claimed = await self.claim(then_claim)
            return httpx.Response(200, json={"ok": True, **json.loads(claimed.content)})
        return error(404, "not_found")

    async def claim(self, body: dict[str, Any]) -> httpx.Response:
        self.claims += 1
        if not self.tasks and body["wait_s"] > 0:
            self.new_task.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.new_task.wait(), body["wait_s"])
        handed, self.tasks = self.tasks[: body["max_tasks"]], self.tasks[body["max_tasks"] :]
        return httpx.Response(200, json={"tasks": handed})


def task(task_id: int, command: Any, **extra: Any) -> dict[str, Any]:
    return {"task_id": task_id, "attempt": 1, "command": command, "timeout_s": None, **extra}


def make_worker(fake: FakeServer, tmp_path: Path, **config: Any) -> Worker:
    client = AsyncClient("127.0.0.1:9", token="test-token")
    client.http = httpx.AsyncClient(
        transport=httpx.MockTransport(fake.handle), base_url="http://127.0.0.1:9"
    )
    settings: dict[str, Any] = {"name": "test", "log_dir": tmp_path / "logs", "grace_s": 2.0}
    settings.update(config)
    return Worker(client, WorkerConfig(**settings))


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {predicate}: last={last!r}")


def drive(
    fake: FakeServer,
    tmp_path: Path,
    scenario: Callable[[Worker], Awaitable[None]] | None = None,
    **config: Any,
) -> int:
    """Run a worker and, beside it, the scenario; returns the worker's exit code."""

    async def main() -> int:
        worker = make_worker(fake, tmp_path, **config)
        run = asyncio.ensure_future(worker.run())
        try:
            if scenario is not None:
                await scenario(worker)
            return await asyncio.wait_for(run, 20)
        finally:
            if not run.done():
                run.cancel()
            await worker.client.aclose()

    return asyncio.run(main())


def test_burst_runs_everything_reports_and_deregisters(tmp_path: Path) -> None:
    fake = FakeServer()
    fake.add(task(1, "echo one"), task(2, "exit 4"))
    assert drive(fake, tmp_path, burst=True) == 0
    assert [(t, c["exit_code"], c["output_tail"]) for t, c in fake.completions] == [
        (1, 0, "one\n"),
        (2, 4, ""),
    ]
    assert fake.completions[0][1]["worker_id"] == "w1"
    assert fake.deregistered == ["w1"]
    logs = tmp_path / "logs" / "5e1f0000cafe0001"  # a directory per server
    assert sorted(p.name for p in logs.iterdir()) == ["task-1-1.log", "task-2-1.log"]
    assert (logs / "task-1-1.log").read_text() == "one\n"


def test_hostile_claim_answers_run_nothing_but_the_command_string(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    good = tmp_path / "good"
    fake = FakeServer()
    fake.add(
        task(1, ["touch", str(marker)]),
        task(2, f"touch {good}", timeout_s="soon"),
        {"task_id": "3", "attempt": 1, "command": f"touch {marker}"},
        "touch " + str(marker),
        None,
        task(4, f"touch {good}"),
        task(4, f"touch {marker}"),  # the same task twice in one answer
    )
    assert drive(fake, tmp_path, burst=True, slots=8) == 0
    assert not marker.exists()
    assert good.exists()
    codes = {t: c["exit_code"] for t, c in fake.completions}
    assert codes == {1: 126, 2: 126, 4: 0}
    assert "not a string" in dict(fake.completions)[1]["output_tail"]


def test_a_claim_answer_that_is_not_json_object_does_not_crash(tmp_path: Path) -> None:
    fake = FakeServer()

    async def garbage(body: dict[str, Any]) -> httpx.Response:
        fake.claims += 1
        return httpx.Response(200, json=["not", "an", "object"])

    fake.claim = garbage  # type: ignore[method-assign]
    assert drive(fake, tmp_path, burst=True) == 0
    assert fake.claims == 1 and fake.completions == []


def test_completions_wait_out_a_server_outage(tmp_path: Path) -> None:
    fake = FakeServer()
    attempts: list[int] = []

    def flaky(task_id: int, body: dict[str, Any]) -> httpx.Response | None:
        attempts.append(task_id)
        return error(503, "unavailable") if len(attempts) <= 3 else None

    fake.on_complete = flaky
    fake.add(task(1, "echo ran >> ran.txt"))
    assert drive(fake, tmp_path, burst=True) == 0
    assert len(attempts) == 4
    assert [t for t, _ in fake.completions] == [1]
    assert (tmp_path / "ran.txt").read_text() == "ran\n"  # ran once, in the test's cwd


def test_server_down_then_up_delivers_the_report(tmp_path: Path) -> None:
    fake = FakeServer()
    ran = tmp_path / "ran"

    async def scenario(worker: Worker) -> None:
        fake.add(task(1, f"echo x >> {ran}; sleep 0.3"))
        await wait_for(lambda: worker.jobs)
        fake.down = True
        await wait_for(lambda: not worker.jobs)  # finished while the server is down
        await asyncio.sleep(0.3)
        assert fake.completions == []
        fake.down = False
        await wait_for(lambda: fake.completions)
        worker.interrupt()

    assert drive(fake, tmp_path, scenario) == 0
    assert [t for t, _ in fake.completions] == [1]
    assert ran.read_text() == "x\n"


def test_a_stale_report_is_dropped(tmp_path: Path) -> None:
    fake = FakeServer()
    refused: list[int] = []

    def stale(task_id: int, body: dict[str, Any]) -> httpx.Response:
        refused.append(task_id)
        return error(409, "stale_attempt")

    fake.on_complete = stale
    fake.add(task(1, "true"), task(2, "true"))
    assert drive(fake, tmp_path, burst=True) == 0
    assert refused == [1, 2]


def test_heartbeat_cancel_kills_the_task_and_reports_cancelled(tmp_path: Path) -> None:
    fake = FakeServer()

    async def scenario(worker: Worker) -> None:
        fake.add(task(5, "sleep 600"))
        await wait_for(lambda: any(r for _, r in fake.heartbeats if r == [[5, 1]]))
        fake.cancel.add(5)
        await wait_for(lambda: fake.completions)
        worker.interrupt()

    assert drive(fake, tmp_path, scenario) == 0
    [(task_id, body)] = fake.completions
    assert task_id == 5 and body["cancelled"] is True and body["exit_code"] == 143


def test_a_lost_worker_kills_its_tasks_and_registers_again(tmp_path: Path) -> None:
    fake = FakeServer()

    async def scenario(worker: Worker) -> None:
        fake.add(task(1, "sleep 600"))
        await wait_for(lambda: worker.jobs)
        old = worker.jobs[1]
        fake.lost.add("w1")
        await wait_for(lambda: len(fake.registrations) == 2)
        await wait_for(lambda: not worker.jobs)
        assert old.abandoned and old.process is not None
        fake.add(task(2, "echo again"))
        await wait_for(lambda: fake.completions)
        worker.interrupt()

    assert drive(fake, tmp_path, scenario) == 0
    assert [(t, c["worker_id"]) for t, c in fake.completions] == [(2, "w2")]
    assert fake.deregistered == ["w2"]


def test_interrupt_once_lets_tasks_finish(tmp_path: Path) -> None:
    fake = FakeServer()

    async def scenario(worker: Worker) -> None:
        fake.add(task(1, "sleep 0.3; echo done"))
        await wait_for(lambda: worker.jobs)
        worker.interrupt()
        fake.add(task(2, "echo never"))

    assert drive(fake, tmp_path, scenario) == 0
    assert [(t, c["output_tail"], c["cancelled"]) for t, c in fake.completions] == [
        (1, "done\n", False)
    ]
    assert fake.deregistered == ["w1"]


def test_interrupt_twice_kills_tasks_and_reports_them_cancelled(tmp_path: Path) -> None:
    fake = FakeServer()

    async def scenario(worker: Worker) -> None:
        fake.add(task(1, "sleep 600"), task(2, "sleep 600"))
        await wait_for(lambda: len(worker.jobs) == 2)
        worker.interrupt()
        worker.interrupt()

    assert drive(fake, tmp_path, scenario, slots=2) == 130
    assert sorted((t, c["cancelled"]) for t, c in fake.completions) == [(1, True), (2, True)]
    assert fake.deregistered == ["w1"]


def test_interrupt_while_the_server_is_unreachable_still_exits(tmp_path: Path) -> None:
    fake = FakeServer()

    async def scenario(worker: Worker) -> None:
        fake.add(task(1, "sleep 600"))
        await wait_for(lambda: worker.jobs)
        fake.down = True
        worker.interrupt()
        worker.interrupt()
        worker.interrupt()  # the third one stops waiting for the server

    assert drive(fake, tmp_path, scenario) == 130
    assert fake.completions == []


def test_idle_worker_claims_a_new_task_at_once(tmp_path: Path) -> None:
    fake = FakeServer()

    async def scenario(worker: Worker) -> None:
        await wait_for(lambda: fake.claims == 1)
        await asyncio.sleep(0.2)  # sits in one long-poll, no polling
        assert fake.claims == 1
        fake.add(task(1, "true"))
        await wait_for(lambda: fake.completions, timeout=2)
        worker.interrupt()

    assert drive(fake, tmp_path, scenario) == 0


def test_tags_file_changes_are_sent(tmp_path: Path) -> None:
    fake = FakeServer()
    tags_file = tmp_path / "tags"
    tags_file.write_text("gpu\n")

    async def scenario(worker: Worker) -> None:
        await wait_for(lambda: fake.registrations)
        tags_file.write_text("gpu big-mem\n")
        stat = tags_file.stat()
        os.utime(tags_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        await wait_for(lambda: fake.tag_sets)
        worker.interrupt()

    assert drive(fake, tmp_path, scenario, tags=frozenset({"cpu"}), tags_file=tags_file) == 0
    assert fake.registrations[0]["tags"] == ["cpu", "gpu"]
    assert fake.tag_sets == [["big-mem", "cpu", "gpu"]]


def test_heartbeats_list_every_running_task_in_one_request(tmp_path: Path) -> None:
    fake = FakeServer()

    async def scenario(worker: Worker) -> None:
        fake.add(task(1, "sleep 600"), task(2, "sleep 600"), task(3, "sleep 600"))
        await wait_for(lambda: any(len(r) == 3 for _, r in fake.heartbeats))
        worker.interrupt()
        worker.interrupt()

    assert drive(fake, tmp_path, scenario, slots=3) == 130
    assert sorted(next(r for _, r in fake.heartbeats if len(r) == 3)) == [[1, 1], [2, 1], [3, 1]]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_handlers_call_interrupt(tmp_path: Path, sig: int) -> None:
    fake = FakeServer()

    async def scenario(worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(sig, worker.interrupt)
        try:
            await wait_for(lambda: fake.claims)
            os.kill(os.getpid(), sig)
            await wait_for(lambda: fake.deregistered)
        finally:
            loop.remove_signal_handler(sig)

    assert drive(fake, tmp_path, scenario) == 0


def test_a_busy_worker_claims_with_each_report(tmp_path: Path) -> None:
    fake = FakeServer()
    fake.add(*(task(i, "true") for i in range(1, 6)))
    assert drive(fake, tmp_path, burst=True) == 0
    assert [t for t, _ in fake.completions] == [1, 2, 3, 4, 5]
    # one claim request, then every next task came with a report
    assert fake.claims - fake.combined_claims == 2
    assert fake.combined_claims == 5


def test_a_claim_answer_lost_on_the_way_is_found_and_run(tmp_path: Path) -> None:
    """The server claimed a task and died before answering: the worker looks it up."""
    fake = FakeServer()
    original_claim = fake.claim
    lost_once: list[Any] = []

    async def claim_then_drop(body: dict[str, Any]) -> httpx.Response:
        if fake.tasks and not lost_once:
            lost_once.append(fake.tasks.pop(0))
            raise httpx.ReadError("connection reset")
        return await original_claim(body)

    fake.claim = claim_then_drop  # type: ignore[method-assign]

    async def scenario(worker: Worker) -> None:
        fake.assigned = [
            {
                "id": 7,
                "attempt": 1,
                "command": "echo adopted",
                "timeout_s": None,
                "state": "running",
                "worker": "w1",
            },
        ]
        fake.add(task(7, "echo adopted"))
        await wait_for(lambda: fake.completions)
        worker.interrupt()

    assert drive(fake, tmp_path, scenario) == 0
    assert fake.listed and fake.listed[0]["worker"] == "w1"
    assert [(t, c["output_tail"]) for t, c in fake.completions] == [(7, "adopted\n")]


def running(task_id: int, command: str, worker: str = "w1") -> dict[str, Any]:
    """A task as `GET /v1/tasks` lists it, running on `worker`."""
    return {**task(task_id, command), "id": task_id, "state": "running", "worker": worker}


def test_a_registration_answer_without_a_usable_worker_id_is_a_kickoff_error(
    tmp_path: Path,
) -> None:
    fake = FakeServer()
    original = fake.handle

    async def bad_registration(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/workers":
            answer = {"worker_id": "../../etc; touch x", "heartbeat_timeout_s": 30}
            return httpx.Response(201, json=answer)
        return await original(request)

    fake.handle = bad_registration  # type: ignore[method-assign]
    with pytest.raises(KickoffError, match=r"registration.*not a valid worker id"):
        drive(fake, tmp_path)
    assert fake.claims == 0


def test_a_report_whose_answer_was_lost_is_not_sent_again_once_the_server_has_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server recorded the report (and claimed task 2 with it), then the connection
    dropped: the retry's 409 means delivered, and task 2 is found and run."""
    caplog.set_level(logging.INFO, logger="kickoff.worker")
    fake = FakeServer()
    calls: list[int] = []

    def record_then_drop(task_id: int, body: dict[str, Any]) -> httpx.Response | None:
        calls.append(task_id)
        if len(calls) == 1:
            fake.completions.append((task_id, body))
            fake.assigned = [running(2, "echo two")]
            fake.tasks.pop(0)  # claimed along with the report, in the answer that is lost
            raise httpx.ReadError("connection reset by peer")
        if task_id == 1:
            return error(409, "stale_attempt")  # "task 1 has already finished"
        return None

    fake.on_complete = record_then_drop

    async def scenario(worker: Worker) -> None:
        fake.add(task(1, "echo one"), task(2, "echo two"))
        await wait_for(lambda: len(fake.completions) == 2)
        worker.interrupt()

    assert drive(fake, tmp_path, scenario) == 0
    assert sorted(calls) == [1, 1, 2]  # one retry of task 1's report, then never again
    assert sorted((t, c["output_tail"]) for t, c in fake.completions) == [
        (1, "one\n"),
        (2, "two\n"),
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "refused" in m], messages
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], messages
    assert any("already has the report of task=1" in r.getMessage() for r in caplog.records)


def test_a_claim_error_saying_the_worker_is_lost_registers_again(tmp_path: Path) -> None:
    """The report counted, but the claim made with it failed: the worker was lost."""
    fake = FakeServer()

    def lost_while_reporting(task_id: int, body: dict[str, Any]) -> httpx.Response | None:
        if task_id != 1:
            return None
        fake.completions.append((task_id, body))
        claim_error = {"code": "illegal_transition", "message": "worker w1 was lost"}
        return httpx.Response(200, json={"ok": True, "tasks": [], "claim_error": claim_error})

    fake.on_complete = lost_while_reporting

    async def scenario(worker: Worker) -> None:
        fake.add(task(1, "true"))
        await wait_for(lambda: len(fake.registrations) == 2)
        fake.add(task(2, "echo again"))
        await wait_for(lambda: len(fake.completions) == 2)
        worker.interrupt()

    assert drive(fake, tmp_path, scenario) == 0
    assert [(t, c["worker_id"]) for t, c in fake.completions] == [(1, "w1"), (2, "w2")]
    assert fake.deregistered == ["w2"]


def test_any_other_claim_error_is_an_empty_claim(tmp_path: Path) -> None:
    fake = FakeServer()

    def claim_failed(task_id: int, body: dict[str, Any]) -> httpx.Response | None:
        fake.completions.append((task_id, body))
        claim_error = {"code": "unavailable", "message": "try again"}
        return httpx.Response(200, json={"ok": True, "tasks": [], "claim_error": claim_error})

    fake.on_complete = claim_failed
    fake.add(task(1, "true"), task(2, "true"))
    assert drive(fake, tmp_path, burst=True) == 0
    assert [t for t, _ in fake.completions] == [1, 2]  # task 2 came by the next claim
    assert len(fake.registrations) == 1


def test_tasks_run_without_the_worker_s_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KICKOFF_TOKEN", "the-worker-s-secret")
    monkeypatch.setenv("KICKOFF_TEST_KEEP", "kept")
    fake = FakeServer()
    fake.add(task(1, 'echo "${KICKOFF_TOKEN-unset} $KICKOFF_TEST_KEEP $KICKOFF_TASK_ID"'))
    assert drive(fake, tmp_path, burst=True) == 0
    assert fake.completions[0][1]["output_tail"] == "unset kept 1\n"


def test_an_array_task_gets_its_index(tmp_path: Path) -> None:
    fake = FakeServer()
    fake.add(
        task(1, 'echo "${KICKOFF_ARRAY_INDEX-unset}"', array_index=7),
        task(2, 'echo "${KICKOFF_ARRAY_INDEX-unset}"'),
    )
    assert drive(fake, tmp_path, burst=True) == 0
    assert [c["output_tail"] for _, c in fake.completions] == ["7\n", "unset\n"]


def test_tasks_inherit_no_descriptor_of_the_worker(tmp_path: Path) -> None:
    """Not its connections, not its stock of unnamed log files: only stdin/out/err."""
    fake = FakeServer()
    fake.add(*(task(i, "ls /proc/$$/fd") for i in range(1, 6)))
    assert drive(fake, tmp_path, burst=True) == 0
    assert [c["output_tail"] for _, c in fake.completions] == ["0\n1\n2\n"] * 5


def test_a_task_that_writes_nothing_sends_no_output(tmp_path: Path) -> None:
    fake = FakeServer()
    fake.add(task(1, "sleep 0.7"))  # past a few of the sender's looks
    assert drive(fake, tmp_path, burst=True) == 0
    assert fake.outputs == []
    assert "output" not in fake.completions[0][1]


def test_output_goes_out_while_the_task_runs_and_the_rest_rides_in_the_report(
    tmp_path: Path,
) -> None:
    fake = FakeServer()
    flag = tmp_path / "sent"
    fake.add(task(1, f"echo first; until [ -e {flag} ]; do sleep 0.02; done; echo last"))

    async def scenario(worker: Worker) -> None:
        await wait_for(lambda: fake.outputs)
        flag.touch()

    assert drive(fake, tmp_path, scenario, burst=True) == 0
    assert fake.outputs == [(1, {"attempt": "1", "offset": "0", "worker": "w1"}, b"first\n")]
    assert fake.completions[0][1]["output"] == {"offset": 6, "text": "last\n"}


def test_past_the_server_s_cap_only_the_size_is_said(tmp_path: Path) -> None:
    fake = FakeServer(output_cap=4)
    flag = tmp_path / "sent"
    script = f"echo 0123456789; until [ -e {flag} ]; do sleep 0.02; done; echo more"
    fake.add(task(1, script))

    async def scenario(worker: Worker) -> None:
        await wait_for(lambda: fake.outputs)
        await asyncio.sleep(0.6)  # the sender looks again: it sends no more
        flag.touch()

    assert drive(fake, tmp_path, scenario, burst=True) == 0
    assert [data for _, _, data in fake.outputs] == [b"0123456789\n"]
    assert fake.completions[0][1]["output"] == {"offset": 16, "text": ""}


def test_undecodable_output_left_at_the_end_is_sent_as_bytes_first(tmp_path: Path) -> None:
    fake = FakeServer()
    fake.add(task(1, r"printf 'caf\303\251 \377\n'"))
    assert drive(fake, tmp_path, burst=True) == 0
    assert [data for _, _, data in fake.outputs] == [b"caf\xc3\xa9 \xff\n"]
    assert "output" not in fake.completions[0][1]
