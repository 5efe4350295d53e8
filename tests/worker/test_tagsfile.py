"""The tags file: parsed like --have, re-read only when it changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kickoff.errors import InvalidInput
from kickoff.worker.tagsfile import TagsFile, parse


def test_parse_splits_like_have_and_drops_comments() -> None:
    text = "cpu gpu,big-mem; os=linux\n# a comment\nnvme  # trailing comment\n\n"
    assert parse(text, source="f") == {"cpu", "gpu", "big-mem", "os=linux", "nvme"}


def test_parse_refuses_bad_tags() -> None:
    with pytest.raises(InvalidInput, match="f: invalid tag"):
        parse("cpu g!pu", source="f")


def test_poll_returns_tags_only_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "tags"
    watcher = TagsFile(path)
    assert watcher.poll() == frozenset()  # missing file: no tags, once
    assert watcher.poll() is None
    path.write_text("cpu\n")
    assert watcher.poll() == frozenset({"cpu"})
    assert watcher.poll() is None
    path.write_text("cpu gpu\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert watcher.poll() == frozenset({"cpu", "gpu"})
    path.unlink()
    assert watcher.poll() == frozenset()


def test_a_bad_file_is_reported_once_per_change(tmp_path: Path) -> None:
    path = tmp_path / "tags"
    path.write_text("bad tag!\n")
    watcher = TagsFile(path)
    with pytest.raises(InvalidInput):
        watcher.poll()
    assert watcher.poll() is None
