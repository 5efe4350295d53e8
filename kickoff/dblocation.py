"""Where a database lives: `--db` and `$KICKOFF_DB` name an SQLite file by its path, or a
PostgreSQL database by a `postgresql://` URL (libpq's form; `postgres://` too). No I/O here
(`beside` reads $XDG_DATA_HOME).

Any other `scheme://` is refused with what to do instead, never taken for a path:
`Path("mysql://u@h/db")` is the relative file `mysql:/u@h/db`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from kickoff.errors import InvalidInput

URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class ServerUrl:
    """A database on a PostgreSQL server, by its libpq URL (kept whole for connecting;
    shown without its password)."""

    url: str

    def __str__(self) -> str:
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def slug(self) -> str:
        """A file name for what this machine keeps about the database (its token)."""
        parts = urlsplit(self.url)
        try:
            where = f"{parts.hostname or 'local'}-{parts.port or 5432}-{parts.path.strip('/')}"
        except ValueError:  # several hosts (libpq's "h1:5432,h2:5432"): the text as it is
            where = f"{parts.netloc.rpartition('@')[2]}-{parts.path.strip('/')}"
        return "pg-" + re.sub(r"[^A-Za-z0-9._-]", "_", where)


Location = Path | ServerUrl


def beside(location: Location | str, suffix: str) -> Path:
    """Where this machine keeps a file that belongs with the database (its token, its
    tasks' output): beside a database file; for PostgreSQL in the data directory,
    `$XDG_DATA_HOME/kickoff/pg-HOST-PORT-DB<suffix>` (~/.local/share/...)."""
    location = parse(location) if isinstance(location, str) else location
    if isinstance(location, Path):
        return location.with_name(location.name + suffix)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kickoff" / f"{location.slug}{suffix}"


def parse(text: str) -> Location:
    """The database `text` names.

    Raises:
        InvalidInput: a URL (`scheme://...`) this build does not support.
    """
    found = URL.match(text)
    if found is None:
        return Path(text)
    scheme = found.group(1)
    if scheme.lower() in POSTGRES_SCHEMES:
        return ServerUrl(text)
    raise InvalidInput(
        f"--db {scheme}://...: kickoff keeps its log in an SQLite file or in PostgreSQL "
        f"(postgresql://USER@HOST/DB) and does not support {scheme}:// databases; "
        "pass the path of a database file or a postgresql:// URL"
    )


def location(value: Location | str) -> Location:
    """A location from a path, a URL or a location."""
    return parse(value) if isinstance(value, str) else value
