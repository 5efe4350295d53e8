"""The worker's parts import each other in one direction only: the order below, each
module using only those before it (no part calls back into one that uses it)."""

from __future__ import annotations

import ast
from pathlib import Path

import kickoff.worker

ORDER = [
    "gpus",
    "ledger",
    "lease",
    "warden",
    "_retry",
    "_http",
    "logfiles",
    "tagsfile",
    "process",
    "replies",
    "outbox",
    "core",
    "lease_guard",
    "session",
    "output",
    "jobs",
    "claims",
    "reconcile",
    "heartbeat",
    "tags",
    "stopping",
    "pruning",
    "worker",
    "main",
]


def worker_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "kickoff.worker":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("kickoff.worker."):
                found.add(node.module.removeprefix("kickoff.worker."))
    return found


def test_every_worker_module_has_its_place() -> None:
    folder = Path(kickoff.worker.__file__).parent
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    assert modules == set(ORDER)


def test_the_worker_s_modules_import_only_those_below_them() -> None:
    folder = Path(kickoff.worker.__file__).parent
    upward = {
        name: sorted(imported)
        for name in ORDER
        if (imported := worker_imports(folder / f"{name}.py") - set(ORDER[: ORDER.index(name)]))
    }
    assert upward == {}
