"""What a client needs to find its server: the address rules and the tokens this user's
client config remembers (read only; `auth` writes it). No network here.

Light on purpose: every `kickoff new` loads it (docs/cli.md, "Start-up").
"""

from __future__ import annotations

import json
import os

from kickoff import defaults
from kickoff.errors import InvalidInput


def config_file() -> str:
    """The user's client config: `$XDG_CONFIG_HOME/kickoff/tokens.json`."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "kickoff", "tokens.json")


def read_config() -> dict[str, str]:
    """`host:port` -> token, as remembered (an unreadable or broken file: none)."""
    try:
        with open(config_file(), "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def find_token(server: str) -> str | None:
    """The remembered token for `host:port`, if any."""
    return read_config().get(server)


def servers(address: str | None) -> list[str]:
    """Every address of `--server a:3355,b:3355` (or $KICKOFF_SERVER), each normalized, in
    order: the servers of one database, one leading (a client follows it, SPEC §14).

    Raises:
        InvalidInput: an https:// address.
    """
    text = address or os.environ.get("KICKOFF_SERVER") or defaults.SERVER
    return [normalize_server(part) for part in text.split(",") if part.strip()] or [
        normalize_server(None)
    ]


def normalize_server(address: str | None) -> str:
    """`host[:port]` or an http:// URL -> `host:port` (default 127.0.0.1:3355).

    Raises:
        InvalidInput: an https:// address. kickoff's client speaks plain HTTP; quietly
            dropping the "s" would send the token in clear text to a server the user
            believes is behind TLS.
    """
    text = (address or os.environ.get("KICKOFF_SERVER") or defaults.SERVER).strip()
    text = text.split(",", 1)[0].strip() or defaults.SERVER  # of several: the first
    if text.lower().startswith("https://"):
        raise InvalidInput(
            f"{text}: kickoff's client speaks plain HTTP, not HTTPS; to cross an untrusted "
            "network use an SSH tunnel (ssh -L 3355:127.0.0.1:3355 HOST) and --server "
            "127.0.0.1:3355 (see docs/security.md)"
        )
    if text.lower().startswith("http://"):
        text = text[len("http://") :]
    text = text.rstrip("/")
    if text.startswith("["):  # [::1]:3355
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or str(defaults.PORT)
        return f"{host}:{port}"
    if text.count(":") == 1:
        return text
    if text.count(":") > 1:  # bare IPv6
        return f"{text}:{defaults.PORT}"
    return f"{text}:{defaults.PORT}"
