"""Dashboard logins: one-time login codes and the sessions they open, in memory.

A code is minted for a holder of the token (`kickoff dashboard`), works once and only for
LOGIN_CODE_S; redeeming it opens a session with its own CSRF token. Only SHA-256 digests of
codes and session ids are kept, so memory holds no usable secret and a lookup compares
digests, not the secrets themselves. Each session remembers a digest of the token that
minted it: a rotated token (`kickoff token --rotate`) ends every session at once. Sessions
do not survive a server restart (log in again). No I/O here; time is the injected clock.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from kickoff import defaults

SECRET_BYTES = 32  # 256 bits for codes, session ids and CSRF tokens


def digest(secret: str) -> bytes:
    """What is kept of a code, session id or token: its SHA-256."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


@dataclass(slots=True, kw_only=True)
class Session:
    """One logged-in browser."""

    csrf: str
    token_digest: bytes
    opened_at: float
    used_at: float

    def csrf_ok(self, given: str | None) -> bool:
        """The request's CSRF header is this session's token (constant time)."""
        return given is not None and hmac.compare_digest(digest(given), digest(self.csrf))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Code:
    token_digest: bytes
    expires_at: float


class Sessions:
    """Login codes and the sessions they opened (see the module docstring)."""

    def __init__(
        self,
        *,
        code_s: float = defaults.LOGIN_CODE_S,
        idle_s: float = defaults.SESSION_IDLE_S,
        max_s: float = defaults.SESSION_MAX_S,
        max_codes: int = defaults.MAX_LOGIN_CODES,
        max_sessions: int = defaults.MAX_SESSIONS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.code_s = code_s
        self.idle_s = idle_s
        self.max_s = max_s
        self.max_codes = max_codes
        self.max_sessions = max_sessions
        self._monotonic = monotonic
        self._codes: OrderedDict[bytes, _Code] = OrderedDict()
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def new_code(self, token: str) -> str:
        """A fresh one-time login code, minted by a holder of `token`."""
        now = self._monotonic()
        for key in [k for k, c in self._codes.items() if c.expires_at <= now]:
            del self._codes[key]
        while len(self._codes) >= self.max_codes:
            self._codes.popitem(last=False)
        code = secrets.token_urlsafe(SECRET_BYTES)
        self._codes[digest(code)] = _Code(token_digest=digest(token), expires_at=now + self.code_s)
        return code

    def redeem(self, code: str, token: str) -> tuple[str, Session] | None:
        """Spend a login code: a new session (its id, itself), None if the code is unknown,
        used, expired, or was minted with a token that is no longer the server's."""
        found = self._codes.pop(digest(code), None)
        now = self._monotonic()
        if found is None or found.expires_at <= now:
            return None
        if not hmac.compare_digest(found.token_digest, digest(token)):
            return None
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        session_id = secrets.token_urlsafe(SECRET_BYTES)
        session = Session(
            csrf=secrets.token_urlsafe(SECRET_BYTES),
            token_digest=found.token_digest,
            opened_at=now,
            used_at=now,
        )
        self._sessions[digest(session_id)] = session
        return session_id, session

    def find(self, session_id: str, token: str) -> Session | None:
        """The live session with this id (and mark it used), None if there is none: unknown,
        idle too long, too old, or opened under a token that has since been rotated."""
        key = digest(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self._monotonic()
        stale = now - session.used_at >= self.idle_s or now - session.opened_at >= self.max_s
        if stale or not hmac.compare_digest(session.token_digest, digest(token)):
            del self._sessions[key]
            return None
        session.used_at = now
        self._sessions.move_to_end(key)
        return session

    def end(self, session_id: str) -> None:
        """Log out."""
        self._sessions.pop(digest(session_id), None)
