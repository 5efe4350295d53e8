"""`kickoff server` and `kickoff up`: run a server (and, for `up`, a local worker).

What a server is and does is server.py's and service/'s; this parses options and starts it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import Annotated

import typer

from kickoff import defaults
from kickoff.cli._options import db_option, db_path

HostOpt = Annotated[
    str, typer.Option("--host", metavar="HOST", help="Address to listen on (0.0.0.0 for all).")
]
PortOpt = Annotated[
    int, typer.Option("--port", metavar="PORT", min=0, max=65535, help="Port to listen on.")
]
DbOpt = Annotated[str | None, db_option("Database file (default: XDG data dir).")]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--heartbeat-timeout",
        metavar="SECONDS",
        min=defaults.MIN_HEARTBEAT_TIMEOUT_S,
        help="Seconds before a silent worker is lost.",
    ),
]

SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def byte_size(text: str) -> int:
    """`64M` -> 67108864: a whole number of bytes, with an optional binary suffix K M G T."""
    word = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, suffix = (word[:-1], word[-1]) if word[-1:] in SUFFIXES else (word, "")
    if not (number.isascii() and number.isdigit()):
        raise typer.BadParameter(f"{text!r} is not a size (a whole number, maybe with K M G T)")
    return int(number) * SUFFIXES[suffix]


OutputCapOpt = Annotated[
    str,
    typer.Option(
        "--output-cap",
        metavar="SIZE",
        help="Output kept per task attempt (past it, bytes are counted, not kept).",
    ),
]
OutputBudgetOpt = Annotated[
    str,
    typer.Option(
        "--output-budget",
        metavar="SIZE",
        help="All task output kept; past it the oldest tasks' output is deleted.",
    ),
]


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def server(
    host: HostOpt = defaults.HOST,
    port: PortOpt = defaults.PORT,
    db: DbOpt = None,
    heartbeat_timeout: TimeoutOpt = defaults.HEARTBEAT_TIMEOUT_S,
    rotate_token: Annotated[
        bool, typer.Option("--rotate-token", help="Replace the access token with a new one.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every request.")] = False,
    output_cap: OutputCapOpt = "64M",
    output_budget: OutputBudgetOpt = "10G",
    lease_timeout: Annotated[
        float,
        typer.Option(
            "--lease-timeout",
            metavar="SECONDS",
            min=0.5,
            help="On a shared PostgreSQL database: how soon a standby takes over a dead leader.",
        ),
    ] = defaults.LEASE_TIMEOUT_S,
) -> None:
    """Run the kickoff server (no configuration needed).

    On a PostgreSQL database (--db postgresql://...) several servers may run: one leads,
    the others are standbys that take over within --lease-timeout of its death
    (docs/postgresql.md).

    Example: kickoff server --host 0.0.0.0 --port 3355
    """
    from kickoff.server import serve

    _logging(verbose)
    serve(
        db_path=db_path(db),
        host=host,
        port=port,
        heartbeat_timeout_s=heartbeat_timeout,
        rotate_token=rotate_token,
        output_cap=byte_size(output_cap),
        output_budget=byte_size(output_budget),
        lease_timeout_s=lease_timeout,
    )


def up(
    have: Annotated[
        list[str] | None,
        typer.Option("--have", metavar="TAG", help="Tags of the local worker (repeatable)."),
    ] = None,
    slots: Annotated[
        int,
        typer.Option(
            "--slots",
            metavar="N",
            min=1,
            max=defaults.MAX_SLOTS,
            help="Tasks the local worker runs at once (1, as for `kickoff worker`).",
        ),
    ] = defaults.SLOTS,
    resources: Annotated[
        list[str] | None,
        typer.Option(
            "--resources",
            metavar="NAME=AMOUNT",
            help="Amounts the local worker has (gpu=4,mem=64G), as for `kickoff worker`.",
            show_default=False,
        ),
    ] = None,
    host: HostOpt = defaults.HOST,
    port: PortOpt = defaults.PORT,
    db: DbOpt = None,
    heartbeat_timeout: TimeoutOpt = defaults.HEARTBEAT_TIMEOUT_S,
    output_cap: OutputCapOpt = "64M",
    output_budget: OutputBudgetOpt = "10G",
) -> None:
    """Run a server and a local worker in one command: kickoff on one machine.

    Example: kickoff up --have cpu,gpu --slots 4 --resources gpu=2
    """
    from kickoff import resources as amounts
    from kickoff.server import serve

    declared = amounts.parse(resources or [], field="--resources", task=False)  # exit 2 first

    _logging(False)
    worker: list[subprocess.Popen[bytes]] = []
    # The worker watches the read end; this process holds the write end until it ends, by
    # whatever death: then the worker stops at once and its tasks die with it.
    lifeline_r, lifeline_w = os.pipe()
    unused = [lifeline_r]  # the read end, until the worker has it

    def start_worker(_service: object, token: str) -> None:
        args = [
            sys.executable,
            "-m",
            "kickoff",
            "worker",
            "--server",
            f"127.0.0.1:{port}",
            "--slots",
            str(slots),
            "--exit-with-fd",
            str(lifeline_r),
        ]
        for tag in have or []:
            args += ["--have", tag]
        if declared:
            args += ["--resources", amounts.show(declared)]
        env = {**os.environ, "KICKOFF_TOKEN": token}
        # Its own session: a Ctrl-C in the terminal reaches `up` alone, which passes on
        # exactly one SIGINT per Ctrl-C (two would mean "kill the running tasks").
        worker.append(
            subprocess.Popen(args, env=env, start_new_session=True, pass_fds=(lifeline_r,))
        )
        os.close(unused.pop())

    def stop_worker(sig: int) -> None:
        """The first Ctrl-C: the worker drains and deregisters while the server still runs."""
        for proc in worker:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait()

    try:
        serve(
            db_path=db_path(db),
            host=host,
            port=port,
            heartbeat_timeout_s=heartbeat_timeout,
            on_ready=start_worker,
            drain=stop_worker,
            output_cap=byte_size(output_cap),
            output_budget=byte_size(output_budget),
        )
    finally:
        for proc in worker:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=defaults.CANCEL_GRACE_S + 5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for fd in [lifeline_w, *unused]:
            os.close(fd)


def register(app: typer.Typer) -> None:
    app.command("server")(server)
    app.command("up")(up)
