"""Worker tests run real commands: each test runs in its own tmp_path, so that a command's
relative paths (`echo ran >> ran.txt`) land there, never in the directory pytest started in."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def task_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory of the test and of the tasks it starts: tmp_path."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
