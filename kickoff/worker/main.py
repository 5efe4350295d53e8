"""Entry points: `serve` runs a worker in the current event loop with Ctrl-C/SIGTERM
handlers; `run` gives it a fresh loop (uvloop when installed).

The options are parsed by cli/worker_cmd.py; the worker itself is worker.py's.
"""

from __future__ import annotations

import asyncio
import signal

from kickoff import defaults
from kickoff.worker._http import LeanClient
from kickoff.worker.worker import Worker, WorkerConfig


def max_answer_bytes(slots: int) -> int:
    """The largest answer the worker reads: a claim of `slots` tasks of the longest command,
    every byte escaped, with room to spare."""
    return (1 << 20) + slots * 8 * defaults.MAX_COMMAND_BYTES


async def serve(config: WorkerConfig, *, server: str | None, token: str | None) -> int:
    """Run a worker until Ctrl-C/SIGTERM (or, in burst mode, until nothing matches).

    Raises:
        KickoffError: the server refused the registration (wrong token, bad tags).
    """
    client = LeanClient(server, token=token, max_answer_bytes=max_answer_bytes(config.slots))
    worker = Worker(client, config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.interrupt)
    try:
        return await worker.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await client.aclose()


def run(config: WorkerConfig, *, server: str | None, token: str | None) -> int:
    """Blocking entry point: a fresh event loop (uvloop when installed) running `serve`."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(config, server=server, token=token))
    return uvloop.run(serve(config, server=server, token=token))
