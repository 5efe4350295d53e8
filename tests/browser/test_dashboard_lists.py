"""The dashboard's task list and workers in a real chromium against a real server and real
workers: the filters (state, group, tag, text) typed as a user does, each worker with the
tasks it runs and the resources it has free, and cancelling a group from its filtered list
(SPEC §13, issue 17)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests.browser.conftest import Browser
from tests.conftest import ServerProcess, WorkerProcess, wait_until

Kickoff = Callable[..., subprocess.CompletedProcess[str]]
StartWorker = Callable[..., WorkerProcess]


def submit(kickoff: Kickoff, *args: str) -> list[int]:
    done = kickoff("new", *args)
    assert done.returncode == 0, done.stderr
    return [int(line) for line in done.stdout.split()]


def state_of(server: ServerProcess, task_id: int) -> str:
    with server.client() as client:
        return str(client.get(f"/v1/tasks/{task_id}")["state"])


def rows(browser: Browser) -> set[int]:
    """The ids of the task list's rows ("" while it redraws: callers wait_until)."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        found = browser.driver.find_elements(By.CSS_SELECTOR, '[data-testid="tasks"] tr[data-id]')
        return {int(row.get_attribute("data-id")) for row in found}
    except StaleElementReferenceException:
        return set()


def type_into(browser: Browser, name: str, text: str) -> None:
    """Replace an input's text by key presses, as a user does (each fires `input`)."""
    field = browser.wait_for(f'input[name="{name}"]')
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    if text:
        field.send_keys(text)


def shows(browser: Browser, expected: set[int], what: str) -> None:
    wait_until(lambda: rows(browser) == expected, 15, what=f"{what}: rows {sorted(expected)}")


def test_the_filters_by_state_group_tag_and_text_and_the_workers_running_tasks(
    browser: Browser, server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker("--have", "cpu", "--name", "render-01")
    (done,) = submit(kickoff, "--require", "cpu", "--", "echo", "alpha")
    wait_until(lambda: state_of(server, done) == "succeeded", 15, what="alpha done")
    (running,) = submit(kickoff, "--require", "cpu", "--", "sleep", "100")
    (gpu,) = submit(kickoff, "--require", "gpu", "--", "echo", "beta")
    frames = submit(kickoff, "--array", "1-2", "--group", "shot7", "--want", "fast", "--", "x")
    (later,) = submit(kickoff, "--after", str(gpu), "--", "echo", "gamma")
    wait_until(lambda: state_of(server, running) == "running", 15, what="running")
    browser.login()
    everything = {done, running, gpu, *frames, later}
    shows(browser, everything, "no filter")
    type_into(browser, "q", "ALPHA")  # a substring of the command, case-insensitive
    shows(browser, {done}, "text alpha")
    type_into(browser, "q", "")
    Select(browser.wait_for('select[name="state"]')).select_by_value("pending")
    shows(browser, {gpu, *frames}, "state pending")
    Select(browser.wait_for('select[name="state"]')).select_by_value("waiting")
    shows(browser, {later}, "state waiting")
    Select(browser.wait_for('select[name="state"]')).select_by_value("all")
    type_into(browser, "tag", "cpu")  # in require
    shows(browser, {done, running}, "tag cpu")
    type_into(browser, "tag", "fast")  # in want
    shows(browser, set(frames), "tag fast")
    type_into(browser, "tag", "")
    type_into(browser, "group", "shot7")
    shows(browser, set(frames), "group shot7")
    assert "group=shot7" in browser.driver.current_url  # a filtered list can be linked to
    workers = '[data-testid="workers"] tr[data-id]'
    wait_until(lambda: f"#{running}" in browser.text_of(workers), what="the running task")
    row = browser.text_of(workers)
    assert "render-01" in row and "1/1" in row and "cpu" in row
    link = browser.wait_for(f"{workers} a.chip").get_attribute("href")
    assert link.endswith(f"#/task/{running}")


def test_cancel_a_group_from_its_list(
    browser: Browser, server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker("--have", "cpu")
    ids = submit(
        kickoff, "--array", "1-3", "--group", "shot12", "--require", "cpu", "--", "sleep 100"
    )
    (other,) = submit(kickoff, "--require", "cpu", "--", "sleep", "100")
    wait_until(lambda: state_of(server, ids[0]) == "running", 15, what="the first frame running")
    browser.login()
    browser.driver.get(f"{server.url}/#/?group=shot12")
    shows(browser, set(ids), "group shot12")
    button = '[data-testid="group-cancel"] button.danger'
    assert browser.wait_for(button).text == "cancel group shot12"
    browser.click(button)
    assert browser.text_of(button) == "really?"  # two clicks: a stray one cancels nothing
    assert state_of(server, ids[1]) == "pending"
    browser.click(button)
    wait_until(
        lambda: {state_of(server, i) for i in ids} == {"cancelled"}, 20, what="the group cancelled"
    )
    assert state_of(server, other) in ("pending", "running")  # not in the group
    wait_until(
        lambda: all(
            browser.attribute_of(f'tr[data-id="{i}"]', "data-state") == "cancelled" for i in ids
        ),
        what="its rows show it",
    )
    assert not [e for e in browser.console_errors() if "/cancel" in e]


def test_the_rate_counts_tasks_that_have_just_finished(
    browser: Browser, server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker("--slots", "4")
    ids = submit(kickoff, "--array", "1-12", "--", "true")
    wait_until(lambda: all(state_of(server, i) == "succeeded" for i in ids), 20, what="all")
    browser.login()
    rate = browser.wait_for('[data-testid="rate"]').text
    # 12 tasks within the last minute: 0.2/s; not 0.0/s because they are all in the
    # current interval of the chart
    assert rate.endswith("/s") and float(rate[:-2]) >= 0.1, rate


def test_a_worker_s_resources_free_and_a_task_s_request_and_gpus_follow_live(
    browser: Browser, server: ServerProcess, kickoff: Kickoff, start_worker: StartWorker
) -> None:
    start_worker("--resources", "gpu=4,mem=64G", "--slots", "4", "--name", "gpu-box")
    (first,) = submit(kickoff, "--resources", "gpu=2,mem=16G", "--", "sleep", "100")
    wait_until(lambda: state_of(server, first) == "running", 15, what="the 2-gpu task running")
    with server.client() as client:
        held = client.get(f"/v1/tasks/{first}")["gpu_ids"]
    others = ",".join(str(g) for g in range(4) if g not in held)
    browser.login()
    cell = '[data-testid="workers"] [data-testid="worker-resources"]'
    wait_until(lambda: "gpu 2/4 free" in browser.text_of(cell), what="gpu 2/4 free")
    assert "mem 48G/64G free" in browser.text_of(cell)
    assert browser.text_of(f'{cell} [data-testid="gpus-free"]') == f"GPUs {others} free"
    asks = f'[data-testid="tasks"] tr[data-id="{first}"] [data-testid="asks"]'
    wait_until(lambda: browser.text_of(asks), what="the task's request in the list")
    shown = ",".join(map(str, held))
    assert browser.text_of(asks).split() == ["gpu=2", "mem=16G", "GPUs", shown]
    # a second 2-gpu task, then the end of the first: the open page follows the events
    (second,) = submit(kickoff, "--resources", "gpu=2", "--", "sleep", "100")
    wait_until(lambda: "gpu 0/4 free" in browser.text_of(cell), what="gpu 0/4 free")
    assert browser.text_of(f'{cell} [data-testid="gpus-free"]') == "no GPU free"
    assert kickoff("cancel", str(first)).returncode == 0
    wait_until(lambda: "gpu 2/4 free" in browser.text_of(cell), what="gpu 2/4 free again")
    assert "mem 64G/64G free" in browser.text_of(cell)
    browser.driver.get(f"{server.url}/#/task/{second}")
    fields = ".fields"
    wait_until(lambda: "gpu=2" in browser.text_of(fields), what="the task page's resources")
    with server.client() as client:
        ids = ",".join(map(str, client.get(f"/v1/tasks/{second}")["gpu_ids"]))
    lines = browser.text_of(fields).splitlines()
    assert lines[lines.index("resources") + 1] == "gpu=2"
    assert lines[lines.index("gpu_ids") + 1] == ids
    assert kickoff("cancel", str(second)).returncode == 0
    assert not browser.console_errors()
