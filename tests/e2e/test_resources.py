"""Counted resources and pinned GPUs (SPEC §10) with a real server, real workers and the
real CLI: what fits runs at once and the rest waits for what is released; each task gets
devices of its own; a fake `nvidia-smi` on PATH is found by the real detection."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess, WorkerProcess, kickoff_cmd, wait_until

# Each task writes what it was given, then waits until the test lets it end.
HOLD = (
    'printf "%s|%s|%s" "${CUDA_VISIBLE_DEVICES-unset}" "${KICKOFF_GPU_IDS-unset}" '
    '"$KICKOFF_RESOURCES" > DIR/env.$KICKOFF_TASK_ID; '
    "while [ ! -e DIR/go.$KICKOFF_TASK_ID ]; do sleep 0.05; done"
)


def hold(tmp_path: Path) -> str:
    return HOLD.replace("DIR", str(tmp_path))


def new(server: ServerProcess, *args: str, env: dict[str, str] | None = None) -> int:
    done = subprocess.run(
        [*kickoff_cmd(), "new", *args],
        env=env or server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*kickoff_cmd(), *args], env=server.env, capture_output=True, text=True, timeout=60
    )


def task(server: ServerProcess, task_id: int) -> dict[str, Any]:
    with server.client() as api:
        return dict(api.get(f"/v1/tasks/{task_id}"))


def workers(server: ServerProcess) -> list[dict[str, Any]]:
    with server.client() as api:
        return list(api.get("/v1/workers")["workers"])


def state_of(server: ServerProcess, task_id: int, state: str) -> dict[str, Any]:
    return dict(
        wait_until(
            lambda: (t := task(server, task_id))["state"] == state and t,
            timeout=30,
            what=f"task {task_id} {state}",
        )
    )


def given(tmp_path: Path, task_id: int) -> list[str]:
    """What task `task_id` saw: CUDA_VISIBLE_DEVICES, KICKOFF_GPU_IDS, KICKOFF_RESOURCES."""
    path = tmp_path / f"env.{task_id}"
    wait_until(path.exists, timeout=30, what=f"task {task_id} to start")
    return path.read_text().split("|")


def fake_nvidia_smi(tmp_path: Path, gpus: int) -> dict[str, str]:
    """A PATH whose nvidia-smi lists `gpus` devices as the real one does."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "nvidia-smi"
    lines = "".join(
        f'echo "GPU {i}: NVIDIA Fake A100 (UUID: GPU-{i:04d}abcd-0000-0000-0000-000000000000)"\n'
        for i in range(gpus)
    )
    script.write_text(f'#!/bin/sh\n[ "$1" = "-L" ] || exit 2\n{lines}')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture
def no_gpus(tmp_path: Path) -> dict[str, str]:
    """A PATH with an nvidia-smi that lists nothing: the workers here detect no GPUs."""
    return fake_nvidia_smi(tmp_path, 0)


def test_two_2gpu_tasks_run_at_once_a_third_waits_and_starts_when_one_ends(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    no_gpus: dict[str, str],
) -> None:
    start_worker("--slots", "4", "--resources", "gpu=4,mem=64G", env={**server.env, **no_gpus})
    command = hold(tmp_path)
    first, second, third = (
        new(server, "--resources", "gpu=2,mem=16G", "--", command) for _ in "abc"
    )
    seen = {t: given(tmp_path, t) for t in (first, second)}
    devices = [set(seen[t][0].split(",")) for t in (first, second)]
    assert devices[0] | devices[1] == {"0", "1", "2", "3"} and not devices[0] & devices[1]
    assert [seen[t][0] for t in (first, second)] == [seen[t][1] for t in (first, second)]
    assert seen[first][2] == "gpu=2,mem=16G"
    assert task(server, third)["state"] == "pending"
    [box] = workers(server)
    assert box["resources_free"] == {"gpu": 0, "mem": 32 << 30}
    shown = cli(server, "workers")
    assert "gpu=0/4 mem=32G/64G" in shown.stdout, shown.stdout
    (tmp_path / f"go.{first}").touch()
    state_of(server, first, "succeeded")
    assert given(tmp_path, third)[0] == seen[first][0]  # the devices `first` gave back
    for t in (second, third):
        (tmp_path / f"go.{t}").touch()
        state_of(server, t, "succeeded")
    history = cli(server, "history", str(third))
    assert f"(GPUs {seen[first][0]}; attempt 1 of 3), holding gpu=2,mem=16G" in history.stdout
    status = cli(server, "status", "--all")
    assert "RESOURCES" in status.stdout and "gpu=2,mem=16G" in status.stdout


def test_what_a_cancelled_or_timed_out_task_held_is_free_again(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    no_gpus: dict[str, str],
) -> None:
    start_worker("--slots", "2", "-resources", "gpu=1", env={**server.env, **no_gpus})
    command = hold(tmp_path)
    cancelled = new(server, "-resources", "gpu=1", "--", command)
    timed_out = new(server, "--resources", "gpu=1", "--timeout", "0.5", "--", command)
    given(tmp_path, cancelled)
    assert task(server, timed_out)["state"] == "pending"
    assert cli(server, "cancel", str(cancelled)).returncode == 0
    state_of(server, cancelled, "cancelled")
    assert state_of(server, timed_out, "failed")["timed_out"]
    after = new(server, "--resources", "gpu=1", "--", "echo $CUDA_VISIBLE_DEVICES")
    assert state_of(server, after, "succeeded")["output_tail"] == "0\n"
    assert workers(server)[0]["resources_free"] == {"gpu": 1}


def test_a_lost_workers_holdings_go_with_it_and_its_task_runs_elsewhere(
    make_server: Callable[..., ServerProcess],
    tmp_path: Path,
    no_gpus: dict[str, str],
) -> None:
    server = make_server("--heartbeat-timeout", "1")
    env = {**server.env, **no_gpus}
    logs = []

    def worker(name: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("wb")
        logs.append(log)
        args = ["worker", "--name", name, "--resources", "gpu=2", "--server", server.address]
        return subprocess.Popen(
            [*kickoff_cmd(), *args], env=env, stdout=log, stderr=log, start_new_session=True
        )

    doomed = worker("doomed")
    try:
        big = new(server, "--resources", "gpu=2", "--", hold(tmp_path))
        given(tmp_path, big)
        os.killpg(doomed.pid, 9)  # the worker and its task, at once
        doomed.wait()
        (tmp_path / f"env.{big}").unlink()
        state_of(server, big, "pending")
        survivor = worker("survivor")
        try:
            assert given(tmp_path, big)[0] == "0,1"
            (tmp_path / f"go.{big}").touch()
            done = state_of(server, big, "succeeded")
            assert done["attempt"] == 2
            [alive] = workers(server)
            assert alive["name"] == "survivor" and alive["resources_free"] == {"gpu": 2}
        finally:
            survivor.terminate()
            survivor.wait(timeout=15)
    finally:
        for log in logs:
            log.close()


def test_gpus_are_detected_with_nvidia_smi_within_cuda_visible_devices(
    server: ServerProcess, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    path = fake_nvidia_smi(tmp_path, 4)
    detected = start_worker(env={**server.env, **path, "CUDA_VISIBLE_DEVICES": "3,1"})
    wait_until(lambda: workers(server), timeout=30, what="the worker to register")
    [box] = workers(server)
    assert (box["resources"], box["gpu_ids"]) == ({"gpu": 2}, [3, 1])
    assert "detected 2 GPUs with nvidia-smi -L (CUDA_VISIBLE_DEVICES=3,1)" in detected.output()
    one = new(server, "--resources", "gpu=1", "--", "echo $CUDA_VISIBLE_DEVICES $KICKOFF_GPU_IDS")
    assert state_of(server, one, "succeeded")["output_tail"] == "3 3\n"
    plain = new(server, "--", 'echo "[$CUDA_VISIBLE_DEVICES] [$KICKOFF_RESOURCES]"')
    assert state_of(server, plain, "succeeded")["output_tail"] == "[] []\n"  # no GPU of its own
    detected.stop()


def test_gpu_0_turns_detection_off(
    server: ServerProcess, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    off = start_worker("--resources", "gpu=0", env={**server.env, **fake_nvidia_smi(tmp_path, 4)})
    wait_until(lambda: workers(server), timeout=30, what="the worker to register")
    [box] = workers(server)
    assert (box["resources"], box["gpu_ids"]) == ({"gpu": 0}, [])
    plain = new(server, "--", 'echo "${CUDA_VISIBLE_DEVICES-unset}"')
    assert state_of(server, plain, "succeeded")["output_tail"] == "unset\n"
    assert "detected" not in off.output()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["new", "--resources", "gpu=0", "--", "true"], "--resources.gpu: 0 is out of range"),
        (["new", "--resources", "mem=16GB", "--", "true"], "invalid amount '16GB' for mem"),
        (["new", "true", "-resources", "gpu"], "'gpu' is not NAME=AMOUNT"),
        (["worker", "--resources", "gpu=-1"], "invalid amount '-1' for gpu"),
        (["worker", "--resources", "gpu=2,gpu=3"], "gpu is given twice"),
    ],
)
def test_bad_amounts_are_refused_with_exit_2_and_nothing_is_written(
    server: ServerProcess, args: list[str], says: str
) -> None:
    with server.client() as api:
        before = api.get("/v1/stats")["last_seq"]
    done = cli(server, *args)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    with server.client() as api:
        assert api.get("/v1/stats")["last_seq"] == before


def test_a_worker_refuses_more_gpus_than_cuda_visible_devices_lists(
    server: ServerProcess,
) -> None:
    done = subprocess.run(
        [*kickoff_cmd(), "worker", "--resources", "gpu=3"],
        env={**server.env, "CUDA_VISIBLE_DEVICES": "0,1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "gpu=3, but CUDA_VISIBLE_DEVICES=0,1 lets this worker hand out 2" in done.stderr


def test_a_restarted_server_knows_what_each_running_task_holds(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    no_gpus: dict[str, str],
) -> None:
    """kill -9 of the server while two tasks hold all of a worker's GPUs: the state the
    restart loads (checkpoint and the log's tail) holds the same, so the third still waits
    and then gets the devices the first gives back."""
    start_worker("--slots", "3", "--resources", "gpu=4", env={**server.env, **no_gpus})
    command = hold(tmp_path)
    first, second, third = (new(server, "--resources", "gpu=2", "--", command) for _ in "abc")
    seen = {t: given(tmp_path, t) for t in (first, second)}
    server.kill()
    server.start()
    [box] = workers(server)
    assert (box["resources_free"], box["gpu_ids_free"]) == ({"gpu": 0}, [])
    assert task(server, third)["state"] == "pending"
    (tmp_path / f"go.{first}").touch()
    state_of(server, first, "succeeded")
    assert given(tmp_path, third)[0] == seen[first][0]
    for t in (second, third):
        (tmp_path / f"go.{t}").touch()
        state_of(server, t, "succeeded")
    with server.client() as api:
        last = api.submit("true", resources={"gpu": 4})  # the Python API asks too
    state_of(server, last, "succeeded")
    server.stop()
    verified = cli(server, "verify", "--db", str(server.db_path))
    assert verified.returncode == 0, verified.stdout + verified.stderr  # fold, projections
