"""Where a database lives: `--db` and `$KICKOFF_DB` name an SQLite file by its path, or a
database server by a URL. No I/O here.

A `scheme://` this build does not support is refused with what to do instead, never
taken for a path: `Path("postgresql://u@h/db")` is the relative file `postgresql:/u@h/db`.
"""

from __future__ import annotations

import re
from pathlib import Path

from kickoff.errors import InvalidInput

URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def parse(text: str) -> Path:
    """The database `text` names.

    Raises:
        InvalidInput: a URL (`scheme://...`) this build does not support.
    """
    found = URL.match(text)
    if found is not None:
        scheme = found.group(1)
        raise InvalidInput(
            f"--db {scheme}://...: this kickoff keeps its log in an SQLite file and does not "
            f"support {scheme}:// databases; pass the path of a database file"
        )
    return Path(text)
