"""The README's "Workflows" section, word for word: its three transcripts run in order on a
terminal (a pty) against a real server and a real worker named box1 with 4 slots, in a
directory holding the scripts they name, and print what the README shows once what
differs from run to run (times, ages, durations, seqs, event counts) is normalised.

Between two commands the README's user waits as a person does (until the chain has ended,
until two frames run, until the download is done); those waits are the HIDDEN steps: run,
but neither shown nor compared. The first step of the chain (prepare.sh) and the frames of
shot 12 go on only once a hidden step after the command that shows them running lets them
(AFTER), so that `status` and `stats` show them running however slowly the machine runs
the commands."""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ServerProcess, WorkerProcess, wait_until
from tests.e2e.test_readme_quickstart import COLUMNS, README, on_a_terminal

SCRIPTS = {
    "prepare.sh": "until [ -e prep.go ]; do sleep 0.05; done; echo prepared",
    "train.sh": "echo training; exit 3",
    "evaluate.sh": "echo evaluated",
    "report.sh": "echo report written",
    "render.sh": 'until [ -e frames.go ]; do sleep 0.05; done; echo "frame $1"',
    "download.sh": '[ "$KICKOFF_ATTEMPT" -ge 3 ] && { echo downloaded; exit 0; }; exit 75',
}
RUNNING = 'kickoff status --all --json | grep -c \'"state": "running"\''
HIDDEN = {  # before a command (by its start): what the README's user waited for
    "kickoff status --all": "kickoff wait $report",
    "kickoff stats --group shot12": f'until [ "$({RUNNING})" = 2 ]; do sleep 0.05; done',
    "kickoff history $id": "kickoff wait $id",
}
AFTER = {  # after a command (by its start; ending in a newline: that whole command): what
    # lets the tasks it showed running go on
    "kickoff status\n": "touch prep.go",
    "kickoff stats --group shot12": "touch frames.go",
}
FIRST_STATUS = f'until [ "$({RUNNING})" = 1 ]; do sleep 0.05; done'  # prep has started
VARIABLE = [
    (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "<time>"),
    (r"\b\d\d:\d\d:\d\d\.\d{3}\b", "<time>"),
    (r"\b\d+[smhd] ago\b|\bjust now\b", "<age>"),
    (r"\+?\b\d+\.\d+s\b", "<s>"),
    (r"(?m)^(<time>\s+<s>\s+)\d+", r"\1<seq>"),  # history's steps
    (r"(?m)^(throughput\s+)\d+ finished in the last \d+s.*$", r"\1<n>"),
    (r"(?m)^(log\s+)\d+ events$", r"\1<n>"),
    (r"· in /\S+", "· in <dir>"),  # the submit directory, cut at the terminal's width
    (r"─+", "─"),
    (r"[ \t]+", " "),
]
# A heartbeat that lands while an attempt runs (a few ms, for download.sh) is one more step
# of its history, now and then: neither shown nor compared.
HEARTBEATS = re.compile(r"<time> <s> <seq> \d+ heartbeats? from ")


def transcripts() -> list[str]:
    section = README.read_text().split("\n## Workflows", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```text\n(.*?)```", section, re.DOTALL)


def script_of(transcript: str) -> str:
    """Each `$ ` line shown, then run (after its hidden wait, and before its hidden
    follow-up, if it has them)."""
    lines = ["set -e"]
    for command in (line[2:] for line in transcript.splitlines() if line.startswith("$ ")):
        hidden = next((h for start, h in HIDDEN.items() if command.startswith(start)), None)
        if command == "kickoff status":
            hidden = FIRST_STATUS
        if hidden:
            lines.append(f"{hidden} >/dev/null 2>&1")
        lines += [f"printf '%s\\n' {shlex.quote('$ ' + command)}", command]
        lines += [after for start, after in AFTER.items() if f"{command}\n".startswith(start)]
    return "\n".join(lines) + "\n"


def normalised(text: str) -> list[str]:
    for pattern, placeholder in VARIABLE:
        text = re.sub(pattern, placeholder, text)
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    return [line for line in lines if not HEARTBEATS.match(line)]


def test_the_workflows_section_has_three_transcripts() -> None:
    found = transcripts()
    assert len(found) == 3
    assert all(block.startswith("$ ") for block in found)


def test_the_workflows_section_word_for_word(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    here = tmp_path / "render"
    here.mkdir()
    for name, body in SCRIPTS.items():
        (here / name).write_text(f"#!/bin/sh\n{body}\n")
        (here / name).chmod(0o755)
    (here / "jobs.txt").write_text("sleep 30\n" * 3)
    start_worker("--name", "box1", "--slots", "4")
    with server.client() as api:
        wait_until(lambda: api.get("/v1/workers")["workers"], what="box1")
    env = {**server.env, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": str(COLUMNS)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for transcript in transcripts():
        shown = on_a_terminal(script_of(transcript), env, str(here))
        assert normalised(shown) == normalised(transcript)
