"""Tag grammar and parsing, shared by the API, the CLI and the worker. No I/O here."""

from __future__ import annotations

import re
from collections.abc import Iterable

from kickoff.defaults import MAX_TAG_CHARS
from kickoff.errors import InvalidInput

TAG_RE = re.compile(rf"[A-Za-z0-9_.:=+/\-]{{1,{MAX_TAG_CHARS}}}")
_SPLIT_RE = re.compile(r"[\s,;]+")


def split_tags(words: Iterable[str]) -> list[str]:
    """Split words on spaces, commas and semicolons; drop empties; keep first-seen order."""
    seen: dict[str, None] = {}
    for word in words:
        for tag in _SPLIT_RE.split(word):
            if tag:
                seen[tag] = None
    return list(seen)


def check_tags(tags: Iterable[str], *, field: str, limit: int) -> frozenset[str]:
    """Validate tags against the grammar and a count limit.

    Raises:
        InvalidInput: a tag breaks the grammar, or there are more than `limit`.
    """
    out = frozenset(tags)
    for tag in out:
        if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
            raise InvalidInput(
                f"{field}: invalid tag {str(tag)[:80]!r}: tags are 1-{MAX_TAG_CHARS} characters "
                "from A-Z a-z 0-9 _ . : = + / -"
            )
    if len(out) > limit:
        raise InvalidInput(f"{field}: {len(out)} tags, at most {limit} allowed")
    return out
