"""The worker: claims tasks whose required tags it has and runs them (`kickoff worker`).

Where things live:

- `worker.py`: `Worker`, the parts put together, run until stopped, shut down;
  `stopping.py`: Ctrl-C and SIGTERM (drain, then kill, then stop waiting).
- `core.py`: `WorkerConfig` and what every part shares (mode, jobs, outbox, ledger, slots,
  the one way to send a request).
- `session.py`: registration and its lease, losing a registration; `lease_guard.py`: the
  lease timer and the warden link that make the lease hold.
- `claims.py`: the long-poll claim loop.
- `jobs.py`: starting what an answer names, watching jobs, delivering their reports
  (claiming the next tasks with each).
- `heartbeat.py`: heartbeats (renew the lease, stop what the server names).
- `output.py`: sending what running tasks write to the server; `gpus.py`: the GPUs a
  worker declares.
- `reconcile.py` and `ledger.py`: finding claims whose answers were lost, never starting
  an attempt twice.
- `tags.py` and `tagsfile.py`: following a `--tags-file`.
- `process.py`: one attempt as an OS process group; `logfiles.py`: its output file;
  `pruning.py`: keeping the log directory to `--keep-logs` files.
- `lease.py`: the lease's timing; `warden.py`: the process that kills the tasks of a
  dead or frozen worker.
- `outbox.py`: reports not yet acknowledged; `replies.py`: checks on the server's answers.
- `_http.py` and `_retry.py`: the HTTP client and the one retry loop; `main.py`: entry points.
"""

from kickoff.worker.main import run, serve
from kickoff.worker.worker import Worker, WorkerConfig

__all__ = ["Worker", "WorkerConfig", "run", "serve"]
