"""`kickoff worker`: run tasks whose required tags this machine has.

The options only: the worker itself is kickoff/worker, reached through worker/main.py.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from kickoff import defaults
from kickoff.cli._options import ServerOpt, TokenOpt
from kickoff.tags import check_tags, split_tags

HaveOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--have",
        metavar="TAGS",
        help="Tags of this worker: repeat the option, or separate tags with spaces or commas.",
        show_default=False,
    ),
]
ResourcesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--resources",
        metavar="NAME=AMOUNT",
        help="Amounts this worker has (gpu=4,mem=64G; K M G T are binary). Without gpu, "
        "the GPUs nvidia-smi -L lists are declared; gpu=0 declares none.",
        show_default=False,
    ),
]
NameOpt = Annotated[
    str | None,
    typer.Option(
        "--name", metavar="NAME", help="Worker name (default HOSTNAME-PID).", show_default=False
    ),
]
SlotsOpt = Annotated[
    int,
    typer.Option(
        "--slots", metavar="N", min=1, max=defaults.MAX_SLOTS, help="Tasks to run at once."
    ),
]
LogDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--log-dir",
        metavar="DIR",
        help="Directory for task output files (default $XDG_STATE_HOME/kickoff/worker-logs).",
        show_default=False,
    ),
]
TagsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--tags-file",
        metavar="PATH",
        help="File of extra tags, re-read whenever it changes.",
        show_default=False,
    ),
]
BurstOpt = Annotated[
    bool, typer.Option("--burst", help="Run what matches now, then deregister and exit.")
]
GraceOpt = Annotated[
    float,
    typer.Option(
        "--grace",
        metavar="SECONDS",
        min=0.0,
        help="Seconds from SIGTERM to SIGKILL when stopping a task.",
    ),
]
KeepLogsOpt = Annotated[
    int,
    typer.Option(
        "--keep-logs",
        metavar="N",
        min=0,
        help="Task log files to keep in the log directory, newest first (0 keeps all).",
    ),
]
ExitWithFdOpt = Annotated[
    int | None,
    typer.Option(
        "--exit-with-fd",
        hidden=True,  # for `kickoff up`: stop (and kill the tasks) once this pipe closes
        help="Stop at once when this inherited pipe reaches end of file.",
    ),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log debugging detail.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Log only warnings and errors.")]


def default_log_dir() -> Path:
    """`$XDG_STATE_HOME/kickoff/worker-logs` (normally ~/.local/state/kickoff/worker-logs)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kickoff" / "worker-logs"


def default_name() -> str:
    suffix = f"-{os.getpid()}"
    return socket.gethostname()[: defaults.MAX_NAME_CHARS - len(suffix)] + suffix


def _logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if not verbose:  # one line per request is noise at INFO
        logging.getLogger("httpx").setLevel(logging.WARNING)


def worker(
    have: HaveOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    name: NameOpt = None,
    slots: SlotsOpt = defaults.SLOTS,
    resources: ResourcesOpt = None,
    log_dir: LogDirOpt = None,
    tags_file: TagsFileOpt = None,
    burst: BurstOpt = False,
    grace: GraceOpt = defaults.CANCEL_GRACE_S,
    keep_logs: KeepLogsOpt = defaults.KEEP_LOGS,
    exit_with_fd: ExitWithFdOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run tasks whose required tags this worker has, until Ctrl-C.

    Ctrl-C once stops claiming and lets running tasks finish; twice kills them (they are
    requeued). The last 4 KiB of each task's output go to the server; all of it goes to
    a file per attempt in the log directory (the newest --keep-logs files are kept).

    A task that asks for --resources runs only while this worker has that much free; a
    gpu task gets its own devices in CUDA_VISIBLE_DEVICES.

    Example: kickoff worker --have cpu,gpu --slots 4 --resources gpu=4,mem=64G
    """
    from kickoff import resources as amounts
    from kickoff.worker import WorkerConfig, run
    from kickoff.worker.gpus import declare

    _logging(verbose, quiet)
    declared = amounts.parse(resources or [], field="--resources", task=False)
    gpus = declare(declared, os.environ)
    if gpus.note is not None:
        logging.getLogger("kickoff.worker").info("%s", gpus.note)
    config = WorkerConfig(
        name=name or default_name(),
        tags=check_tags(split_tags(have or []), field="--have", limit=defaults.MAX_WORKER_TAGS),
        slots=slots,
        log_dir=log_dir or default_log_dir(),
        tags_file=tags_file,
        burst=burst,
        grace_s=grace,
        keep_logs=keep_logs,
        host=socket.gethostname()[: defaults.MAX_NAME_CHARS],
        exit_with_fd=exit_with_fd,
        resources=gpus.resources,
        gpu_ids=gpus.gpu_ids,
    )
    raise typer.Exit(code=run(config, server=server, token=token))


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
