"""The worker: claims tasks whose required tags it has and runs them (`kickoff worker`).

Where things live:

- `loop.py`: `Worker`, the parts put together; running until stopped; Ctrl-C.
- `core.py`: `WorkerConfig` and what every part shares (mode, jobs, outbox, ledger, slots,
  the one way to send a request).
- `session.py`: registration, the lease and the warden link, losing a registration.
- `claims.py`: the long-poll claim loop.
- `jobs.py`: starting what an answer names, watching jobs, delivering their reports
  (claiming the next tasks with each).
- `heartbeat.py`: heartbeats (renew the lease, stop what the server names).
- `reconcile.py` and `ledger.py`: finding claims whose answers were lost, never starting
  an attempt twice.
- `tags.py` and `tagsfile.py`: following a `--tags-file`.
- `process.py`: one attempt as an OS process group; `logfiles.py`: its output file.
- `lease.py`: the lease's timing; `warden.py`: the process that kills the tasks of a
  dead or frozen worker.
- `outbox.py`: reports not yet acknowledged; `replies.py`: checks on the server's answers.
- `_http.py` and `_retry.py`: the HTTP client and the one retry loop; `main.py`: entry points.
"""

from kickoff.worker.loop import Worker, WorkerConfig
from kickoff.worker.main import run, serve

__all__ = ["Worker", "WorkerConfig", "run", "serve"]
