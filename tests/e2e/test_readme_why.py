"""The README's "Why a task waits" section, word for word: its transcript runs on a terminal
(a pty) against a real server and two real workers (box1 with cpu, old-gpu with gpu and
cuda11), in a directory holding the scripts it names, and prints what the README shows once
what differs from run to run (ages, seqs) is normalised.

The README's user waits as a person does before asking (box1 has finished prepare.sh and
taken train.sh); that wait is a HIDDEN step: run, but neither shown nor compared."""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ServerProcess, WorkerProcess, wait_until
from tests.e2e.test_readme_quickstart import COLUMNS, README, on_a_terminal

SCRIPTS = {  # prepare.sh and train.sh hold their worker until the test lets them go
    "prepare.sh": "until [ -e prepared ]; do sleep 0.05; done; echo prepared",
    "report.sh": "echo report written",
    "train.sh": "until [ -e trained ]; do sleep 0.05; done; echo trained",
    "train-gpu.sh": "nvidia-smi",
    "finetune.sh": "until [ -e trained ]; do sleep 0.05; done; echo tuned",
    "train-big.sh": "echo trained big",
}
TRAINING = 'until kickoff info 3 --json | grep -q \'"state": "running"\'; do sleep 0.05; done'
TUNING = 'until kickoff info 7 --json | grep -q \'"state": "running"\'; do sleep 0.05; done'
HIDDEN = {  # before a command (by its start): what the README's user waited for
    "kickoff why 2": f"touch prepared; {TRAINING}",
    "kickoff why 6": TUNING,
}
VARIABLE = [
    (r"\b\d+[smhd] ago\b|\bjust now\b", "<age>"),
    (r"\(seq \d+\)", "(seq <n>)"),
    (r"(?m)^(box1 \(w1\)\s+3\s+|gpubox \(w3\)\s+7\s+)\d+", r"\1<seq>"),  # took's SEQ
    (r"─+", "─"),
    (r"[ \t]+", " "),
]


def transcripts() -> list[str]:
    section = README.read_text().split("\n## Why a task waits", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```text\n(.*?)```", section, re.DOTALL)


def script_of(transcript: str) -> str:
    """Each `$ ` line shown, then run (after its hidden wait, if it has one)."""
    lines = ["set -e"]
    for command in (line[2:] for line in transcript.splitlines() if line.startswith("$ ")):
        hidden = next((h for start, h in HIDDEN.items() if command.startswith(start)), None)
        if hidden:
            lines.append(f"{hidden} >/dev/null 2>&1")
        lines += [f"printf '%s\\n' {shlex.quote('$ ' + command)}", command]
    return "\n".join(lines) + "\n"


def normalised(text: str) -> list[str]:
    for pattern, placeholder in VARIABLE:
        text = re.sub(pattern, placeholder, text)
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def test_the_why_section_has_two_transcripts() -> None:
    found = transcripts()
    assert len(found) == 2
    assert all(block.startswith("$ ") for block in found)


def test_the_why_section_word_for_word(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    here = tmp_path / "render"
    here.mkdir()
    for name, body in SCRIPTS.items():
        (here / name).write_text(f"#!/bin/sh\n{body}\n")
        (here / name).chmod(0o755)

    def workers() -> int:
        with server.client() as api:
            return len(api.get("/v1/workers")["workers"])

    start_worker("--name", "box1", "--have", "cpu")
    wait_until(lambda: workers() == 1, what="box1")
    start_worker("--name", "old-gpu", "--have", "gpu", "cuda11")
    wait_until(lambda: workers() == 2, what="old-gpu")
    env = {**server.env, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": str(COLUMNS)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    first, second = transcripts()
    try:
        shown = on_a_terminal(script_of(first), env, str(here))
        assert normalised(shown) == normalised(first)
        start_worker("--name", "gpubox", "--resources", "gpu=2", "--slots", "3")
        wait_until(lambda: workers() == 3, what="gpubox")
        shown = on_a_terminal(script_of(second), env, str(here))
    finally:
        (here / "prepared").touch()
        (here / "trained").touch()  # the workers stop at once
    assert normalised(shown) == normalised(second)
