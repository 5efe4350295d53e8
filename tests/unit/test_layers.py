"""The import graph: no cycle, and no layer importing a higher one.

    events <- state <- store <- projections <- database <- service, audit <- api + dashboard
    <- server

The worker and the client talk to a server over HTTP only: they import neither side of it
(nor does that side import them). The CLI sits on top of everything but the service and
the API, which it reaches through the client or runs as `kickoff server`. Like the purity
test, this parses the source (function-level imports count) and never imports it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import kickoff

ROOT = Path(kickoff.__file__).parent

BASE = (  # shared, pure or nearly: anyone may import them
    "kickoff",
    "kickoff.errors",
    "kickoff.defaults",
    "kickoff.clock",
    "kickoff.tags",
    "kickoff.resources",
    "kickoff.envvars",
    "kickoff.dblocation",
)
SHARED = (*BASE, "kickoff.auth", "kickoff.client_config")  # tokens and where they are kept
LAYERS: tuple[tuple[str, ...], ...] = (
    SHARED,
    ("kickoff.events",),
    ("kickoff.state",),
    ("kickoff.store",),
    ("kickoff.projections",),
    ("kickoff.database",),
    ("kickoff.service", "kickoff.audit"),
    ("kickoff.api", "kickoff.dashboard"),
    ("kickoff.leader",),
    ("kickoff.server",),
)
"""From the bottom up: a module may import its own part, or a part of a lower layer."""
TOGETHER = {
    ("kickoff.api", "kickoff.dashboard"),
    ("kickoff.dashboard", "kickoff.api"),
    ("kickoff", "kickoff.client"),
}
"""Parts of one layer that make one thing (the HTTP app and its dashboard pages), and the
package's own re-export of its Python API (`kickoff.Client`, imported on first use)."""
CLIENT_SIDE = {
    "kickoff.client": SHARED,
    "kickoff.worker": (*SHARED, "kickoff.client"),
}
"""What the parts that talk HTTP may import."""
CLI = ("kickoff.cli", "kickoff.__main__")
CLI_NEVER = ("kickoff.service", "kickoff.api")


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = modules()


def imports(name: str, path: Path) -> Iterator[str]:
    """The kickoff modules `name` imports (`from pkg import sub` names the submodule)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "kickoff")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            if module.split(".")[0] != "kickoff":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                yield sub if sub in MODULES else module


GRAPH = {name: sorted(set(imports(name, path))) for name, path in MODULES.items()}


def part(name: str) -> str:
    """The part a module belongs to: its top-level package or module under kickoff."""
    return ".".join(name.split(".")[:2])


def layer(name: str) -> int | None:
    for i, members in enumerate(LAYERS):
        if part(name) in members or name in members:
            return i
    return None


def violations(graph: dict[str, list[str]]) -> list[str]:
    """Each import that goes up a layer, across the HTTP line, or from the CLI inwards."""
    bad = []
    for name, targets in graph.items():
        for target in targets:
            if part(target) == part(name) or (part(name), part(target)) in TOGETHER:
                continue
            if part(name) in CLI:
                if part(target) in CLI_NEVER:
                    bad.append(f"{name} imports {target}: the CLI goes through the client")
                continue
            allowed = CLIENT_SIDE.get(part(name))
            if allowed is not None:
                if part(target) not in allowed:
                    bad.append(f"{name} imports {target}: it talks to the server over HTTP")
                continue
            mine, theirs = layer(name), layer(target)
            if theirs is None:
                bad.append(f"{name} imports {target}: not below it (the client side, the CLI)")
            elif mine is None or (theirs >= mine and part(target) not in SHARED):
                bad.append(f"{name} imports {target}: a layer above (or beside) its own")
    return bad


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_place() -> None:
    homeless = [
        n for n in MODULES if layer(n) is None and part(n) not in CLIENT_SIDE and part(n) not in CLI
    ]
    assert homeless == []


def test_no_import_goes_up_a_layer() -> None:
    assert violations(GRAPH) == []


def test_the_import_graph_has_no_cycle() -> None:
    assert cycles(GRAPH) == []


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("kickoff.store.sqlite", "kickoff.projections.schema"),  # store -> projections
        ("kickoff.state.fold", "kickoff.store.chain"),
        ("kickoff.projections.tasks", "kickoff.database"),
        ("kickoff.database", "kickoff.service"),
        ("kickoff.audit.verify", "kickoff.service"),  # beside: the offline tools stand alone
        ("kickoff.service.subscriptions", "kickoff.api.routes"),
        ("kickoff.worker.worker", "kickoff.state.fold"),  # across the HTTP line
        ("kickoff.client", "kickoff.cli"),
        ("kickoff.cli.client_cmds", "kickoff.service"),
    ],
)
def test_the_checker_catches_a_wrong_import(name: str, target: str) -> None:
    assert violations({name: [target]})


def test_the_checker_allows_imports_down_and_within() -> None:
    graph = {
        "kickoff.service.claims": ["kickoff.service.recording", "kickoff.database"],
        "kickoff.projections.tasks": ["kickoff.store.sqlite", "kickoff.events.model"],
        "kickoff.events.codec": ["kickoff.errors", "kickoff"],
        "kickoff.worker.worker": ["kickoff.client", "kickoff.tags"],
        "kickoff.cli.log_cmds": ["kickoff.audit.verify", "kickoff.client"],
    }
    assert violations(graph) == []


def test_the_checker_catches_a_cycle() -> None:
    graph = {"kickoff.a": ["kickoff.b"], "kickoff.b": ["kickoff.c"], "kickoff.c": ["kickoff.a"]}
    assert cycles(graph) == [["kickoff.a", "kickoff.b", "kickoff.c"]]
    assert cycles({"kickoff.a": ["kickoff.b"], "kickoff.b": []}) == []
