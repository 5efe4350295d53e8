"""The README's first minute, word for word, against `kickoff up --have cpu` (its quick start)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import free_port, kickoff_cmd, wait_until

README = Path(__file__).resolve().parents[2] / "README.md"


def first_minute() -> list[str]:
    """The `$ ` lines of the README's first console block."""
    block = re.search(r"```console\n(.*?)```", README.read_text(), re.DOTALL)
    assert block is not None
    return [line[2:] for line in block.group(1).splitlines() if line.startswith("$ ")]


def test_the_quick_start_is_the_one_line_up_with_cpu() -> None:
    assert ".venv/bin/kickoff up --have cpu" in README.read_text()


def test_the_first_minute_word_for_word(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    commands = first_minute()
    assert commands[0] == "kickoff new echo hello -require cpu"
    port = free_port()
    env = {**isolated_env, "KICKOFF_SERVER": f"127.0.0.1:{port}"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [*kickoff_cmd(), "up", "--have", "cpu", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        wait_until(lambda: _up(port), timeout=20, what="kickoff up")
        script = "set -e\n" + "\n".join(commands) + "\n"
        result = subprocess.run(
            ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert out.splitlines()[0] == "1"  # `new` prints only the id
        assert "\nok\n" in out  # `wait` exited 0
        assert re.search(r"^1\s+succeeded\s.*echo hello$", out, re.MULTILINE)
        assert re.search(r"^2\s+succeeded\s.*sleep 1; echo done'$", out, re.MULTILINE)
        assert "hello" in out and "done" in out  # info's and history's output tails
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
        log.close()


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
