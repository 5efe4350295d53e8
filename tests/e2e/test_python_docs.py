"""docs/python.md runs: its Python blocks, in order and in one namespace, against a real
server and worker; a `text` block after one is what it must print."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, WorkerProcess

DOC = Path(__file__).parents[2] / "docs" / "python.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def examples() -> list[tuple[str, str | None]]:
    """(code, what it prints or None) for each python block of the doc."""
    blocks = BLOCK.findall(DOC.read_text())
    found = []
    for i, (kind, body) in enumerate(blocks):
        if kind == "python":
            following = blocks[i + 1] if i + 1 < len(blocks) else None
            found.append((body, following[1] if following and following[0] == "text" else None))
    return found


def test_the_doc_has_examples_with_their_output() -> None:
    found = examples()
    assert len(found) >= 8
    assert sum(1 for _, printed in found if printed is not None) >= 8


def test_every_example_of_docs_python_md_runs(
    server: ServerProcess,
    start_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    start_worker()
    monkeypatch.setenv("KICKOFF_SERVER", server.address)
    monkeypatch.setenv("KICKOFF_TOKEN", server.token)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for code, expected in examples():
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, str(DOC), "exec"), namespace)
        if expected is not None:
            assert printed.getvalue() == expected, code
