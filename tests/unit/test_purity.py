"""events/ and state/ are pure: they import only pure stdlib modules and each other.

The check parses the source (it never imports it), so a function-level import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kickoff

ROOT = Path(kickoff.__file__).parent
PURE_STDLIB = {
    "__future__",
    "dataclasses",
    "typing",
    "enum",
    "heapq",
    "fractions",
    "functools",
    "collections",
    "datetime",
    "re",
    "itertools",
    "operator",
}
PURE_KICKOFF = {
    "kickoff.events",
    "kickoff.state",
    "kickoff.errors",
    "kickoff.defaults",
    "kickoff.tags",
    "kickoff.resources",
}
ONLY_IN = {"orjson": {"kickoff/events/codec.py"}}
IMPURE_BUILTINS = {"open", "print", "input", "exec", "eval", "compile", "__import__", "breakpoint"}
# The payload encoders are generated from the events' field names, as dataclasses makes
# __init__: source made of nothing but those names, run once at import.
BUILTIN_ONLY_IN = {"exec": {"kickoff/events/codec.py"}}


def pure_modules() -> list[Path]:
    paths = [*sorted((ROOT / "events").glob("*.py")), *sorted((ROOT / "state").glob("*.py"))]
    return [
        *paths,
        ROOT / "tags.py",
        ROOT / "resources.py",
        ROOT / "errors.py",
        ROOT / "defaults.py",
        ROOT / "__init__.py",
    ]


def run_at_import(tree: ast.Module) -> list[ast.AST]:
    """Every node of the tree except what importing the module never runs: the body of
    a module-level `__getattr__` (PEP 562: run on first use of a lazy attribute) and of
    `if TYPE_CHECKING:` (read by type checkers only)."""
    top = [
        node
        for node in tree.body
        if not (isinstance(node, ast.FunctionDef) and node.name == "__getattr__")
        and not (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        )
    ]
    return [inner for node in top for inner in ast.walk(node)]


def imported(tree: ast.Module, package: str) -> list[tuple[str, tuple[str, ...]]]:
    """(module, names) for every import statement that importing the module runs."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in run_at_import(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((module, tuple(alias.name for alias in node.names)))
    return found


def violations(source: str, relative: str) -> list[str]:
    """What in this module's source is not allowed in pure code."""
    package = ".".join(["kickoff", *Path(relative).parts[1:-1]])
    tree = ast.parse(source)
    bad = []
    for module, names in imported(tree, package):
        top = module.split(".")[0]
        if top in PURE_STDLIB:
            continue
        if any(module == p or module.startswith(p + ".") for p in PURE_KICKOFF):
            continue
        if module == "kickoff" and set(names) <= {"__version__"}:
            continue  # a constant from the package root (checked to be pure as well)
        if relative in ONLY_IN.get(top, set()):
            continue
        bad.append(f"imports {module}" + (f" ({', '.join(names)})" if names else ""))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in IMPURE_BUILTINS
            and relative not in BUILTIN_ONLY_IN.get(node.func.id, set())
        ):
            bad.append(f"calls {node.func.id}() on line {node.lineno}")
    return bad


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_pure_module_imports_nothing_impure(path: Path) -> None:
    relative = str(path.relative_to(ROOT.parent))
    assert violations(path.read_text(), relative) == []


def test_the_pure_packages_are_all_checked() -> None:
    checked = {p.name for p in pure_modules() if p.parent.name == "state"}
    assert {"fold.py", "matcher.py", "decide.py"} <= checked


@pytest.mark.parametrize(
    "source",
    [
        "import sqlite3",
        "import os.path",
        "from time import monotonic",
        "import socket",
        "import asyncio",
        "from random import random",
        "from pathlib import Path",
        "import orjson",
        "from kickoff.store.chain import Recorded",
        "from kickoff import clock",
        "from ..store import db",
        "def f():\n    import logging",
        "def f():\n    return open('x')",
        "x = __import__('os')",
        "exec('import os')",
    ],
)
def test_the_checker_catches_impure_code(source: str) -> None:
    assert violations(source, "kickoff/state/example.py")


def test_the_checker_allows_pure_code() -> None:
    source = (
        "from __future__ import annotations\nimport heapq\n"
        "from collections.abc import Callable\nfrom kickoff.events import model as ev\n"
        "from . import fold\nfrom ..errors import NotFound\nfrom kickoff import __version__\n"
    )
    assert violations(source, "kickoff/state/example.py") == []
    assert violations("import orjson", "kickoff/events/codec.py") == []
