"""`pip install .` (not editable) ships the dashboard's files: built as a wheel, installed
into a fresh directory, the server finds every one of them there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "kickoff" / "dashboard" / "static"


def test_a_non_editable_install_serves_every_dashboard_file(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", str(ROOT), "-w", str(tmp_path / "wheel")],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("kickoff-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import json, kickoff.dashboard.pages as p; "
        "print(json.dumps([p.__file__, sorted(p.load_assets())]))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    where, served = json.loads(done.stdout)
    assert where.startswith(str(target))  # the installed copy, not this checkout
    assert served == sorted(p.name for p in STATIC.iterdir()), done.stdout
