"""The worker: claims tasks whose required tags it has and runs them (`kickoff worker`).

`loop.py` is the worker itself; `process.py` runs one command in its own process group;
`outbox.py` delivers completion reports; `replies.py` checks the server's answers;
`tagsfile.py` follows a `--tags-file`; `logfiles.py` makes output files (ahead of time),
names and prunes them; `_http.py` and `_retry.py` talk to the server; `main.py` holds
the entry points.
"""

from kickoff.worker.loop import Worker, WorkerConfig
from kickoff.worker.main import run, serve

__all__ = ["Worker", "WorkerConfig", "run", "serve"]
