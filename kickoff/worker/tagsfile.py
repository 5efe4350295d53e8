"""`--tags-file`: a file of tags the worker re-reads whenever it changes.

Tags are separated by spaces, commas, semicolons or newlines; `#` starts a comment. A file
that does not exist holds no tags.
"""

from __future__ import annotations

import os
from pathlib import Path

from kickoff import defaults
from kickoff.tags import check_tags, split_tags

Stamp = tuple[int, int, int] | None


def parse(text: str, *, source: str) -> frozenset[str]:
    """The tags in a tags file's text.

    Raises:
        InvalidInput: a tag breaks the grammar, or there are too many.
    """
    words = [line.partition("#")[0] for line in text.splitlines()]
    return check_tags(split_tags(words), field=source, limit=defaults.MAX_WORKER_TAGS)


class TagsFile:
    """Watches one file; `poll()` returns its tags when it changed since the last poll."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: Stamp = (-1, -1, -1)  # differs from every real stamp and from None

    def _current_stamp(self) -> Stamp:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def poll(self) -> frozenset[str] | None:
        """The file's tags if it changed (or was never read), else None.

        A bad file is reported once per change, not on every poll.

        Raises:
            InvalidInput: the changed file holds an invalid tag.
            OSError: the file exists but cannot be read.
        """
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        if stamp is None:
            return frozenset()
        text = self.path.read_text(encoding="utf-8", errors="replace")
        return parse(text, source=str(self.path))
