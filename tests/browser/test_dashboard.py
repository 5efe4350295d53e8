"""The dashboard in a real chromium against a real server and real workers: login, counts,
live updates from the event stream, a task's output, cancel, escaping, no request that
leaves this machine, and the README's screenshot."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from selenium.webdriver.common.by import By

from tests.browser.conftest import Browser, host_of, login_link, screenshot_path
from tests.conftest import ServerProcess, WorkerProcess, wait_until

Kickoff = Callable[..., subprocess.CompletedProcess[str]]
StartWorker = Callable[..., WorkerProcess]
XSS = """<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">"""
# Console lines that are not errors of the page: a server without issue 14's output
# endpoint answers 404, and the page falls back.
EXPECTED_404 = ("/output?offset=",)


def submit(kickoff: Kickoff, *args: str) -> int:
    done = kickoff("new", *args)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def state_of(server: ServerProcess, task_id: int) -> str:
    with server.client() as client:
        return str(client.get(f"/v1/tasks/{task_id}")["state"])


def count_shown(browser: Browser, state: str) -> str:
    return browser.text_of(f'[data-testid="count-{state}"] .n')


def page_errors(browser: Browser) -> list[str]:
    return [e for e in browser.console_errors() if not any(x in e for x in EXPECTED_404)]


def test_login_by_a_one_time_link_into_an_httponly_session(
    browser: Browser, make_browser: Callable[[], Browser], server: ServerProcess
) -> None:
    browser.driver.get(server.url + "/")
    assert "kickoff dashboard" in browser.wait_for('[data-testid="login"]').text
    link = login_link(server)
    assert server.token not in link
    browser.driver.get(link)
    browser.wait_for('[data-testid="counts"] .count')
    assert "code=" not in browser.driver.current_url  # the code left the address bar
    assert browser.driver.execute_script("return document.cookie") == ""  # HttpOnly
    (cookie,) = browser.driver.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    other = make_browser()
    other.driver.get(link)  # the link worked once
    assert "does not work" in other.wait_for("h1").text
    other.driver.get(server.url + "/")
    other.wait_for('[data-testid="login"]')
    assert page_errors(browser) == []


def test_counts_and_the_task_list_follow_the_event_stream(
    browser: Browser, server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    first = submit(kickoff, "--require", "cpu", "--", "true")
    browser.login()
    wait_until(lambda: count_shown(browser, "pending") == "1", what="1 pending")
    wait_until(lambda: browser.text_of("#live") == "live", what="the event stream")
    seen = len(browser.collect_requests())
    # Nothing happens for a while (no worker, no submit), so nothing is asked: the page
    # refreshes on events, it does not poll. (A window in which nothing may happen.)
    time.sleep(2)
    assert len(browser.collect_requests()) == seen, browser.requests[seen:]
    second = submit(kickoff, "--require", "cpu", "--", "echo", "second")
    wait_until(lambda: count_shown(browser, "pending") == "2", what="2 pending, without reload")
    wait_until(
        lambda: browser.driver.find_elements(By.CSS_SELECTOR, f'tr[data-id="{second}"]'),
        what="the new task in the list",
    )
    start_worker("--have", "cpu")
    wait_until(lambda: count_shown(browser, "succeeded") == "2", 20, what="2 succeeded")
    wait_until(
        lambda: browser.attribute_of(f'tr[data-id="{first}"]', "data-state") == "succeeded",
        what="its row says so",
    )
    assert "cpu" in browser.text_of('[data-testid="workers"]')
    assert page_errors(browser) == []


def test_a_running_tasks_output_appears_on_its_page(
    browser: Browser,
    server: ServerProcess,
    kickoff: Kickoff,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    start_worker("--have", "cpu")
    flag = tmp_path / "go-on"
    script = f"echo line1; echo line2; until [ -e {flag} ]; do sleep 0.05; done; echo line3"
    task_id = submit(kickoff, "--", "sh", "-c", script)
    browser.login()
    browser.driver.get(f"{server.url}/#/task/{task_id}")
    wait_until(lambda: "running" in browser.text_of(".task-head"), 10, what="running, shown")
    # live: what it printed shows while it still runs (it waits for the flag)
    wait_until(lambda: "line2" in browser.text_of('[data-testid="output"]'), 15, what="live")
    assert state_of(server, task_id) == "running"
    flag.touch()  # the task ends now, while its page is open
    wait_until(lambda: "line3" in browser.text_of('[data-testid="output"]'), 20, what="output")
    assert browser.text_of('[data-testid="output"]').split() == ["line1", "line2", "line3"]
    wait_until(lambda: "succeeded" in browser.text_of(".task-head"), what="succeeded, shown")
    assert "exit 0" in browser.text_of('[data-testid="attempts"]')
    assert "TaskCompleted" in browser.text_of('[data-testid="history"]')


def test_a_pending_tasks_page_says_why_it_waits(
    browser: Browser, server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker("--have", "cpu", "--name", "box1")
    task_id = submit(kickoff, "--require", "cpu", "gpu", "--", "nvidia-smi")

    def registered() -> bool:
        with server.client() as client:
            return bool(client.get("/v1/workers")["workers"])

    wait_until(registered, 10, what="the worker")
    browser.login()
    browser.driver.get(f"{server.url}/#/task/{task_id}")
    summary = "pending: no live worker has gpu; nearest: box1 (w1) has cpu but not gpu"
    wait_until(
        lambda: browser.text_of('[data-testid="why-summary"]') == summary, 10, what="the why"
    )
    assert browser.text_of('[data-testid="why-nearest"]').split()[-3:] == ["box1", "(w1)", "gpu"]
    assert page_errors(browser) == []


def test_cancel_a_running_task_and_a_pending_one(
    browser: Browser, server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker("--have", "cpu")
    running = submit(kickoff, "--require", "cpu", "--", "sleep", "100")
    pending = submit(kickoff, "--require", "gpu", "--", "sleep", "100")
    wait_until(lambda: state_of(server, running) == "running", 10, what="running")
    browser.login()
    browser.driver.get(f"{server.url}/#/task/{running}")
    browser.click(".task-head button.danger")
    # two steps: one stray click cancels nothing (the page may redraw the button meanwhile)
    assert browser.text_of(".task-head button.danger") == "really?"
    assert state_of(server, running) == "running"
    browser.click(".task-head button.danger")
    wait_until(lambda: state_of(server, running) == "cancelled", 15, what="cancelled")
    wait_until(lambda: "cancelled" in browser.text_of(".task-head"), 10, what="shown cancelled")
    browser.driver.get(f"{server.url}/#/")
    for _ in range(2):
        browser.click(f'tr[data-id="{pending}"] button.danger')
    wait_until(lambda: state_of(server, pending) == "cancelled", 10, what="pending cancelled")
    wait_until(
        lambda: browser.attribute_of(f'tr[data-id="{pending}"]', "data-state") == "cancelled",
        what="the row shows it",
    )


def test_markup_in_a_command_and_its_output_is_shown_as_text_and_never_runs(
    browser: Browser, server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker("--have", "cpu")
    command = f"echo '{XSS}'; printf '%s' '<b>bold</b>'"
    task_id = submit(kickoff, "--require", "cpu", "--want", "big-mem", "--", "sh", "-c", command)
    wait_until(lambda: state_of(server, task_id) == "succeeded", 15, what="done")
    browser.login()
    wait_until(lambda: XSS in browser.text_of(f'tr[data-id="{task_id}"]'), what="its row")
    browser.driver.get(f"{server.url}/#/task/{task_id}")
    wait_until(lambda: XSS in browser.text_of('[data-testid="output"]'), what="the output")
    assert XSS in browser.text_of('[data-testid="command"]')
    assert "<b>bold</b>" in browser.text_of('[data-testid="output"]')
    assert browser.driver.execute_script("return window.__xss") is None
    assert browser.driver.find_elements(By.CSS_SELECTOR, "main img, main script, main b") == []
    assert page_errors(browser) == []


def test_no_request_leaves_this_machine(
    browser: Browser, server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker("--have", "cpu")
    task_id = submit(kickoff, "--", "echo", "hi")
    wait_until(lambda: state_of(server, task_id) == "succeeded", 15, what="done")
    browser.login()
    browser.driver.get(f"{server.url}/#/task/{task_id}")
    browser.wait_for('[data-testid="history"]')
    browser.driver.get(f"{server.url}/#/?state=succeeded&q=echo")
    browser.wait_for(f'tr[data-id="{task_id}"]')
    requests = browser.collect_requests()
    assert any(url.startswith(server.url + "/v1/") for url in requests), requests
    network = [u for u in requests if u.split(":", 1)[0] in ("http", "https", "ws", "wss")]
    elsewhere = [url for url in network if host_of(url) not in ("127.0.0.1", "localhost")]
    assert elsewhere == []  # (chrome:// and data: URLs are the browser's own, no network)


def test_the_readme_screenshot(
    browser: Browser,
    server: ServerProcess,
    kickoff: Kickoff,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    """A small farm mid-way through its queue; with KICKOFF_SCREENSHOT=1 it becomes
    docs/dashboard.png, the README's picture (see screenshot_path)."""
    start_worker("--have", "cpu,linux", "--slots", "2", "--name", "render-01")
    start_worker("--have", "gpu,cuda12,linux", "--name", "gpu-01")
    for i in range(1, 25):
        submit(kickoff, "--require", "cpu", "--", "sh", "-c", f"echo frame {i}; sleep 0.1")
    submit(kickoff, "--require", "cpu", "--", "sh", "-c", "echo 'disk full' >&2; exit 2")
    for _ in range(2):
        submit(kickoff, "--require", "gpu", "--want", "cuda12", "--", "python3", "-c", "0")
    wait_until(lambda: state_of(server, 25) in ("failed", "succeeded"), 30, what="the queue")
    long = [submit(kickoff, "--require", "cpu", "--", "sleep", "60") for _ in range(2)]
    train = submit(kickoff, "--require", "gpu", "--", "sh", "-c", "echo epoch 1; sleep 60  # train")
    submit(kickoff, "--after", str(train), "--", "./evaluate.sh")  # waiting
    for i in range(3):
        submit(kickoff, "--require", "cpu", "--priority", "5", "--", "./render.sh", f"shot{i}")
    frames = ("--array", "1-4", "--group", "shot12", "--max-running", "2", "--require", "cpu")
    assert kickoff("new", *frames, "--", "./render.sh $KICKOFF_ARRAY_INDEX").returncode == 0
    wait_until(lambda: all(state_of(server, t) == "running" for t in long), 15, what="running")
    browser.login()
    wait_until(lambda: count_shown(browser, "running") == "3", 10, what="3 running shown")
    browser.wait_for('[data-testid="events"] li')
    browser.driver.set_window_size(1440, 900)
    path = screenshot_path(tmp_path)
    path.parent.mkdir(exist_ok=True)
    assert browser.driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
