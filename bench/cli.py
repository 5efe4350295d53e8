"""The command line's wall time: `kickoff --help`, `kickoff new` against a running server,
`kickoff status` (a page of 50 tasks), each goal <= 50 ms (issue 13).

Each is the median of many runs of the installed `kickoff` console script (the one beside
this Python), started as a shell would start it, output to a pipe, against a real
`kickoff server` on loopback.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.http import server_in

COMMANDS = {
    "kickoff --help": ["--help"],
    "kickoff new -- true (a running server)": ["new", "--", "true"],
    "kickoff status (50 tasks shown)": ["status"],
}


def kickoff(script: Path | None = None) -> list[str]:
    """The console script to time: given, or the one beside this Python."""
    script = script or Path(sys.executable).with_name("kickoff")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kickoff"]


def floor_python(script: list[str]) -> str:
    """The Python a console script runs (its `#!` line), for the floor figure."""
    first = Path(script[0]).read_bytes().split(b"\n", 1)[0] if script[0] != sys.executable else b""
    return first[2:].decode().strip() if first.startswith(b"#!") else sys.executable


def _once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one run, the CPU of the process and its children (from wait4)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - started) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def wall_times(runs: int = 21, script: Path | None = None) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) milliseconds per run of each command, the commands interleaved run by
    run; `python -c pass` first (the script's Python): the floor any Python command line
    stands on. An editable install (`pip install -e`) adds some 15 ms to that floor: its
    import hook loads pathlib, urllib and ipaddress at every start."""
    command = kickoff(script)
    with tempfile.TemporaryDirectory() as tmp, server_in(Path(tmp)) as server:
        env = {**server.env, "KICKOFF_SERVER": f"127.0.0.1:{server.port}"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled once, then cached
        with server.http() as http:
            http.post("/v1/tasks", json={"tasks": [{"command": "true"}] * 100}).raise_for_status()
        floor = [floor_python(command), "-c", "pass"]
        times: dict[str, list[tuple[float, float]]] = {FLOOR: [], **{name: [] for name in COMMANDS}}
        for _ in range(runs + 1):
            times[FLOOR].append(_once(floor, env))
            for name, args in COMMANDS.items():
                times[name].append(_once([*command, *args], env))
        return {name: values[1:] for name, values in times.items()}  # the first compiles


def median(values: list[float]) -> float:
    return statistics.median(values)


FLOOR = "python -c pass (the interpreter alone)"
