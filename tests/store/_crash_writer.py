"""Run by test_crash.py: a Service appending as fast as it can until it is killed.

    python tests/store/_crash_writer.py DB

Prints `ready`, then `ack <task id>` for every task, only after the submit that created it
has returned (its batch is durable). Two workers claim and complete meanwhile, so batches
mix event types.
"""

from __future__ import annotations

import asyncio
import sys

from kickoff.service import Service
from kickoff.state.decide import Completion, NewTask

SUBMITTERS = 32


def ack(ids: list[int]) -> None:
    sys.stdout.write("".join(f"ack {task_id}\n" for task_id in ids))
    sys.stdout.flush()


async def submitter(service: Service, n: int) -> None:
    i = 0
    while True:
        i += 1
        size = 5 if i % 4 == 0 else 1
        tasks = [
            NewTask(
                command=f"echo {n}.{i}.{k}",
                require=frozenset({"cpu"}) if k % 2 else frozenset(),
                idempotency_key=f"{n}.{i}" if k == 0 and i % 3 == 0 else None,
            )
            for k in range(size)
        ]
        ack(await service.submit(tasks))


async def worker(service: Service) -> None:
    worker_id = await service.register(name="crash", tags=frozenset({"cpu"}), slots=4)
    while True:
        for claimed in await service.claim(worker_id, max_tasks=4, wait_s=0.05):
            await service.complete(
                Completion(
                    task_id=claimed.task_id,
                    worker_id=worker_id,
                    attempt=claimed.attempt,
                    exit_code=claimed.task_id % 2,
                    duration_s=0.01,
                )
            )


async def main(db_path: str) -> None:
    service = Service(db_path)
    await service.start()
    print("ready", flush=True)
    await asyncio.gather(
        *(submitter(service, n) for n in range(SUBMITTERS)), worker(service), worker(service)
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
