"""The README's quick start, word for word, against `kickoff up --have cpu`: the commands
of its console block run on a real terminal (a pty), and what they print is the block,
once the parts that differ from run to run (times, ages, durations, seqs, the worker's
host name) are normalised. Also: the README's first command leaves the checkout clean."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

import httpx

from tests.conftest import free_port, kickoff_cmd, wait_until

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
COLUMNS = 100

# run-to-run differences, in order: each becomes its placeholder (a heartbeat of the
# worker while it ran task 2 is one line of its history, or none, as the clock falls)
HOME_DIR = "/home/you/render"  # where the README's user types, as `cwd` shows
VARIABLE = [
    (r"(?m)^.*\b\d+ heartbeats? from w\d+\b.*\n", ""),
    (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", "<time>"),
    (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "<time>"),
    (r"\b\d\d:\d\d:\d\d\.\d{3}\b", "<time>"),
    (r"\b\d+[smhd] ago\b|\bjust now\b", "<age>"),
    (r"duration_s=[\d.e-]+", "duration_s=<s>"),
    (r"\+?\b\d+\.\d+s\b", "<s>"),
    (r"(?m)^(\s*)\d+(\s+<age>\s+Task)", r"\1<seq>\2"),  # info's recent events
    (r"(?m)^(<time>\s+<s>\s+)\d+", r"\1<seq>"),  # history's steps
    (r"─+", "─"),
    (r"[ \t]+", " "),
]


def console_blocks() -> list[str]:
    return re.findall(r"```console\n(.*?)```", README.read_text(), re.DOTALL)


def first_minute() -> list[str]:
    """The `$ ` lines of the README's first console block."""
    return [line[2:] for line in console_blocks()[0].splitlines() if line.startswith("$ ")]


def normalised(text: str, worker: str) -> list[str]:
    text = text.replace(worker, "<worker>")
    for pattern, placeholder in VARIABLE:
        text = re.sub(pattern, placeholder, text)
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def on_a_terminal(script: str, env: dict[str, str], cwd: str) -> str:
    """Run a bash script in `cwd` with stdin, stdout and stderr on a pty of COLUMNS columns."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
    proc = subprocess.Popen(
        ["bash", "-c", script], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd
    )
    os.close(slave)
    chunks = []
    with contextlib.suppress(OSError):  # EIO: the last holder of the pty closed it
        while chunk := os.read(master, 65536):
            chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0, b"".join(chunks).decode()
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_the_quick_start_is_the_one_line_up_with_cpu() -> None:
    assert ".venv/bin/kickoff up --have cpu" in README.read_text()


# Each console block of the README, by the section it is in, and the test that runs it
# word for word; a block in another section would need a test of its own.
CONSOLE_BLOCKS_RUN_BY = {
    "The first minute": "test_the_first_minute_word_for_word (below)",
    "Output from anywhere": "test_output.py::test_the_readme_output_section_word_for_word",
}


def test_every_console_block_of_the_readme_is_run_by_a_test() -> None:
    sections = re.split(r"(?m)^## ", README.read_text())[1:]
    holding = [
        section.split("\n", 1)[0]
        for section in sections
        for _ in re.findall(r"```console\n", section)
    ]
    assert holding == list(CONSOLE_BLOCKS_RUN_BY)


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
        wait_until(lambda: _worker(port, env), timeout=20, what="kickoff up and its worker")
        shown = "".join(f"printf '%s\\n' {shlex.quote('$ ' + c)}\n{c}\n" for c in commands)
        terminal_env = {**env, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": str(COLUMNS)}
        # The README's user works in HOME_DIR; a directory of the same length stands in for
        # it, so that lines cut at the terminal's width are cut at the same place.
        here = tempfile.mkdtemp(prefix="ko-", dir="/tmp")
        assert len(here) == len(HOME_DIR), here
        try:
            transcript = on_a_terminal("set -e\n" + shown, terminal_env, here)
        finally:
            shutil.rmtree(here, ignore_errors=True)
        transcript = transcript.replace(here, HOME_DIR)
        worker = _worker(port, env)
        readme = console_blocks()[0]
        readme_worker = re.search(r"^worker\s+(\S+) \(w1\)$", readme, re.MULTILINE)
        assert readme_worker is not None
        assert normalised(transcript, worker) == normalised(readme, readme_worker[1])
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
        log.close()


def _worker(port: int, env: dict[str, str]) -> str:
    """The name of `up`'s worker, once it is registered ("" until then)."""
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    except httpx.TransportError:
        return ""
    if answer.status_code != 200:
        return ""
    found = subprocess.run(
        [*kickoff_cmd(), "workers", "--json"], env=env, capture_output=True, text=True
    )
    names = re.findall(r'"name": "([^"]+)"', found.stdout)
    return names[0] if names else ""


def test_installing_from_the_checkout_leaves_it_clean(tmp_path: Path) -> None:
    """`pip install .` (the README's first command) builds in the tree: what it leaves
    there (build/, *.egg-info) is ignored, so `git status` stays clean."""
    tree = tmp_path / "checkout"
    listed = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listed, cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        if not (ROOT / name.decode()).is_file():
            continue  # deleted in the working tree
        target = tree / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name.decode()).read_bytes())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tree)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "checkout"], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), "."],
        cwd=tree,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (tree / "build").is_dir()  # what setuptools leaves behind
    status = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == ""
