"""The human form of `kickoff workers` and `kickoff tags`: the workers, what each has free
of what it declared, a worker's tags (`--json` prints the answer itself).

No HTTP and no parsing here: a view gets the answer the command received.
"""

from __future__ import annotations

from kickoff.cli import _words as words
from kickoff.cli._tables import table
from kickoff.cli._terminal import assemble, err, out, styled
from kickoff.resources import show_amount

TYPE_CHECKING = False  # typing is for the type checker: its import slows `kickoff new`
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any


def _now() -> datetime:
    from datetime import UTC, datetime  # 1 ms: only where a time is shown

    return datetime.now(UTC)


def workers(found: list[dict[str, Any]], *, everything: bool) -> None:
    if not found:
        hint = "" if everything else " alive; start one with `kickoff worker`"
        (out if out.is_terminal else err).line(styled("no workers" + hint, "dim"))
        return
    now = _now()
    with_resources = any(w.get("resources") for w in found)
    rows = (
        [
            w["name"],
            words.state(w["state"]),
            f"{w['running']}/{w['slots']}",
            ",".join(w["tags"]) or "-",
            *([free_of(w)] if with_resources else []),
            words.when(w["last_seen"], now, relative=out.is_terminal),
            w.get("host") or "-",
            w["id"],
        ]
        for w in found
    )
    headers = ["NAME", "STATE", "RUNNING", "TAGS", *(["FREE/ALL"] if with_resources else [])]
    table([*headers, "LAST SEEN", "HOST", "ID"], rows, right=("RUNNING",))


def free_of(worker: dict[str, Any]) -> str:
    """`gpu=2/4 mem=48G/64G (GPUs 0,1 free)`: what a worker has free of what it declared."""
    declared: dict[str, int] = worker.get("resources") or {}
    if not declared:
        return "-"
    free = worker.get("resources_free")
    parts = []
    for name, total in sorted(declared.items()):
        left = "?" if free is None else show_amount(int(free.get(name, 0)))
        parts.append(f"{name}={left}/{show_amount(total)}")
    gpus = worker.get("gpu_ids_free")
    if gpus and free is not None:
        parts.append(f"(GPUs {','.join(map(str, gpus))} free)")
    return " ".join(parts)


def tags(worker: str, result: dict[str, Any]) -> None:
    """`box1  cpu gpu` on a terminal; the tags alone, space-separated, when piped."""
    if out.is_terminal:
        out.line(assemble((worker, "bold"), "  ", words.tags(result["tags"])))
    else:
        out.line(" ".join(result["tags"]))
