"""A real `kickoff worker` against a fake, hostile server: answers with wrong types, huge
fields, unknown ids, commands that are lists, extra fields naming other programs, broken
HTTP. The worker must stay up, run nothing but a task's own command string (with
`/bin/sh -c`), refuse the rest with a report where it can, and stop cleanly.

Every hostile command would create a file named PWNED-*; the test looks for any.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import kickoff_cmd, wait_until

WORKER_ID = "w1"
Answer = bytes | dict[str, Any] | list[Any] | str | Callable[["Handler"], None]


def task(task_id: Any, command: Any, attempt: Any = 1, **extra: Any) -> dict[str, Any]:
    return {"task_id": task_id, "attempt": attempt, "command": command, **extra}


def claims(work: Path) -> list[Answer]:
    """What the fake server answers to successive claims, in order."""
    return [
        {"tasks": [task(1, ["touch", "PWNED-list"])]},
        {"tasks": [task(2, 42)]},
        {"tasks": [task(3, None)]},
        {"tasks": [task(4, {"sh": "touch PWNED-dict"})]},
        {"tasks": [task(5, "touch PWNED-big # " + "x" * 70_000)]},
        {"tasks": [task(6, "touch PWNED-nul\u0000; true")]},
        {  # no usable id or attempt: cannot even be reported; certainly not run
            "tasks": [
                task("7; touch PWNED-id", "touch PWNED-id1"),
                task(7.5, "touch PWNED-id2"),
                task(True, "touch PWNED-id3"),
                task(-1, "touch PWNED-id4"),
                task(1 << 60, "touch PWNED-id5"),
                task(8, "touch PWNED-attempt", attempt="1"),
                task(8, "touch PWNED-attempt0", attempt=0),
                "touch PWNED-str",
            ]
        },
        {  # fields the API does not have: none of them may matter
            "tasks": [
                task(
                    10,
                    "touch ok-10",
                    shell="/bin/bash",
                    argv=["touch", "PWNED-argv"],
                    preexec="touch PWNED-preexec",
                )
            ]
        },
        # cwd and env are the task's own (issue 14), but only in their one shape
        {"tasks": [task(17, "touch PWNED-env", env={"PATH": 5})]},
        {"tasks": [task(18, "touch PWNED-env2", env={"A=B; touch PWNED-n": "x"})]},
        {"tasks": [task(19, "touch PWNED-env3", env=["LD_PRELOAD=/x.so"])]},
        {"tasks": [task(20, "touch PWNED-cwd", cwd="relative/dir")]},
        {"tasks": [task(11, "touch PWNED-timeout", timeout_s="1; touch PWNED-t")]},
        {"tasks": "touch PWNED-tasks"},
        "touch PWNED-raw",  # not JSON
        [task(12, "touch PWNED-array")],
        lambda h: h.raw(b"HTTP/1.1 200 OK\r\ncontent-length: 999999999999\r\n\r\n{}"),
        lambda h: h.raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
        lambda h: h.raw(b"SMTP ready\r\n\r\n"),
        lambda h: h.send_json({"error": {"code": "internal", "message": "boom"}}, 500),
        lambda h: h.send_json({"error": {"code": "bogus", "message": "\x1b[2J"}}, 418),
        # more tasks than asked for, and one id twice: never more than asked, each id once
        {
            "tasks": [
                task(13, "touch ok-13"),
                task(13, "touch PWNED-dup"),
                *(task(n, f"touch PWNED-extra-{n}") for n in range(100, 140)),
            ]
        },
        {  # the task's own command runs, exactly, with sh -c: its shell syntax is its own
            "tasks": [
                task(
                    16,
                    'printf "%s %s %s" "$KICKOFF_TASK_ID" "$KICKOFF_ATTEMPT" "$KICKOFF_WORKER"'
                    " > ok-16; echo '$(touch PWNED-quoted)' > quoted-16",
                    attempt=2,
                )
            ]
        },
    ]


EXPECTED_REFUSED = {1, 2, 3, 4, 5, 6, 11, 17, 18, 19, 20}
EXPECTED_RUN = {10, 13, 16}


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the worker hangs up on answers it refuses (over size, say): expected here


@dataclass
class FakeServer:
    """The hostile side. Records every request; answers from scripts."""

    claims: list[Answer]
    reports: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    claims_served: int = 0
    heartbeats: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_claim(self) -> Answer | None:
        with self.lock:
            if self.claims_served >= len(self.claims):
                return None
            self.claims_served += 1
            return self.claims[self.claims_served - 1]


class Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer
    protocol_version = "HTTP/1.1"

    @property
    def fake(self) -> FakeServer:
        return self.server.fake  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def send_json(self, value: Any, status: int = 200) -> None:
        data = json.dumps(value).encode() if not isinstance(value, bytes) else value
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def raw(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        self.close_connection = True

    def answer(self, value: Answer) -> None:
        if callable(value):
            value(self)
        elif isinstance(value, str):
            self.send_json(value.encode())
        else:
            self.send_json(value)

    def do_POST(self) -> None:
        body = self.body()
        self.fake.requests.append(("POST", self.path))
        if self.path == "/v1/workers":
            self.send_json(
                {
                    "worker_id": WORKER_ID,
                    "heartbeat_interval_s": 0.1,
                    "heartbeat_timeout_s": 30,
                    "server_id": "5e1f0000cafe0001",
                }
            )
        elif self.path == f"/v1/workers/{WORKER_ID}/claim":
            claim = self.fake.next_claim()
            if claim is None:
                time.sleep(0.1)  # a long poll that found nothing
                self.send_json({"tasks": []})
            else:
                self.answer(claim)
        elif self.path == f"/v1/workers/{WORKER_ID}/heartbeat":
            self.fake.heartbeats += 1
            hostile = {
                "cancel": ["1; touch PWNED-hb", -1, 10**30, None, {"x": 1}, 1.5],
                "run": "touch PWNED-hb2",
            }
            self.send_json(hostile if self.fake.heartbeats % 2 else ["touch PWNED-hb3"])
        elif self.path.startswith("/v1/tasks/") and self.path.endswith("/complete"):
            task_id = int(self.path.split("/")[3])
            first = not self.fake.reports
            self.fake.reports[task_id] = body
            if not first:
                self.send_json({"ok": True, "tasks": []})
                return
            # a report's answer may claim too: a hostile one, the first time
            self.send_json(
                {
                    "ok": True,
                    "tasks": [
                        task(90, {"cmd": "touch PWNED-complete"}),
                        task("91", "touch PWNED-c2"),
                    ],
                }
            )
        else:
            self.send_json({"error": {"code": "not_found", "message": "no"}}, 404)

    def do_GET(self) -> None:
        self.fake.requests.append(("GET", self.path))
        if self.path.startswith("/v1/tasks"):  # reconcile: hostile too
            self.send_json(
                {
                    "tasks": [
                        {
                            "id": 20,
                            "attempt": 1,
                            "command": ["touch", "PWNED-rec"],
                            "worker": WORKER_ID,
                            "state": "running",
                        },
                        {
                            "id": "21",
                            "attempt": 1,
                            "command": "touch PWNED-rec2",
                            "worker": WORKER_ID,
                            "state": "running",
                        },
                        {
                            "id": 22,
                            "attempt": 1,
                            "command": "touch PWNED-other",
                            "worker": "w9",
                            "state": "running",
                        },
                    ]
                }
            )
        else:
            self.send_json({"error": {"code": "not_found", "message": "no"}}, 404)

    def do_DELETE(self) -> None:
        self.fake.requests.append(("DELETE", self.path))
        self.send_json({"ok": True})


@contextmanager
def serving(answers: list[Answer]) -> Iterator[tuple[FakeServer, int]]:
    """A fake server answering claims with `answers`, and its port."""
    fake = FakeServer(answers)
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    httpd.fake = fake  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[tuple[FakeServer, int]]:
    work = tmp_path / "work"
    work.mkdir()
    with serving(claims(work)) as served:
        yield served


def pwned(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("PWNED*"))


def test_a_hostile_server_cannot_make_the_worker_run_anything_else(
    fake_server: tuple[FakeServer, int], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    fake, port = fake_server
    work = tmp_path / "work"
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                *kickoff_cmd(),
                "worker",
                "--server",
                f"127.0.0.1:{port}",
                "--token",
                "t" * 43,
                "--slots",
                "2",
                "--log-dir",
                str(tmp_path / "logs"),
                "--name",
                "victim",
            ],
            cwd=work,
            env=isolated_env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:

        def done() -> bool:
            assert proc.poll() is None, f"the worker died:\n{log_path.read_text()}"
            return (
                fake.claims_served == len(fake.claims)
                and set(fake.reports) >= EXPECTED_RUN | EXPECTED_REFUSED
            )

        try:
            wait_until(done, timeout=60, what="every hostile answer and the reports")
        except AssertionError as exc:
            served = f"claims served {fake.claims_served}/{len(fake.claims)}"
            raise AssertionError(
                f"{exc}\n{served}; reports {sorted(fake.reports)}\n{log_path.read_text()[:8000]}"
            ) from None
        wait_until(lambda: fake.heartbeats >= 6, timeout=10, what="a few hostile heartbeats")
        assert proc.poll() is None, log_path.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=30)
    output = log_path.read_text()
    assert code == 0, output
    assert pwned(tmp_path) == [], output

    for task_id in EXPECTED_RUN:
        assert fake.reports[task_id]["exit_code"] == 0, fake.reports[task_id]
        assert fake.reports[task_id]["worker_id"] == WORKER_ID
    assert (work / "ok-10").exists() and (work / "ok-13").exists()
    assert (work / "ok-16").read_text() == f"16 2 {WORKER_ID}"
    assert (work / "quoted-16").read_text() == "$(touch PWNED-quoted)\n"
    for task_id in EXPECTED_REFUSED:
        report = fake.reports[task_id]
        assert report["exit_code"] != 0 and "refused" in report["output_tail"], report
    # what had no usable id, or was over the slots, or twice the same, was never reported
    assert not set(fake.reports) & {7, 8, 12, 21, 22, 91, *range(101, 140)}
    assert ("DELETE", f"/v1/workers/{WORKER_ID}") in fake.requests  # a clean stop


def test_a_hostile_registration_answer_stops_the_worker_cleanly(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    class Bad(Handler):
        def do_POST(self) -> None:
            self.body()
            self.send_json(
                {"worker_id": "../../etc/passwd; touch PWNED-reg", "heartbeat_interval_s": "x"}
            )

    httpd = QuietServer(("127.0.0.1", 0), Bad)
    httpd.fake = FakeServer([])  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        result = subprocess.run(
            [
                *kickoff_cmd(),
                "worker",
                "--server",
                f"127.0.0.1:{httpd.server_address[1]}",
                "--token",
                "t" * 43,
                "--log-dir",
                str(tmp_path / "logs"),
            ],
            cwd=tmp_path,
            env=isolated_env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "error: " in result.stderr and "worker id" in result.stderr, result.stderr
    assert pwned(tmp_path) == []


HOLD = "while [ ! -e release ]; do sleep 0.05; done; echo $CUDA_VISIBLE_DEVICES > ok-{}"
M = 1 << 20


def gpu_claims() -> list[Answer]:
    """Claims for a worker of gpu=2,mem=1G (devices 0 and 1): tasks 30 and 36 hold a device
    each until the test lets them end; every other claim is of what is not free there."""

    def asks(task_id: int, command: str, gpu_ids: list[Any], **amounts: int) -> dict[str, Any]:
        return task(task_id, command, resources=amounts, gpu_ids=gpu_ids)

    return [
        {
            "tasks": [
                asks(30, HOLD.format(30), [0], gpu=1, mem=512 * M),
                asks(31, "touch PWNED-held", [0], gpu=1),  # 30 holds device 0
            ]
        },
        {
            "tasks": [
                asks(36, HOLD.format(36), [1], gpu=1),
                asks(37, "touch PWNED-twice", [1], gpu=1),  # 36, of the same answer, holds 1
            ]
        },
        {"tasks": [asks(32, "touch PWNED-device", [5], gpu=1)]},  # no device 5 here
        {"tasks": [asks(33, "touch PWNED-gpus", [0, 1, 2], gpu=3)]},  # more than there are
        {"tasks": [asks(34, "touch PWNED-mem", [], mem=1024 * M)]},  # 512M of mem free
        {"tasks": [asks(35, "touch PWNED-disk", [], disk=1)]},  # no disk declared
    ]


def test_a_hostile_server_cannot_hand_out_devices_or_amounts_the_worker_has_not_free(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in isolated_env.items() if k != "CUDA_VISIBLE_DEVICES"}
    log_path = tmp_path / "worker.log"
    refused = {31, 32, 33, 34, 35, 37}
    with serving(gpu_claims()) as (fake, port), log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                *kickoff_cmd(),
                "worker",
                "--server",
                f"127.0.0.1:{port}",
                "--token",
                "t" * 43,
                "--slots",
                "4",
                "--resources",
                "gpu=2,mem=1G",
                "--log-dir",
                str(tmp_path / "logs"),
            ],
            cwd=work,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            wait_until(
                lambda: fake.claims_served == 6 and set(fake.reports) >= refused,
                timeout=60,
                what=f"the refusals of {sorted(refused)}",
            )
            assert not {30, 36} & set(fake.reports), log_path.read_text()  # still running
            (work / "release").touch()
            wait_until(lambda: {30, 36} <= set(fake.reports), timeout=30, what="30 and 36")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            code = proc.wait(timeout=30)
    output = log_path.read_text()
    assert code == 0, output
    assert pwned(tmp_path) == [], output
    assert (work / "ok-30").read_text() == "0\n" and (work / "ok-36").read_text() == "1\n"
    assert fake.reports[30]["exit_code"] == fake.reports[36]["exit_code"] == 0
    reasons = {t: fake.reports[t]["output_tail"] for t in refused}
    assert all("refused to run this task" in text for text in reasons.values()), reasons
    assert "device 0, which task 30 holds" in reasons[31]
    assert "gpu=1, and only 0 of this worker's gpu is free" in reasons[37]
    assert "device 5, not one of this worker's (0,1)" in reasons[32]
    assert "device 2, not one of this worker's (0,1)" in reasons[33]
    assert "mem=1G, and only 512M of this worker's mem is free" in reasons[34]
    assert "disk=1, over this worker's disk=0" in reasons[35]
