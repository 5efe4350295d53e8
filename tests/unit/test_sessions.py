"""Login codes and dashboard sessions (kickoff/dashboard/sessions.py), on an injected clock."""

from __future__ import annotations

from kickoff.dashboard.sessions import Sessions


class Monotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def opened(sessions: Sessions, token: str = "t" * 20) -> str:
    found = sessions.redeem(sessions.new_code(token), token)
    assert found is not None
    return found[0]


def test_a_code_works_once_and_only_in_time() -> None:
    clock = Monotonic()
    sessions = Sessions(code_s=60, monotonic=clock)
    code = sessions.new_code("token-one-xxxxxxx")
    assert sessions.redeem(code, "token-one-xxxxxxx") is not None
    assert sessions.redeem(code, "token-one-xxxxxxx") is None
    late = sessions.new_code("token-one-xxxxxxx")
    clock.now = 60
    assert sessions.redeem(late, "token-one-xxxxxxx") is None


def test_a_rotated_token_ends_codes_and_sessions() -> None:
    sessions = Sessions()
    code = sessions.new_code("old-token-xxxxxxxx")
    assert sessions.redeem(code, "new-token-xxxxxxxx") is None
    session_id = opened(sessions, "old-token-xxxxxxxx")
    assert sessions.find(session_id, "old-token-xxxxxxxx") is not None
    assert sessions.find(session_id, "new-token-xxxxxxxx") is None
    assert sessions.find(session_id, "old-token-xxxxxxxx") is None  # gone for good


def test_sessions_end_when_idle_or_old_and_use_keeps_them() -> None:
    clock = Monotonic()
    sessions = Sessions(idle_s=10, max_s=25, monotonic=clock)
    session_id = opened(sessions)
    for now in (9, 18, 24):
        clock.now = now
        assert sessions.find(session_id, "t" * 20) is not None
    clock.now = 25
    assert sessions.find(session_id, "t" * 20) is None
    idle = opened(sessions)
    clock.now += 10
    assert sessions.find(idle, "t" * 20) is None


def test_memory_is_bounded_the_least_recently_used_goes_first() -> None:
    sessions = Sessions(max_sessions=3, max_codes=2)
    first, second, third = (opened(sessions) for _ in range(3))
    assert sessions.find(first, "t" * 20) is not None  # used: now the most recent
    fourth = opened(sessions)
    assert len(sessions) == 3
    assert sessions.find(second, "t" * 20) is None
    assert all(sessions.find(s, "t" * 20) for s in (first, third, fourth))
    codes = [sessions.new_code("t" * 20) for _ in range(3)]
    assert sessions.redeem(codes[0], "t" * 20) is None  # the oldest code made room
    assert sessions.redeem(codes[2], "t" * 20) is not None


def test_only_digests_are_kept() -> None:
    sessions = Sessions()
    code = sessions.new_code("t" * 20)
    session_id = opened(sessions)
    kept = repr(sessions._codes) + repr(sessions._sessions)
    assert code not in kept and session_id not in kept and "t" * 20 not in kept
